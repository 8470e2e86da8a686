//! The `openai` backend: any server speaking OpenAI's chat completions API (OpenAI, vLLM,
//! llama.cpp's `llama-server`, …). Always asks for a streamed answer (SSE) so tokens flow
//! through as they come and a disconnecting client closes the backend connection.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use super::retry::{self, AttemptError, RetryPolicy};
use super::{
    Backend, BackendError, EventStream, FinishReason, GenerationRequest, Result, StreamEvent,
    Usage, lines, reachability,
};

/// Settings of a remote backend (shared by `openai` and `ollama`).
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    pub url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub connect_timeout: Duration,
    /// Longest silence while reading an answer.
    pub read_timeout: Duration,
    pub retry: RetryPolicy,
    pub default_max_tokens: u32,
    pub default_temperature: f64,
}

impl RemoteOptions {
    pub fn client(&self) -> Result<reqwest::Client> {
        reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .build()
            .map_err(|e| BackendError::Load(format!("cannot build the HTTP client: {e}")))
    }
}

pub struct OpenAiBackend {
    client: reqwest::Client,
    /// The API base, ending in `/v1`.
    base: String,
    options: RemoteOptions,
}

impl OpenAiBackend {
    pub fn new(options: RemoteOptions) -> Result<Self> {
        let trimmed = options.url.trim_end_matches('/');
        if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
            return Err(BackendError::Load(format!(
                "--chat-url `{}` must be an http:// or https:// URL",
                options.url
            )));
        }
        let base = if trimmed.ends_with("/v1") {
            trimmed.to_string()
        } else {
            format!("{trimmed}/v1")
        };
        Ok(OpenAiBackend {
            client: options.client()?,
            base,
            options,
        })
    }

    fn request_body(&self, request: &GenerationRequest) -> Value {
        let mut body = json!({
            "model": self.options.model,
            "messages": request.messages.iter().map(|m| json!({"role": m.role.as_str(), "content": m.content})).collect::<Vec<_>>(),
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": request.max_tokens.unwrap_or(self.options.default_max_tokens),
            "temperature": request.temperature.unwrap_or(self.options.default_temperature),
        });
        if let Some(seed) = request.seed {
            body["seed"] = json!(seed);
        }
        if !request.stop.is_empty() {
            body["stop"] = json!(request.stop);
        }
        body
    }

    fn authorize(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.options.api_key {
            Some(key) => builder.bearer_auth(key),
            None => builder,
        }
    }

    async fn open(&self, body: &Value) -> Result<EventStream, AttemptError> {
        let response = self
            .authorize(self.client.post(format!("{}/chat/completions", self.base)))
            .json(body)
            .send()
            .await
            .map_err(retry::from_reqwest)?;
        let response = retry::check_status(response).await?;
        Ok(Box::pin(parse_sse(lines::lines(response))))
    }
}

/// Reads OpenAI's `chat.completion.chunk` SSE events (the body's `lines`) into
/// [`StreamEvent`]s.
pub(super) fn parse_sse(
    lines: impl futures::Stream<Item = Result<String>> + Send,
) -> impl futures::Stream<Item = Result<StreamEvent>> + Send {
    async_stream::try_stream! {
        let mut lines = Box::pin(lines);
        let mut finish: Option<FinishReason> = None;
        let mut usage: Option<Usage> = None;
        let mut deltas = 0u32;
        let mut done = false;
        while let Some(line) = lines.next().await {
            let line = line?;
            let Some(data) = line.strip_prefix("data:") else { continue };
            let data = data.trim();
            if data == "[DONE]" {
                done = true;
                break;
            }
            let chunk: Value = serde_json::from_str(data)
                .map_err(|e| BackendError::Protocol(format!("bad SSE chunk `{data}`: {e}")))?;
            if let Some(error) = chunk.get("error") {
                Err::<(), BackendError>(BackendError::Unavailable(format!("the backend reported: {error}")))?;
            }
            if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
                let count = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
                usage = Some(Usage::new(count("prompt_tokens"), count("completion_tokens")));
            }
            let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else { continue };
            if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str)
                && !text.is_empty()
            {
                deltas += 1;
                yield StreamEvent::Delta(text.to_string());
            }
            match choice.get("finish_reason").and_then(Value::as_str) {
                Some("length") => finish = Some(FinishReason::Length),
                Some(_) => finish = Some(FinishReason::Stop),
                None => {}
            }
        }
        if !done && finish.is_none() {
            Err::<(), BackendError>(BackendError::Unavailable("the backend closed the stream mid-answer".into()))?;
        }
        yield StreamEvent::Done {
            finish_reason: finish.unwrap_or(FinishReason::Stop),
            // Servers that ignore include_usage: count chunks, roughly one token each.
            usage: usage.unwrap_or(Usage::new(0, deltas)),
        };
    }
}

#[async_trait::async_trait]
impl Backend for OpenAiBackend {
    async fn generate(&self, request: GenerationRequest) -> Result<EventStream> {
        let body = self.request_body(&request);
        retry::open_with_retry(self.options.retry, || self.open(&body)).await
    }

    async fn reachable(&self) -> Result<()> {
        let url = format!("{}/models", self.base);
        reachability::probe(self.authorize(self.client.get(&url)), &url).await
    }

    fn model_name(&self) -> &str {
        &self.options.model
    }

    fn kind(&self) -> &'static str {
        "openai"
    }
}
