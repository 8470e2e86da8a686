//! The request path shared by every endpoint (OpenAI, `/api/v1`, gRPC): validate, prepend
//! the session's earlier turns after the system prompt, generate, record metrics, and
//! store the new turn once the answer is complete.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use crate::auth::KeyId;
use crate::backend::{
    Backend, ChatMessage, EventStream, FinishReason, GenerationRequest, Role, StreamEvent, Usage,
};
use crate::cache::{CacheRequest, Caches, SemanticLookup};
use crate::error::{ChatError, Result};
use crate::memory::{Session, SessionStore};
use crate::metrics::ChatMetrics;

/// Longest accepted session id.
const MAX_SESSION_ID_LEN: usize = 128;
/// OpenAI accepts up to four stop strings.
const MAX_STOP_STRINGS: usize = 4;

/// A chat request as every protocol hands it over.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    /// The caller's API key id ("anonymous" without keys): owner of its sessions.
    pub owner: String,
    pub session_id: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
}

/// A validated request with memory applied, ready to generate.
pub struct Prepared {
    pub generation: GenerationRequest,
    pub owner: String,
    pub session_id: Option<String>,
    /// The new user message, stored with the answer as the session's next turn.
    pub user_text: String,
}

impl Prepared {
    /// What the caches compare: the last message (the new question). Embedding the whole
    /// conversation would let a long shared system prompt make unrelated questions look alike.
    fn cache_prompt(&self) -> &str {
        self.generation
            .messages
            .last()
            .map_or("", |m| m.content.as_str())
    }

    /// Everything else that changes an answer, in a canonical form: the cache scope. The
    /// earlier messages (system prompt included) are part of it, so a cached answer is only
    /// reused in the same context.
    fn cache_params(&self) -> String {
        let g = &self.generation;
        let context = &g.messages[..g.messages.len().saturating_sub(1)];
        serde_json::json!({
            "max_tokens": g.max_tokens, "temperature": g.temperature, "seed": g.seed, "stop": g.stop,
            "context": context,
        })
        .to_string()
    }
}

/// What the caches keep: a complete answer.
#[derive(Debug, Clone)]
pub struct CachedAnswer {
    pub text: String,
    pub finish_reason: FinishReason,
    pub usage: Usage,
}

/// A cache miss, with what storing the answer later needs.
struct CacheMiss {
    key: KeyId,
    prompt: String,
    params: String,
    embedding: Option<Vec<f32>>,
}

/// A complete answer.
#[derive(Debug, Clone)]
pub struct Completion {
    pub text: String,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    /// The session after this turn was stored.
    pub session: Option<Session>,
}

/// Shared state of the request path.
#[derive(Clone)]
pub struct Engine {
    pub backend: Arc<dyn Backend>,
    pub store: Arc<dyn SessionStore>,
    pub metrics: ChatMetrics,
    pub system_prompt: Option<String>,
    pub max_tokens: u32,
    /// Answers of session-less requests, per API key.
    pub caches: Arc<Caches<CachedAnswer>>,
}

/// Checks a session id: short, printable, no separators that would confuse Redis keys or
/// URLs.
pub fn validate_session_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_SESSION_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ChatError::invalid(
            "session_id",
            format!(
                "must be 1 to {MAX_SESSION_ID_LEN} characters of A-Z, a-z, 0-9, '-', '_' or '.'"
            ),
        ))
    }
}

impl Engine {
    /// Validates the request and builds the conversation the backend sees: system prompt,
    /// then the session's earlier turns, then the request's own messages.
    pub async fn prepare(&self, request: ChatRequest) -> Result<Prepared> {
        if request.messages.is_empty() {
            return Err(ChatError::invalid("messages", "must not be empty"));
        }
        if let Some(max) = request.max_tokens
            && (max == 0 || max > self.max_tokens)
        {
            return Err(ChatError::invalid(
                "max_tokens",
                format!("must be between 1 and {}", self.max_tokens),
            ));
        }
        if let Some(t) = request.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(ChatError::invalid("temperature", "must be between 0 and 2"));
        }
        if request.stop.len() > MAX_STOP_STRINGS {
            return Err(ChatError::invalid(
                "stop",
                format!("at most {MAX_STOP_STRINGS} stop strings"),
            ));
        }
        let user_text = match request.messages.last() {
            Some(m) if m.role == Role::User => m.content.clone(),
            _ if request.session_id.is_some() => {
                return Err(ChatError::invalid(
                    "messages",
                    "with a session, the last message must be the user's new turn",
                ));
            }
            _ => String::new(),
        };

