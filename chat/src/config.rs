//! Command-line flags of chat mode, flattened by the inference server into `serve`.
//! Every flag has an environment variable, so a Kubernetes Deployment can set them.

use std::path::PathBuf;

use clap::{Args, FromArgMatches, ValueEnum};

/// Which LLM answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// A GGUF model run in-process (no other server needed).
    Local,
    /// Ollama's `/api/chat`.
    Ollama,
    /// Any OpenAI-compatible server (OpenAI, vLLM, llama.cpp's llama-server).
    Openai,
}

/// Where session memory lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MemoryStoreKind {
    /// In this process (bounded LRU); lost on restart, not shared between replicas.
    Memory,
    /// Redis: shared by replicas, survives restarts.
    Redis,
    /// PostgreSQL: a durable history (titles, timestamps), shared by replicas.
    Postgres,
}

/// Chat mode settings.
#[derive(Debug, Clone, Args)]
pub struct ChatArgs {
    /// Which LLM backend answers chat requests.
    #[arg(
        long,
        env = "MOORING_CHAT_BACKEND",
        value_enum,
        default_value = "local"
    )]
    pub chat_backend: BackendKind,

    /// Base URL of the ollama or openai backend (e.g. http://127.0.0.1:11434, or
    /// https://api.openai.com/v1; `/v1` is added for openai when missing).
    #[arg(long, env = "MOORING_CHAT_URL")]
    pub chat_url: Option<String>,

    /// Model name: sent to remote backends, and reported by /v1/models.
    #[arg(long, env = "MOORING_CHAT_MODEL", default_value = "smollm2")]
    pub chat_model: String,

    /// GGUF file of the local backend.
    #[arg(
        long,
        env = "MOORING_CHAT_GGUF",
        default_value = ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    )]
    pub chat_gguf: PathBuf,

    /// Bearer token for the remote backend (e.g. an OpenAI API key).
    #[arg(long, env = "MOORING_CHAT_BACKEND_API_KEY", hide_env_values = true)]
    pub chat_backend_api_key: Option<String>,

    /// System prompt put first in every conversation that does not bring its own.
    #[arg(long, env = "MOORING_CHAT_SYSTEM_PROMPT")]
    pub chat_system_prompt: Option<String>,

    /// Default (and largest allowed) number of generated tokens per answer.
    #[arg(long, env = "MOORING_CHAT_MAX_TOKENS", default_value_t = 256)]
    pub chat_max_tokens: u32,

    /// Default sampling temperature; 0 is greedy and deterministic.
    #[arg(long, env = "MOORING_CHAT_TEMPERATURE", default_value_t = 0.7)]
    pub chat_temperature: f64,

    /// Repetition penalty of the local backend over the last 64 tokens (1 disables it).
    #[arg(long, env = "MOORING_CHAT_REPEAT_PENALTY", default_value_t = 1.1)]
    pub chat_repeat_penalty: f32,

    /// Requests allowed to wait for a free slot of the local model; more get 429.
    #[arg(long, env = "MOORING_CHAT_QUEUE", default_value_t = 8)]
    pub chat_queue: usize,

    /// CPU threads of the local model. Default: `CANDLE_NUM_THREADS` if set (it also sizes
    /// the semantic cache's embedding model), else the CPUs the container may use (its
    /// cgroup CPU limit). More threads than CPUs makes generation several times slower.
    #[arg(long, env = "MOORING_CHAT_THREADS")]
    pub chat_threads: Option<usize>,

    /// Generations the local model decodes together (continuous batching); also how many
    /// conversations keep their computed prompt (KV cache) for their next turn.
    #[arg(long, env = "MOORING_CHAT_PARALLEL", default_value_t = 4)]
    pub chat_parallel: usize,

    /// Size of the local model's KV cache in tokens, shared by the parallel generations and
    /// the kept conversations (least recently used dropped first): the memory bound. A
    /// prompt plus its max_tokens must fit in it.
    #[arg(long, env = "MOORING_CHAT_CACHE_TOKENS", default_value_t = 8192)]
    pub chat_cache_tokens: usize,

    /// Flash attention in the local model (llama.cpp's fused kernel, llama-server's
    /// default): about 15 % faster prompts and decoding than plain attention here, and the
    /// attention of each conversation skips the cache cells of the others, where plain
    /// attention goes over the whole occupied cache. `false` computes plain attention, which
    /// sums in another order: some greedy answers of small models change.
    #[arg(
        long,
        env = "MOORING_CHAT_FLASH_ATTENTION",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub chat_flash_attention: bool,

    /// Connect timeout to a remote backend, in seconds.
    #[arg(long, env = "MOORING_CHAT_CONNECT_TIMEOUT_SECS", default_value_t = 5)]
    pub chat_connect_timeout_secs: u64,

    /// Limit on waiting for a remote backend's first token (per attempt), in seconds.
    #[arg(
        long,
        env = "MOORING_CHAT_FIRST_TOKEN_TIMEOUT_SECS",
        default_value_t = 60
    )]
    pub chat_first_token_timeout_secs: u64,

    /// Longest silence from a remote backend in the middle of an answer, in seconds.
    #[arg(long, env = "MOORING_CHAT_READ_TIMEOUT_SECS", default_value_t = 60)]
    pub chat_read_timeout_secs: u64,

    /// Retries of a remote backend on 429/5xx/connection errors, before the first token.
    #[arg(long, env = "MOORING_CHAT_RETRIES", default_value_t = 3)]
    pub chat_retries: u32,

    /// First retry delay in milliseconds; doubled on each retry (capped at 10 s).
    #[arg(long, env = "MOORING_CHAT_RETRY_BASE_MS", default_value_t = 250)]
    pub chat_retry_base_ms: u64,

    /// Generations running at once against a remote backend; one more gets 429 with
    /// Retry-After (gRPC RESOURCE_EXHAUSTED) instead of queueing on a saturated upstream.
    #[arg(long, env = "MOORING_CHAT_BACKEND_CONCURRENCY", default_value_t = 16)]
    pub chat_backend_concurrency: usize,

    /// Where session memory is kept.
    #[arg(
        long,
        env = "MOORING_CHAT_MEMORY_STORE",
        value_enum,
        default_value = "memory"
    )]
    pub chat_memory_store: MemoryStoreKind,

    /// Redis URL for `--chat-memory-store redis`, e.g. redis://127.0.0.1:6379.
    #[arg(long, env = "MOORING_CHAT_REDIS_URL", hide_env_values = true)]
    pub chat_redis_url: Option<String>,

    /// PostgreSQL URL for `--chat-memory-store postgres`, e.g.
    /// postgres://chat:secret@db:5432/chat. The tables are created (migrated) at start.
    #[arg(long, env = "MOORING_CHAT_POSTGRES_URL", hide_env_values = true)]
    pub chat_postgres_url: Option<String>,

    /// Prefix of the Redis keys (several chat services can share one Redis).
    #[arg(
        long,
        env = "MOORING_CHAT_REDIS_PREFIX",
        default_value = "mooring:chat"
    )]
    pub chat_redis_prefix: String,

    /// Turns (question + answer) remembered per session; older ones are dropped first.
    #[arg(long, env = "MOORING_CHAT_MEMORY_MAX_TURNS", default_value_t = 20)]
    pub chat_memory_max_turns: usize,

    /// Characters remembered per session; older turns are dropped first.
    #[arg(long, env = "MOORING_CHAT_MEMORY_MAX_CHARS", default_value_t = 8000)]
    pub chat_memory_max_chars: usize,

    /// Seconds after its last use before a session is forgotten.
    #[arg(long, env = "MOORING_CHAT_MEMORY_TTL_SECS", default_value_t = 3600)]
    pub chat_memory_ttl_secs: u64,

    /// Sessions kept by the in-process store (least recently used are evicted).
    #[arg(
        long,
        env = "MOORING_CHAT_MEMORY_MAX_SESSIONS",
        default_value_t = 10_000
    )]
    pub chat_memory_max_sessions: usize,

    #[command(flatten)]
    pub guard: crate::guard::GuardArgs,

    #[command(flatten)]
    pub auth: crate::auth::AuthArgs,

    #[command(flatten)]
    pub cache: crate::cache::CacheArgs,
}

