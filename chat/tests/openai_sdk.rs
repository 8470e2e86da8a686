//! The official `openai` Python SDK against our server (MOORING_TEST_PYTHON), on real
//! models: the in-process SmolLM2, and — the CI test — a two-turn conversation
//! through the `openai` backend to llama.cpp's llama-server, with memory in Redis that
//! survives a restart of our chat service.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

/// Runs tests/py/openai_client.py with `plan`; returns its JSON output.
fn run_sdk(plan: Value) -> Value {
    let python = common::require_env("MOORING_TEST_PYTHON");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/openai_client.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(plan.to_string())
        .output()
        .expect("MOORING_TEST_PYTHON runs");
    assert!(
        output.status.success(),
        "the SDK script failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}

async fn run_sdk_async(plan: Value) -> Value {
    tokio::task::spawn_blocking(move || run_sdk(plan))
        .await
        .unwrap()
}

const SYSTEM: &str = "You are a helpful assistant. Answer briefly.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_streaming_and_not_against_the_local_model() {
    let gguf = common::gguf();
    let args = common::args(&[
        "--chat-backend",
        "local",
        "--chat-gguf",
        gguf.to_str().unwrap(),
        "--chat-temperature",
        "0",
        // Every call must reach the model here, not the answer cache.
        "--cache-exact",
        "off",
    ]);
    let registry = prometheus::Registry::new();
    let service = mooring_chat::ChatService::build(&args, &registry)
        .await
        .unwrap();
    assert!(service.readiness().await.ready);
    let base = common::serve(service.router()).await;

    let question = json!([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is the capital of France?"}]);
    let out = run_sdk_async(json!({
        "base_url": format!("{base}/v1"),
        "model": "smollm2",
        "calls": [
            {"messages": question, "stream": false},
            {"messages": question, "stream": true},
            {"messages": question, "stream": true, "max_tokens": 3},
        ],
    }))
    .await;
    assert_eq!(out["models"], json!(["smollm2"]));
    let [plain, streamed, short] = [&out["results"][0], &out["results"][1], &out["results"][2]];
    assert!(
        plain["content"].as_str().unwrap().contains("Paris"),
        "{plain}"
    );
    assert_eq!(plain["finish_reason"], "stop");
    assert_eq!(
        streamed["content"], plain["content"],
        "greedy: same answer streamed or not"
    );
    assert_eq!(streamed["finish_reason"], "stop");
    assert!(streamed["chunks"].as_u64().unwrap() > 3, "{streamed}");
    assert_eq!(
        streamed["usage"]["completion_tokens"],
        plain["usage"]["completion_tokens"]
    );
    assert!(streamed["usage"]["prompt_tokens"].as_u64().unwrap() > 10);
    assert_eq!(short["finish_reason"], "length");
    assert_eq!(short["usage"]["completion_tokens"], 3);
    assert_eq!(out["error_check"], "messages");
}

/// Forwards chat requests to llama-server and records what the backend received.
#[derive(Clone)]
struct Recorder {
    upstream: String,
    client: reqwest::Client,
    bodies: Arc<Mutex<Vec<Value>>>,
}

async fn forward(State(r): State<Recorder>, body: Bytes) -> Response {
    r.bodies
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    let upstream = r
        .client
        .post(format!("{}/v1/chat/completions", r.upstream))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    Response::builder()
        .status(upstream.status().as_u16())
        .header("content-type", upstream.headers()["content-type"].clone())
        .body(Body::from_stream(upstream.bytes_stream()))
        .unwrap()
}

async fn models(State(r): State<Recorder>) -> Response {
    let upstream = r
        .client
        .get(format!("{}/v1/models", r.upstream))
        .send()
        .await
        .unwrap();
    Response::new(Body::from(upstream.bytes().await.unwrap()))
}

async fn start_chat(args: &mooring_chat::ChatArgs) -> (String, tokio::task::JoinHandle<()>) {
    let registry = prometheus::Registry::new();
    let service = mooring_chat::ChatService::build(args, &registry)
        .await
        .unwrap();
    let readiness = service.readiness().await;
    assert!(
        readiness.ready && readiness.backend_reachable,
        "{readiness:?}"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move { axum::serve(listener, service.router()).await.unwrap() });
    (base, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_turn_conversation_through_llama_server_with_redis_memory_across_a_restart() {
    let llama = common::require_env("MOORING_TEST_LLAMA_URL");
    let redis = common::require_env("MOORING_TEST_REDIS_URL");
    let recorder = Recorder {
        upstream: llama.trim_end_matches('/').to_string(),
        client: reqwest::Client::new(),
        bodies: Arc::default(),
    };
    let proxy = common::serve(
        axum::Router::new()
            .route("/v1/chat/completions", post(forward))
            .route("/v1/models", get(models))
            .with_state(recorder.clone()),
    )
    .await;
    let prefix = format!("mooring-test-{}", uuid::Uuid::new_v4().simple());
    let args = common::args(&[
        "--chat-backend",
        "openai",
        "--chat-url",
        &proxy,
        "--chat-model",
        "smollm2",
        "--chat-temperature",
        "0",
        "--chat-system-prompt",
        SYSTEM,
        "--chat-memory-store",
        "redis",
        "--chat-redis-url",
        &redis,
        "--chat-redis-prefix",
        &prefix,
    ]);
    let session = "conversation-1";

    let (base, first_server) = start_chat(&args).await;
    let turn1 = run_sdk_async(json!({
        "base_url": format!("{base}/v1"), "model": "smollm2",
        "calls": [{"messages": [{"role": "user", "content": "My name is Zorblax. Please remember my name."}],
                   "stream": true, "session_id": session}],
    }))
    .await;
    let answer1 = turn1["results"][0]["content"].as_str().unwrap().to_string();
    assert!(!answer1.is_empty());

    // Restart: a new ChatService instance, sharing only Redis with the first.
    first_server.abort();
    let (base, _second_server) = start_chat(&args).await;
    let turn2 = run_sdk_async(json!({
        "base_url": format!("{base}/v1"), "model": "smollm2",
        "calls": [{"messages": [{"role": "user", "content": "What is my name?"}],
                   "stream": true, "session_id": session}],
    }))
    .await;
    let answer2 = turn2["results"][0]["content"].as_str().unwrap();
    assert_eq!(turn2["results"][0]["finish_reason"], "stop");

    // The backend received turn 1 (question and answer) before turn 2.
    let bodies = recorder.bodies.lock().unwrap().clone();
    let last = &bodies.last().unwrap()["messages"];
    assert_eq!(
        *last,
        json!([
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "My name is Zorblax. Please remember my name."},
            {"role": "assistant", "content": answer1},
            {"role": "user", "content": "What is my name?"},
        ])
    );
    assert!(
        answer2.contains("Zorblax"),
        "turn 2 only makes sense with turn 1: {answer2:?}"
    );
}