        let (system, rest): (Vec<_>, Vec<_>) = request
            .messages
            .into_iter()
            .partition(|m| m.role == Role::System);
        let mut messages = system;
        if messages.is_empty()
            && let Some(prompt) = &self.system_prompt
        {
            messages.push(ChatMessage::new(Role::System, prompt.clone()));
        }
        if let Some(id) = &request.session_id {
            validate_session_id(id)?;
            match self.store.load(&request.owner, id).await? {
                Some(session) => messages.extend(session.messages),
                None if self.store.exists(id).await? => {
                    return Err(ChatError::SessionNotFound(id.clone()));
                }
                None => {}
            }
        }
        messages.extend(rest);
        Ok(Prepared {
            generation: GenerationRequest {
                messages,
                max_tokens: request.max_tokens,
                temperature: request.temperature,
                seed: request.seed,
                stop: request.stop,
            },
            owner: request.owner,
            session_id: request.session_id,
            user_text,
        })
    }

    /// Generates the whole answer (or takes it from a cache) and stores the turn.
    pub async fn complete(&self, prepared: Prepared, endpoint: &'static str) -> Result<Completion> {
        let miss = match self.cached(&prepared, endpoint).await {
            Ok(hit) => {
                return Ok(Completion {
                    text: hit.text,
                    finish_reason: hit.finish_reason,
                    usage: hit.usage,
                    session: None,
                });
            }
            Err(miss) => miss,
        };
        let stream = self.generate(&prepared, endpoint).await?;
        let (text, finish_reason, usage) = crate::backend::collect(stream).await?;
        self.cache_store(miss, &text, finish_reason, usage);
        let session = self.remember(&prepared, &text).await?;
        Ok(Completion {
            text,
            finish_reason,
            usage,
            session,
        })
    }

    /// Streams the answer; the turn is stored when the stream completes (a client that
    /// disconnects early leaves no half answer in memory).
    pub async fn stream(&self, prepared: Prepared, endpoint: &'static str) -> Result<EventStream> {
        let miss = match self.cached(&prepared, endpoint).await {
            Ok(hit) => {
                let events = vec![
                    Ok(StreamEvent::Delta(hit.text)),
                    Ok(StreamEvent::Done {
                        finish_reason: hit.finish_reason,
                        usage: hit.usage,
                    }),
                ];
                return Ok(Box::pin(futures::stream::iter(events)));
            }
            Err(miss) => miss,
        };
        let mut inner = self.generate(&prepared, endpoint).await?;
        let engine = self.clone();
        let mut miss = Some(miss);
        Ok(Box::pin(async_stream::stream! {
            let mut text = String::new();
            while let Some(event) = inner.next().await {
                match &event {
                    Ok(StreamEvent::Delta(delta)) => text.push_str(delta),
                    Ok(StreamEvent::Done { finish_reason, usage }) => {
                        if let Some(miss) = miss.take() {
                            engine.cache_store(miss, &text, *finish_reason, *usage);
                        }
                        if let Err(e) = engine.remember(&prepared, &text).await {
                            tracing::warn!(error = %e, "cannot store the turn in session memory");
                        }
                    }
                    Err(_) => {}
                }
                yield event;
            }
        }))
    }

    /// Looks the request up in the caches (session-less requests only). `Err` is a miss,
    /// carrying what [`Engine::cache_store`] needs later (`None` when not cacheable).
    async fn cached(
        &self,
        prepared: &Prepared,
        endpoint: &'static str,
    ) -> Result<CachedAnswer, Option<CacheMiss>> {
        if prepared.session_id.is_some() {
            return Err(None);
        }
        let key = KeyId::new(prepared.owner.as_str());
        let prompt = prepared.cache_prompt().to_string();
        let params = prepared.cache_params();
        let model = self.backend.model_name();
        let request = CacheRequest {
            key: &key,
            model,
            prompt: &prompt,
            session_id: None,
            params: &params,
        };
        let hit = |cache: &'static str, answer: CachedAnswer| {
            self.metrics.cache_hits.with_label_values(&[cache]).inc();
            self.metrics.outcome(endpoint, "cache_hit");
            answer
        };
        if let Some(answer) = self.caches.exact.as_ref().and_then(|c| c.get(&request)) {
            return Ok(hit("exact", answer));
        }
        let mut embedding = None;
        if let Some(semantic) = &self.caches.semantic {
            match semantic.lookup(&request).await {
                Ok(SemanticLookup::Hit { value, .. }) => return Ok(hit("semantic", value)),
                Ok(SemanticLookup::Miss { embedding: e }) => embedding = Some(e),
                Ok(SemanticLookup::Bypass) => {}
                // A cache failure must not fail the request: generate instead.
                Err(e) => tracing::warn!(error = %e, "semantic cache lookup failed"),
            }
        }
        Err(Some(CacheMiss {
            key,
            prompt,
            params,
            embedding,
        }))
    }

    fn cache_store(
        &self,
        miss: Option<CacheMiss>,
        text: &str,
        finish_reason: FinishReason,
        usage: Usage,
    ) {
        let Some(miss) = miss else { return };
        let request = CacheRequest {
            key: &miss.key,
            model: self.backend.model_name(),
            prompt: &miss.prompt,
            session_id: None,
            params: &miss.params,
        };
        let answer = CachedAnswer {
            text: text.to_string(),
            finish_reason,
            usage,
        };
        self.caches.store(&request, miss.embedding, answer);
    }

    async fn remember(&self, prepared: &Prepared, answer: &str) -> Result<Option<Session>> {
        let Some(id) = &prepared.session_id else {
            return Ok(None);
        };
        match self
            .store
            .append(&prepared.owner, id, &prepared.user_text, answer)
            .await?
        {
            Some(session) => Ok(Some(session)),
            None => Err(ChatError::SessionNotFound(id.clone())),
        }
    }

    /// Starts the backend and wraps its stream with the metrics.
    async fn generate(&self, prepared: &Prepared, endpoint: &'static str) -> Result<EventStream> {
        let started = Instant::now();
        let inner = match self.backend.generate(prepared.generation.clone()).await {
            Ok(stream) => stream,
            Err(e) => {
                self.metrics.outcome(endpoint, e.label());
                return Err(e.into());
            }
        };
        let metrics = self.metrics.clone();
        let backend = self.backend.kind();
        Ok(Box::pin(measured(
            inner, metrics, backend, endpoint, started,
        )))
    }
}

