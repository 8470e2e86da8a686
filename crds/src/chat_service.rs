//! `ChatService`: an LLM chat endpoint with per-session memory in front of a local model, an
//! Ollama server or any OpenAI-compatible server.

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{PodOptions, RegistrySpec, SecretKeyRef};
use crate::model_deployment::{AutoscalingSpec, HistoryEntry, RollbackPin, RolloutSpec};

/// Condition types written to `status.conditions`.
pub mod condition {
    /// The model version in force is rolled out and enough replicas are ready.
    pub const READY: &str = "Ready";
    /// The pods' readiness probes pass: `/readyz` checks the backend and the session store.
    pub const BACKEND_REACHABLE: &str = "BackendReachable";
    /// The last rollout failed, or the model was rolled back.
    pub const DEGRADED: &str = "Degraded";
    /// A rollout (or a scale change) is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// The last call to the model registry succeeded (local backend only).
    pub const REGISTRY_REACHABLE: &str = "RegistryReachable";
    /// kstatus: the controller is working towards the spec.
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: no progress without a change from the user.
    pub const STALLED: &str = "Stalled";
}

/// An OpenAI-compatible chat endpoint (`/v1/chat/completions`, `/api/v1/chat`) with
/// per-session memory, a prompt-injection guard and response caches, served by the Mooring
/// inference server in front of a local GGUF model, Ollama or an OpenAI-compatible server.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "mooring.dev",
    version = "v1alpha1",
    kind = "ChatService",
    namespaced,
    status = "ChatServiceStatus",
    shortname = "chat",
    category = "mooring",
    doc = "An LLM chat endpoint with per-session memory in front of a local, Ollama or OpenAI-compatible backend.",
    printcolumn(name = "Backend", type_ = "string", json_path = ".spec.backend.kind"),
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.backend.model"),
    printcolumn(
        name = "Version",
        type_ = "string",
        description = "The registry version in force (local backend)",
        json_path = ".status.version"
    ),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!((!has(self.memory) || !has(self.memory.store) || self.memory.store == 'memory') && ((has(self.replicas) && self.replicas > 1) || has(self.autoscaling)))").message("memory.store memory keeps sessions inside each pod: with more than one replica (or autoscaling) a conversation would lose its memory whenever another pod answers; use memory.store redis, or replicas 1"))]
#[x_kube(validation = Rule::new("has(self.backend) && has(self.backend.kind) && self.backend.kind != 'local' || has(self.registry)").message("registry is required for the local backend: backend.model names a version of the registry (name@alias or name@version) holding the GGUF file"))]
pub struct ChatServiceSpec {
    /// The language model answering the chats.
    #[serde(default)]
    pub backend: BackendSpec,
    /// System prompt put before every conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Per-session conversation memory.
    #[serde(default)]
    pub memory: MemorySpec,
    /// Checks on incoming prompts.
    #[serde(default)]
    pub guard: GuardSpec,
    /// Response caches.
    #[serde(default)]
    pub cache: CacheSpec,
    /// API keys clients must send (`Authorization: Bearer …`); open when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// Number of pods.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Inference-server image (a build with chat). Defaults to the operator's
    /// `--default-chat-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// CPU and memory of the container (a local model needs ~1 GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment variables of the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// The model registry holding the local backend's GGUF versions (as in a
    /// ModelDeployment); not used by remote backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistrySpec>,
    /// How new versions of the local model are rolled out and rolled back.
    #[serde(default)]
    pub rollout: RolloutSpec,
    /// Generation defaults and limits.
    #[serde(default)]
    pub generation: GenerationSpec,
    /// Scale the pods with a HorizontalPodAutoscaler (on CPU) instead of `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Scheduling, identity and volumes of the pods.
    #[serde(flatten)]
    pub pod: PodOptions,
}

/// Generation defaults and limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenerationSpec {
    /// Tokens generated per answer when the request names none, and the most a request may
    /// ask for (the server's default: 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_tokens: Option<i32>,
    /// Sampling temperature when the request names none; 0 is greedy (the server's default:
    /// 0.7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f64>,
    /// CPU threads of the local model (`CANDLE_NUM_THREADS`). Defaults to the container's CPU
    /// limit, rounded up, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub threads: Option<i32>,
}