/// The value of a flag group when no flag is given: clap's `default_value`s, so each default
/// is written once, on its flag. The environment is not read (a `Default` must not change
/// with `MOORING_*` variables the way parsed flags do).
pub(crate) fn clap_defaults<A: Args + FromArgMatches>() -> A {
    let command = A::augment_args(clap::Command::new("defaults").no_binary_name(true))
        .mut_args(|arg| arg.env(None));
    let matches = command
        .try_get_matches_from(std::iter::empty::<&str>())
        .expect("every flag of a group with a Default has a default or is optional");
    A::from_arg_matches(&matches).expect("clap's defaults make a valid flag group")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        chat: ChatArgs,
    }

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_select_the_local_backend_and_in_process_memory() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.chat.chat_backend, BackendKind::Local);
        assert_eq!(cli.chat.chat_memory_store, MemoryStoreKind::Memory);
    }

    #[test]
    fn defaults_of_the_flag_groups_are_the_flags_defaults() {
        use crate::auth::AuthArgs;
        use crate::cache::{CacheArgs, DEFAULT_SIMILARITY_THRESHOLD, Switch};
        use crate::guard::{DEFAULT_SEMANTIC_THRESHOLD, GuardArgs, GuardMode};

        let guard = GuardArgs::default();
        assert_eq!(guard.mode, GuardMode::Block);
        assert_eq!(guard.max_prompt_chars, 16_000);
        assert_eq!(guard.patterns_file, None);
        assert_eq!(guard.semantic_layer, Switch::On);
        assert_eq!(guard.semantic_threshold, DEFAULT_SEMANTIC_THRESHOLD);

        let auth = AuthArgs::default();
        assert_eq!(auth.api_keys_file, None);
        assert_eq!(auth.reload_seconds, 5.0);
        assert_eq!(auth.rate_limit_per_second, 0.0);
        assert_eq!(auth.rate_limit_burst, 0);
        assert_eq!(auth.jwt_issuer, None);
        assert_eq!(auth.jwt_jwks_url, None);
        assert_eq!(auth.jwt_subject_claim, "sub");
        assert_eq!(auth.jwt_leeway_seconds, 30);
        assert_eq!(auth.jwt_jwks_refresh_seconds, 300);
        assert_eq!(auth.jwt_jwks_min_refetch_seconds, 10);

        let cache = CacheArgs::default();
        assert_eq!(cache.exact, Switch::On);
        assert_eq!(cache.semantic, Switch::Off);
        assert_eq!(cache.similarity_threshold, DEFAULT_SIMILARITY_THRESHOLD);
        assert_eq!(cache.max_entries, 1024);
        assert_eq!(cache.ttl_seconds, 3600);
        assert_eq!(cache.embedding_model_dir, None);

        // The same values as parsing no flags at all.
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.chat.guard.max_prompt_chars, guard.max_prompt_chars);
        assert_eq!(cli.chat.cache.max_entries, cache.max_entries);
    }
}
