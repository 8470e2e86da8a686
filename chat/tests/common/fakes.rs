//! Fault-injecting fakes of the remote backends' HTTP APIs, bound to 127.0.0.1:0.
//! They serve a fixed answer ("Hello from the fake") one word per chunk, and can fail the
//! first requests with 503, stall before answering, pace chunks, or cut the connection
//! after a few chunks. Every request body is recorded, and a flag tells whether the
//! server noticed the client going away mid-answer.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const ANSWER: [&str; 4] = ["Hello", " from", " the", " fake"];

#[derive(Default)]
pub struct Faults {
    /// Requests answered 503 before a normal answer.
    pub fail_first: AtomicUsize,
    /// Answer with this status instead (e.g. 400), when non-zero.
    pub status: AtomicUsize,
    /// Milliseconds to wait before the response headers.
    pub stall_ms: AtomicUsize,
    /// Milliseconds between chunks.
    pub pace_ms: AtomicUsize,
    /// Cut the connection after this many chunks, when non-zero.
    pub cut_after: AtomicUsize,
    /// Stream this many chunks instead of the answer (a long answer), when non-zero.
    pub long: AtomicUsize,
}

#[derive(Default)]
pub struct FakeState {
    pub faults: Faults,
    pub attempts: AtomicUsize,
    pub bodies: Mutex<Vec<Value>>,
    /// Set when a response body was dropped before it was fully sent.
    pub client_went_away: AtomicBool,
}

impl FakeState {
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
}

/// Sets `client_went_away` unless disarmed at the end of a complete answer.
struct GoneGuard {
    state: Arc<FakeState>,
    armed: bool,
}

impl Drop for GoneGuard {
    fn drop(&mut self) {
        if self.armed {
            self.state.client_went_away.store(true, Ordering::SeqCst);
        }
    }
}

/// Applies the faults common to both fakes; `Err` is the response to send instead.
async fn before_answer(state: &Arc<FakeState>, body: &Bytes) -> Result<(), Response> {
    state.attempts.fetch_add(1, Ordering::SeqCst);
    state
        .bodies
        .lock()
        .unwrap()
        .push(serde_json::from_slice(body).unwrap_or(Value::Null));
    let stall = state.faults.stall_ms.load(Ordering::SeqCst);
    if stall > 0 {
        tokio::time::sleep(Duration::from_millis(stall as u64)).await;
    }
    let status = state.faults.status.load(Ordering::SeqCst);
    if status != 0 {
        let status = StatusCode::from_u16(status as u16).unwrap();
        return Err((status, Json(json!({"error": {"message": "fake refuses"}}))).into_response());
    }
    let failing = state
        .faults
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "fake overloaded").into_response());
    }
    Ok(())
}

/// Streams `lines` (each already framed), honouring pace and cut faults.
fn stream_lines(state: Arc<FakeState>, lines: Vec<String>, content_type: &'static str) -> Response {
    let pace = state.faults.pace_ms.load(Ordering::SeqCst) as u64;
    let cut = state.faults.cut_after.load(Ordering::SeqCst);
    let body = async_stream::stream! {
        let mut guard = GoneGuard { state: state.clone(), armed: true };
        for (i, line) in lines.into_iter().enumerate() {
            // Pace first, so the chunks before a cut have time to leave.
            if pace > 0 {
                tokio::time::sleep(Duration::from_millis(pace)).await;
            }
            if cut != 0 && i == cut {
                yield Err(std::io::Error::other("fake cuts the connection"));
                return;
            }
            yield Ok::<_, std::io::Error>(Bytes::from(line));
        }
        guard.armed = false;
    };
    Response::builder()
        .header("content-type", content_type)
        .body(Body::from_stream(body))
        .unwrap()
}

fn words(state: &FakeState) -> Vec<String> {
    match state.faults.long.load(Ordering::SeqCst) {
        0 => ANSWER.iter().map(|s| s.to_string()).collect(),
        n => (0..n).map(|i| format!(" w{i}")).collect(),
    }
}

async fn openai_chat(State(state): State<Arc<FakeState>>, body: Bytes) -> Response {
    if let Err(response) = before_answer(&state, &body).await {
        return response;
    }
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "fake",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let words = words(&state);
    let mut lines = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    lines.extend(
        words
            .iter()
            .map(|w| chunk(json!({"content": w}), Value::Null)),
    );
    lines.push(chunk(json!({}), json!("stop")));
    lines.push(format!(
        "data: {}\n\n",
        json!({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "fake", "choices": [],
               "usage": {"prompt_tokens": 7, "completion_tokens": words.len(), "total_tokens": 7 + words.len()}})
    ));
    lines.push("data: [DONE]\n\n".into());
    stream_lines(state, lines, "text/event-stream")
}

/// Ollama's documented `/api/chat` streaming answer: one JSON object per line.
async fn ollama_chat(State(state): State<Arc<FakeState>>, body: Bytes) -> Response {
    if let Err(response) = before_answer(&state, &body).await {
        return response;
    }
    let model = state
        .bodies
        .lock()
        .unwrap()
        .last()
        .and_then(|b| b["model"].as_str().map(str::to_string))
        .unwrap_or_default();
    let words = words(&state);
    let mut lines: Vec<String> = words
        .iter()
        .map(|w| {
            format!(
                "{}\n",
                json!({"model": model, "created_at": "2023-08-04T08:52:19.385406455-07:00",
                       "message": {"role": "assistant", "content": w}, "done": false})
            )
        })
        .collect();
    lines.push(format!(
        "{}\n",
        json!({"model": model, "created_at": "2023-08-04T19:22:45.499127Z",
               "message": {"role": "assistant", "content": ""},
               "done": true, "done_reason": "stop",
               "total_duration": 4883583458u64, "load_duration": 1334875,
               "prompt_eval_count": 26, "prompt_eval_duration": 342546000,
               "eval_count": words.len(), "eval_duration": 4535599000u64})
    ));
    stream_lines(state, lines, "application/x-ndjson")
}

/// Starts the fake; returns its base URL (no `/v1`) and its state.
pub async fn start() -> (String, Arc<FakeState>) {
    let state = Arc::new(FakeState::default());
    let router = axum::Router::new()
        .route("/v1/chat/completions", post(openai_chat))
        .route(
            "/v1/models",
            get(|| async {
                Json(json!({"object": "list", "data": [{"id": "fake", "object": "model"}]}))
            }),
        )
        .route("/api/chat", post(ollama_chat))
        .route("/api/tags", get(|| async { Json(json!({"models": []})) }))
        .with_state(state.clone());
    (super::serve(router).await, state)
}