fn default_replicas() -> i32 {
    1
}

/// Which kind of backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A small GGUF model run inside the server (no other server needed); `model` is a
    /// registry reference (`name@alias` or `name@version`) whose version holds a `.gguf` file.
    #[default]
    Local,
    /// An Ollama server at `url`.
    Ollama,
    /// Any OpenAI-compatible server at `url` (OpenAI, vLLM, llama.cpp's llama-server, …).
    Openai,
}

/// The chat backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.kind == 'local' || has(self.url)").message("backend.url is required for ollama and openai backends"))]
pub struct BackendSpec {
    /// `local`, `ollama` or `openai`.
    #[serde(default)]
    pub kind: BackendKind,
    /// Base URL of the backend server (`ollama`, `openai`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// For `local`: the registry model whose version holds the GGUF file, as `name@alias`
    /// (followed: moving the alias rolls the pods out) or `name@version` (pinned), e.g.
    /// `smollm2@production`. For `ollama` and `openai`: the model name at the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Secret key holding the backend's API key (given to the pods as an environment variable
    /// from the Secret, never copied into the Deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    /// Seconds one backend call may take.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1))]
    pub timeout_seconds: i32,
    /// Retries of a failed backend call (connection errors, 429, 5xx).
    #[serde(default = "default_retries")]
    #[schemars(range(min = 0, max = 10))]
    pub max_retries: i32,
}

impl Default for BackendSpec {
    fn default() -> Self {
        BackendSpec {
            kind: BackendKind::Local,
            url: None,
            model: None,
            api_key_secret_ref: None,
            timeout_seconds: default_timeout(),
            max_retries: default_retries(),
        }
    }
}

fn default_timeout() -> i32 {
    60
}
fn default_retries() -> i32 {
    2
}

/// Where session memory lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemoryStore {
    /// In the pod: lost on restart, not shared between replicas.
    #[default]
    Memory,
    /// In Redis: shared by all replicas.
    Redis,
    /// In PostgreSQL: a durable history (titles, timestamps), shared by all replicas.
    Postgres,
}

/// Per-session conversation memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.store != 'redis' || has(self.redis)").message("memory.redis is required when memory.store is redis"))]
#[x_kube(validation = Rule::new("self.store != 'postgres' || has(self.postgres)").message("memory.postgres is required when memory.store is postgres"))]
pub struct MemorySpec {
    /// `memory`, `redis` or `postgres`.
    #[serde(default)]
    pub store: MemoryStore,
    /// The Redis server, for `store: redis`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSpec>,
    /// The PostgreSQL database, for `store: postgres` (its tables are created at start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSpec>,
    /// Turns kept per session (older ones are dropped).
    #[serde(default = "default_max_turns")]
    #[schemars(range(min = 1))]
    pub max_turns: i32,
    /// Seconds an idle session is kept.
    #[serde(default = "default_ttl")]
    #[schemars(range(min = 1))]
    pub ttl_seconds: i32,
}

impl Default for MemorySpec {
    fn default() -> Self {
        MemorySpec {
            store: MemoryStore::Memory,
            redis: None,
            postgres: None,
            max_turns: default_max_turns(),
            ttl_seconds: default_ttl(),
        }
    }
}

fn default_max_turns() -> i32 {
    20
}
fn default_ttl() -> i32 {
    3600
}

/// A Redis server: its URL inline or in a Secret (exactly one).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.url) != has(self.urlSecretRef)").message("set exactly one of redis.url or redis.urlSecretRef"))]
pub struct RedisSpec {
    /// `redis://host:6379/0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Secret key holding the URL (when it carries a password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
    /// Prefix of the Redis keys, so several chat services can share one Redis (the
    /// server's default: `mooring:chat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
}

/// A PostgreSQL database.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// Secret key holding the URL, `postgres://user:password@host:5432/db`.
    pub url_secret_ref: SecretKeyRef,
}

/// What to do with a prompt that looks like a prompt-injection attempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PromptInjectionMode {
    /// Refuse it with HTTP 400.
    #[default]
    Block,
    /// Answer it, but log and count it.
    Flag,
    /// No check.
    Off,
}

