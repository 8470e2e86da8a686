//! OpenAI-compatible `POST /v1/chat/completions` (JSON and SSE streaming) and
//! `GET /v1/models`, close enough to OpenAI's API that its official SDKs work unchanged.

use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Body, Caller, SESSION_HEADER, counted, parse_json, session_id, unix_now};
use crate::backend::{ChatMessage, Role, StreamEvent};
use crate::engine::ChatRequest;
use crate::error::{ChatError, Result};
use crate::shared::Shared;

const ENDPOINT: &str = super::CHAT_COMPLETIONS;

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: Option<String>,
    messages: Vec<WireMessage>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    /// OpenAI's newer name for max_tokens.
    max_completion_tokens: Option<u32>,
    stop: Option<Stop>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    seed: Option<u64>,
    session_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct WireMessage {
    role: String,
    content: Content,
}

/// A message's content: a string, or OpenAI's list of parts (only text parts supported).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

fn to_messages(wire: Vec<WireMessage>) -> Result<Vec<ChatMessage>> {
    wire.into_iter()
        .enumerate()
        .map(|(i, m)| {
            // "developer" is OpenAI's newer name for the system role.
            let role = match m.role.as_str() {
                "developer" => Some(Role::System),
                other => Role::parse(other),
            }
            .ok_or_else(|| {
                ChatError::invalid(
                    format!("messages[{i}].role"),
                    format!(
                        "`{}` is not one of system, developer, user, assistant",
                        m.role
                    ),
                )
            })?;
            let content = match m.content {
                Content::Text(text) => text,
                Content::Parts(parts) => {
                    let mut text = String::new();
                    for (j, part) in parts.into_iter().enumerate() {
                        match (part.kind.as_str(), part.text) {
                            ("text", Some(t)) => text.push_str(&t),
                            _ => {
                                return Err(ChatError::invalid(
                                    format!("messages[{i}].content[{j}]"),
                                    "only text parts are supported",
                                ));
                            }
                        }
                    }
                    text
                }
            };
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}

/// What a request asks for, validated and ready for the engine.
struct Accepted {
    prepared: crate::engine::Prepared,
    session: Option<String>,
    guard: Option<HeaderValue>,
    stream: bool,
    include_usage: bool,
    model: String,
}

pub async fn chat_completions(
    State(shared): State<Shared>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let Accepted {
        prepared,
        session,
        guard,
        stream,
        include_usage,
        model,
    } = counted(
        &shared,
        ENDPOINT,
        accept(&shared, caller, &headers, body).await,
    )?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = unix_now();

    let mut response = if stream {
        let events = shared.engine.stream(prepared, ENDPOINT).await?;
        sse(events, id, created, model, include_usage).into_response()
    } else {
        let done = shared.engine.complete(prepared, ENDPOINT).await?;
        Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": done.text},
                "logprobs": null,
                "finish_reason": done.finish_reason.as_str(),
            }],
            "usage": done.usage,
        }))
        .into_response()
    };
    if let Some(id) = session
        && let Ok(value) = HeaderValue::from_str(&id)
    {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
    if let Some(flag) = guard {
        response.headers_mut().insert(super::GUARD_HEADER, flag);
    }
    Ok(response)
}

async fn accept(
    shared: &Shared,
    caller: Caller,
    headers: &HeaderMap,
    body: Body,
) -> Result<Accepted> {
    let request: CompletionRequest = parse_json(body)?;
    let model = shared.engine.backend.model_name().to_string();
    if let Some(asked) = &request.model
        && *asked != model
    {
        return Err(ChatError::invalid(
            "model",
            format!("model `{asked}` is not served here; use `{model}`"),
        ));
    }
    let session = session_id(headers, request.session_id)?;
    let stop = match request.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    let chat = ChatRequest {
        owner: caller.owner,
        session_id: session.clone(),
        messages: to_messages(request.messages)?,
        max_tokens: request.max_completion_tokens.or(request.max_tokens),
        temperature: request.temperature,
        seed: request.seed,
        stop,
    };
    let guard = shared.check_prompt(&chat).await?;
    Ok(Accepted {
        prepared: shared.engine.prepare(chat).await?,
        session,
        guard,
        stream: request.stream,
        include_usage: request.stream_options.is_some_and(|o| o.include_usage),
        model,
    })
}

/// OpenAI's streaming format: a first chunk with the role, one chunk per delta, a last
/// chunk with `finish_reason`, optionally a usage chunk with no choices, then `[DONE]`.
/// An error after the stream started is sent as an `error` event (the status is already
/// 200).
fn sse(
    mut events: crate::backend::EventStream,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let chunk = move |delta: Value, finish: Value| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    };
    let stream = async_stream::stream! {
        yield Ok(Event::default().data(chunk(json!({"role": "assistant", "content": ""}), Value::Null).to_string()));
        while let Some(event) = events.next().await {
            match event {
                Ok(StreamEvent::Delta(text)) => {
                    yield Ok(Event::default().data(chunk(json!({"content": text}), Value::Null).to_string()));
                }
                Ok(StreamEvent::Done { finish_reason, usage }) => {
                    yield Ok(Event::default().data(chunk(json!({}), json!(finish_reason.as_str())).to_string()));
                    if include_usage {
                        let mut last = chunk(json!({}), Value::Null);
                        last["choices"] = json!([]);
                        last["usage"] = json!(usage);
                        yield Ok(Event::default().data(last.to_string()));
                    }
                    break;
                }
                Err(e) => {
                    let error = ChatError::from(e);
                    yield Ok(Event::default().data(error.body().to_string()));
                    break;
                }
            }
        }
        yield Ok(Event::default().data("[DONE]"));
    };
    Sse::new(stream)
}

pub async fn models(State(shared): State<Shared>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": shared.engine.backend.model_name(),
            "object": "model",
            "created": 0,
            "owned_by": format!("mooring ({} backend)", shared.engine.backend.kind()),
        }],
    }))
}
