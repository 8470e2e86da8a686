//! Where answers come from: a trait over LLM backends, and its three implementations —
//! `local` (a GGUF model run in-process), `openai` (any OpenAI-compatible server) and
//! `ollama` (`/api/chat`).
//!
//! A backend turns a list of messages into a stream of [`StreamEvent`]s. Dropping the
//! stream cancels the generation (the local model stops at its next token, a remote
//! request's connection is closed).

pub mod limit;
pub mod lines;
pub mod local;
pub mod ollama;
pub mod openai;
pub mod reachability;
pub mod retry;
pub mod stop;

#[cfg(test)]
mod prop_tests;

use std::pin::Pin;

use futures::Stream;
use serde::{Deserialize, Serialize};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    /// Parses a role name; `None` for anything else (callers name the field in the error).
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "system" => Some(Role::System),
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            _ => None,
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
        }
    }
}

/// What to generate, after memory and the system prompt were applied.
#[derive(Debug, Clone, Default)]
pub struct GenerationRequest {
    pub messages: Vec<ChatMessage>,
    /// Upper bound on generated tokens; the backend's default when `None`.
    pub max_tokens: Option<u32>,
    /// 0 means greedy (deterministic); `None` uses the configured default.
    pub temperature: Option<f64>,
    pub seed: Option<u64>,
    /// Generation ends before any of these strings; they are not part of the answer.
    pub stop: Vec<String>,
}

/// Token counts of one generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    /// As OpenAI reports it: how many prompt tokens came computed from a cache (the local
    /// engine's kept conversations, or an upstream's prompt cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: u32,
}

impl Usage {
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: None,
        }
    }

    /// The same usage, saying that `cached_tokens` of the prompt were not computed again.
    pub fn with_cached_prompt(mut self, cached_tokens: u32) -> Self {
        self.prompt_tokens_details = Some(PromptTokensDetails { cached_tokens });
        self
    }

    /// Prompt tokens that came from a cache (0 when the backend does not say).
    pub fn cached_prompt_tokens(&self) -> u32 {
        self.prompt_tokens_details.map_or(0, |d| d.cached_tokens)
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// End of turn or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// One item of a generation stream. A well-formed stream is zero or more `Delta`s then
/// exactly one `Done`.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Delta(String),
    Done {
        finish_reason: FinishReason,
        usage: Usage,
    },
}

/// Errors of the backends.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("the request is invalid for this backend: {0}")]
    InvalidRequest(String),
    #[error("the backend is busy: {0}")]
    Busy(String),
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    #[error("backend timed out: {0}")]
    Timeout(String),
    #[error("backend protocol error: {0}")]
    Protocol(String),
    #[error("model error: {0}")]
    Model(String),
    #[error("cannot load the model: {0}")]
    Load(String),
}

impl BackendError {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            BackendError::InvalidRequest(_) => "invalid_request",
            BackendError::Busy(_) => "busy",
            BackendError::Unavailable(_) => "unavailable",
            BackendError::Timeout(_) => "timeout",
            BackendError::Protocol(_) => "protocol",
            BackendError::Model(_) => "model",
            BackendError::Load(_) => "load",
        }
    }
}

pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// A stream of generation events; dropping it cancels the generation.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent>> + Send>>;

/// An LLM that answers conversations.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Starts a generation. Errors that happen before the first token (busy, unreachable,
    /// invalid request) come back here; later ones inside the stream.
    async fn generate(&self, request: GenerationRequest) -> Result<EventStream>;

    /// Whether the backend answers right now (for `/readyz`'s `BackendReachable`).
    async fn reachable(&self) -> Result<()>;

    /// The model name reported to clients.
    fn model_name(&self) -> &str;

    /// A short label (`local`, `openai`, `ollama`) for metrics and logs.
    fn kind(&self) -> &'static str;
}

/// Reads a stream to its end: the whole answer, why it ended and its usage.
pub async fn collect(mut stream: EventStream) -> Result<(String, FinishReason, Usage)> {
    use futures::StreamExt;
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::Delta(delta) => text.push_str(&delta),
            StreamEvent::Done {
                finish_reason,
                usage,
            } => return Ok((text, finish_reason, usage)),
        }
    }
    Err(BackendError::Protocol(
        "the stream ended without a final event".into(),
    ))
}