/// Checks on incoming prompts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuardSpec {
    /// `block`, `flag` or `off`.
    #[serde(default)]
    pub prompt_injection: PromptInjectionMode,
    /// Longer prompts are refused with HTTP 400.
    #[serde(default = "default_max_prompt_chars")]
    #[schemars(range(min = 1))]
    pub max_prompt_chars: i32,
}

impl Default for GuardSpec {
    fn default() -> Self {
        GuardSpec {
            prompt_injection: PromptInjectionMode::Block,
            max_prompt_chars: default_max_prompt_chars(),
        }
    }
}

fn default_max_prompt_chars() -> i32 {
    8000
}

/// Response caches (only for requests without session memory, at temperature 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheSpec {
    /// Reuse the answer to an identical request.
    #[serde(default = "default_true")]
    pub exact: bool,
    /// Reuse the answer to a request whose embedding is similar enough.
    #[serde(default)]
    pub semantic: bool,
    /// Cosine similarity at or above which a semantic hit counts.
    #[serde(default = "default_similarity")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub similarity_threshold: f64,
    /// Entries kept per cache.
    #[serde(default = "default_cache_entries")]
    #[schemars(range(min = 1))]
    pub max_entries: i32,
    /// Seconds an answer stays cached; 0 keeps it until evicted (the server's default: 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds: Option<i32>,
}

impl Default for CacheSpec {
    fn default() -> Self {
        CacheSpec {
            exact: true,
            semantic: false,
            similarity_threshold: default_similarity(),
            max_entries: default_cache_entries(),
            ttl_seconds: None,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_similarity() -> f64 {
    0.95
}
fn default_cache_entries() -> i32 {
    1000
}

/// API keys, and a rate limit per key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// The Secret key holding the server's keys file: one `sha256:<hex> name` line per
    /// accepted key (the server never sees a plain key). It is mounted as a file, so updating
    /// the Secret rotates the keys without a restart. Create it with
    /// `kubectl create secret generic chat-keys --from-literal=keys="sha256:$(printf %s "$KEY" | sha256sum | cut -d' ' -f1) alice"`.
    pub api_keys_secret_ref: ApiKeysSecretRef,
    /// Requests per second allowed per API key (fractions allowed); unset or 0: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub rate_limit_per_second: Option<f64>,
    /// Requests a key may send at once before the per-second rate applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub rate_limit_burst: Option<i32>,
    /// Also accept bearer JWTs from the organisation's identity provider (OIDC); the caller
    /// is the token's subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSpec>,
}

/// A key of a Secret holding a keys file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeysSecretRef {
    /// Name of the Secret (same namespace as this resource).
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key inside the Secret holding the keys file.
    #[serde(default = "default_keys_key")]
    pub key: String,
}

fn default_keys_key() -> String {
    "keys".to_string()
}

/// Bearer JWTs signed (RS256/ES256) by a key of the provider's JWKS.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JwtSpec {
    /// The `iss` tokens must carry, e.g. `https://login.example.com/realms/org`.
    pub issuer: String,
    /// The audience tokens must be issued for (one of their `aud` values).
    pub audience: String,
    /// The provider's JWKS (its `jwks_uri`).
    pub jwks_url: String,
}

/// What the operator observed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatServiceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// In-cluster base URL of the OpenAI-compatible API, `http://<name>.<namespace>.svc:8080/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The registry version the spec asks for now (local backend): its pin, or what its
    /// alias names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    /// The registry version in force (local backend): written into the pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Where the version's artifacts are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_uri: Option<String>,
    /// `sha256:<hex>` of the version's GGUF file, when the registry records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_digest: Option<String>,
    /// The last versions rolled out, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// Set by an automatic rollback: the version served instead of the one the alias names,
    /// until the alias moves past it, the pod template changes or `mooring.dev/retry` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_pin: Option<RollbackPin>,
    /// Pods asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Pods that pass their readiness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Pods running the current template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i32>,
    /// The value of `mooring.dev/retry` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_retry: Option<String>,
    /// `Ready`, `BackendReachable`, `Degraded`, `Progressing`, `RegistryReachable`,
    /// `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
