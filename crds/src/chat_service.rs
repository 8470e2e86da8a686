//! `ChatService`: an LLM chat endpoint with per-session memory in front of a local model, an
//! Ollama server or any OpenAI-compatible server.

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{SecretKeyRef, SecretRef};

/// Condition types written to `status.conditions`.
pub mod condition {
    /// Enough replicas are ready.
    pub const READY: &str = "Ready";
    /// The chat backend answers.
    pub const BACKEND_REACHABLE: &str = "BackendReachable";
}

/// An OpenAI-compatible chat endpoint (`/v1/chat/completions`, `/api/v1/chat`) with
/// per-session memory, a prompt-injection guard and response caches, served by the Mooring
/// inference server in front of a local GGUF model, Ollama or an OpenAI-compatible server.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    printcolumn(name = "Memory", type_ = "string", json_path = ".spec.memory.store"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "URL",
        type_ = "string",
        json_path = ".status.url",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
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
    /// Inference-server image. Defaults to the operator's `--default-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// CPU and memory of the container (a local model needs ~1 GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment variables of the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

fn default_replicas() -> i32 {
    1
}

/// Which kind of backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A small GGUF model run inside the server (no other server needed); `model` is its path.
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
    /// Model name at the backend, or the GGUF file path for `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Secret key holding the backend's API key.
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
}

impl Default for CacheSpec {
    fn default() -> Self {
        CacheSpec {
            exact: true,
            semantic: false,
            similarity_threshold: default_similarity(),
            max_entries: default_cache_entries(),
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

/// API keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// A Secret whose values (one per key) are the accepted API keys.
    pub api_keys_secret_ref: SecretRef,
    /// Also accept bearer JWTs from the organisation's identity provider (OIDC); the caller
    /// is the token's subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSpec>,
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
    /// In-cluster base URL of the chat endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Pods that pass their readiness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// `Ready`, `BackendReachable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
