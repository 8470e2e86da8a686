//! The `ollama` backend: Ollama's `POST /api/chat` with `stream: true`, which answers with
//! newline-delimited JSON objects — `{"message": {"content": …}, "done": false}` per
//! token, then a last one with `"done": true`, `done_reason`, `prompt_eval_count` and
//! `eval_count`.

use futures::StreamExt;
use serde_json::{Value, json};

use super::openai::RemoteOptions;
use super::retry::{self, AttemptError};
use super::{
    Backend, BackendError, EventStream, FinishReason, GenerationRequest, Result, StreamEvent,
    Usage, lines, reachability,
};

pub struct OllamaBackend {
    client: reqwest::Client,
    base: String,
    options: RemoteOptions,
}

impl OllamaBackend {
    pub fn new(options: RemoteOptions) -> Result<Self> {
        let base = options.url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(BackendError::Load(format!(
                "--chat-url `{}` must be an http:// or https:// URL",
                options.url
            )));
        }
        Ok(OllamaBackend {
            client: options.client()?,
            base,
            options,
        })
    }

    fn request_body(&self, request: &GenerationRequest) -> Value {
        let mut options = json!({
            "num_predict": request.max_tokens.unwrap_or(self.options.default_max_tokens),
            "temperature": request.temperature.unwrap_or(self.options.default_temperature),
        });
        if let Some(seed) = request.seed {
            options["seed"] = json!(seed);
        }
        if !request.stop.is_empty() {
            options["stop"] = json!(request.stop);
        }
        json!({
            "model": self.options.model,
            "messages": request.messages.iter().map(|m| json!({"role": m.role.as_str(), "content": m.content})).collect::<Vec<_>>(),
            "stream": true,
            "options": options,
        })
    }

    async fn open(&self, body: &Value) -> Result<EventStream, AttemptError> {
        let mut builder = self.client.post(format!("{}/api/chat", self.base));
        if let Some(key) = &self.options.api_key {
            builder = builder.bearer_auth(key);
        }
        let response = builder
            .json(body)
            .send()
            .await
            .map_err(retry::from_reqwest)?;
        let response = retry::check_status(response).await?;
        Ok(Box::pin(parse_ndjson(lines::lines(response))))
    }
}

/// Reads Ollama's NDJSON objects (the body's `lines`) into [`StreamEvent`]s.
pub(super) fn parse_ndjson(
    lines: impl futures::Stream<Item = Result<String>> + Send,
) -> impl futures::Stream<Item = Result<StreamEvent>> + Send {
    async_stream::try_stream! {
        let mut lines = Box::pin(lines);
        let mut finished = false;
        while let Some(line) = lines.next().await {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let object: Value = serde_json::from_str(&line)
                .map_err(|e| BackendError::Protocol(format!("bad NDJSON line `{line}`: {e}")))?;
            if let Some(error) = object.get("error").and_then(Value::as_str) {
                Err::<(), BackendError>(BackendError::Unavailable(format!("ollama reported: {error}")))?;
            }
            if let Some(text) = object.pointer("/message/content").and_then(Value::as_str)
                && !text.is_empty()
            {
                yield StreamEvent::Delta(text.to_string());
            }
            if object.get("done").and_then(Value::as_bool) == Some(true) {
                let count = |k: &str| object.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
                let finish_reason = match object.get("done_reason").and_then(Value::as_str) {
                    Some("length") => FinishReason::Length,
                    _ => FinishReason::Stop,
                };
                yield StreamEvent::Done {
                    finish_reason,
                    usage: Usage::new(count("prompt_eval_count"), count("eval_count")),
                };
                finished = true;
                break;
            }
        }
        if !finished {
            Err::<(), BackendError>(BackendError::Unavailable("ollama closed the stream before `done`".into()))?;
        }
    }
}

#[async_trait::async_trait]
impl Backend for OllamaBackend {
    async fn generate(&self, request: GenerationRequest) -> Result<EventStream> {
        let body = self.request_body(&request);
        retry::open_with_retry(self.options.retry, || self.open(&body)).await
    }

    async fn reachable(&self) -> Result<()> {
        let url = format!("{}/api/tags", self.base);
        reachability::probe(self.client.get(&url), &url).await
    }

    fn model_name(&self) -> &str {
        &self.options.model
    }

    fn kind(&self) -> &'static str {
        "ollama"
    }
}