/// Records time to first token, tokens/s, token counts and the outcome; a stream dropped
/// before its end counts as `cancelled`.
fn measured(
    mut inner: EventStream,
    metrics: ChatMetrics,
    backend: &'static str,
    endpoint: &'static str,
    started: Instant,
) -> impl futures::Stream<Item = crate::backend::Result<StreamEvent>> + Send {
    async_stream::stream! {
        let mut outcome = OutcomeGuard { metrics: metrics.clone(), endpoint, outcome: Some("cancelled") };
        let mut first_token: Option<Instant> = None;
        while let Some(event) = inner.next().await {
            match &event {
                Ok(StreamEvent::Delta(_)) if first_token.is_none() => {
                    let now = Instant::now();
                    metrics
                        .time_to_first_token
                        .with_label_values(&[backend])
                        .observe((now - started).as_secs_f64());
                    first_token = Some(now);
                }
                Ok(StreamEvent::Done { usage, .. }) => {
                    metrics.tokens.with_label_values(&["prompt"]).inc_by(usage.prompt_tokens.into());
                    metrics.tokens.with_label_values(&["completion"]).inc_by(usage.completion_tokens.into());
                    metrics.tokens.with_label_values(&["prompt_cached"]).inc_by(usage.cached_prompt_tokens().into());
                    if let Some(first) = first_token {
                        let seconds = first.elapsed().as_secs_f64();
                        if usage.completion_tokens > 1 && seconds > 0.0 {
                            metrics
                                .tokens_per_second
                                .with_label_values(&[backend])
                                .observe(f64::from(usage.completion_tokens - 1) / seconds);
                        }
                    }
                    outcome.outcome = Some("ok");
                }
                Err(e) => outcome.outcome = Some(e.label()),
                _ => {}
            }
            yield event;
        }
    }
}

struct OutcomeGuard {
    metrics: ChatMetrics,
    endpoint: &'static str,
    outcome: Option<&'static str>,
}

impl Drop for OutcomeGuard {
    fn drop(&mut self) {
        if let Some(outcome) = self.outcome.take() {
            self.metrics.outcome(self.endpoint, outcome);
        }
    }
}
