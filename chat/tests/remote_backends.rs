//! The `openai` and `ollama` backends against fault-injecting fakes (retries, timeouts,
//! mid-stream failures, cancellation), and `openai` against the real llama.cpp
//! `llama-server` (MOORING_TEST_LLAMA_URL).

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::fakes;
use futures::StreamExt;
use mooring_chat::backend::ollama::OllamaBackend;
use mooring_chat::backend::openai::{OpenAiBackend, RemoteOptions};
use mooring_chat::backend::retry::RetryPolicy;
use mooring_chat::backend::{
    Backend, BackendError, ChatMessage, FinishReason, GenerationRequest, Role, StreamEvent, collect,
};

fn options(url: &str, model: &str, retries: u32) -> RemoteOptions {
    RemoteOptions {
        url: url.to_string(),
        model: model.to_string(),
        api_key: Some("backend-key".into()),
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            max_retries: retries,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            first_event_timeout: Duration::from_secs(10),
        },
        default_max_tokens: 32,
        default_temperature: 0.0,
    }
}

fn hello() -> GenerationRequest {
    GenerationRequest {
        messages: vec![
            ChatMessage::new(Role::System, "You are a helpful assistant. Answer briefly."),
            ChatMessage::new(Role::User, "What is the capital of France?"),
        ],
        max_tokens: Some(24),
        temperature: Some(0.0),
        seed: Some(3),
        stop: vec!["\n\n".into()],
    }
}

async fn wait_for(flag: &std::sync::atomic::AtomicBool) -> bool {
    for _ in 0..100 {
        if flag.load(Ordering::SeqCst) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn openai_streams_the_answer_with_usage_and_sends_the_request_fields() {
    let (url, fake) = fakes::start().await;
    let backend = OpenAiBackend::new(options(&url, "fake", 0)).unwrap();
    let (text, reason, usage) = collect(backend.generate(hello()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(text, "Hello from the fake");
    assert_eq!(reason, FinishReason::Stop);
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (7, 4));
    let body = fake.bodies.lock().unwrap()[0].clone();
    assert_eq!(body["model"], "fake");
    assert_eq!(body["stream"], true);
    assert_eq!(body["max_tokens"], 24);
    assert_eq!(body["seed"], 3);
    assert_eq!(body["stop"][0], "\n\n");
    assert_eq!(
        body["messages"][1]["content"],
        "What is the capital of France?"
    );
    backend.reachable().await.unwrap();
}

#[tokio::test]
async fn openai_retries_503_before_the_first_token() {
    let (url, fake) = fakes::start().await;
    fake.faults.fail_first.store(2, Ordering::SeqCst);
    let backend = OpenAiBackend::new(options(&url, "fake", 3)).unwrap();
    let (text, _, _) = collect(backend.generate(hello()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(text, "Hello from the fake");
    assert_eq!(fake.attempts(), 3);
}

#[tokio::test]
async fn openai_gives_up_after_the_retries() {
    let (url, fake) = fakes::start().await;
    fake.faults.fail_first.store(100, Ordering::SeqCst);
    let backend = OpenAiBackend::new(options(&url, "fake", 2)).unwrap();
    let err = backend.generate(hello()).await.err().expect("must fail");
    assert!(matches!(err, BackendError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(fake.attempts(), 3);
}

#[tokio::test]
async fn openai_does_not_retry_a_client_error() {
    let (url, fake) = fakes::start().await;
    fake.faults.status.store(400, Ordering::SeqCst);
    let backend = OpenAiBackend::new(options(&url, "fake", 3)).unwrap();
    let err = backend.generate(hello()).await.err().expect("must fail");
    assert!(matches!(err, BackendError::InvalidRequest(_)), "{err}");
    assert_eq!(fake.attempts(), 1);
}

#[tokio::test]
async fn openai_never_retries_after_tokens_were_sent() {
    let (url, fake) = fakes::start().await;
    fake.faults.cut_after.store(3, Ordering::SeqCst); // role chunk + two words
    fake.faults.pace_ms.store(20, Ordering::SeqCst); // so they leave before the cut
    let backend = OpenAiBackend::new(options(&url, "fake", 3)).unwrap();
    let mut stream = backend.generate(hello()).await.unwrap();
    let mut text = String::new();
    let mut failed = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(StreamEvent::Delta(d)) => text.push_str(&d),
            Ok(StreamEvent::Done { .. }) => panic!("a cut stream cannot complete"),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    assert_eq!(text, "Hello from");
    assert!(failed.is_some());
    assert_eq!(fake.attempts(), 1, "no retry once tokens were sent");
}

#[tokio::test]
async fn openai_first_token_timeout_is_retried_then_reported() {
    let (url, fake) = fakes::start().await;
    fake.faults.stall_ms.store(3000, Ordering::SeqCst);
    let mut opts = options(&url, "fake", 1);
    opts.retry.first_event_timeout = Duration::from_millis(200);
    let backend = OpenAiBackend::new(opts).unwrap();
    let err = backend
        .generate(hello())
        .await
        .err()
        .expect("must time out");
    assert!(matches!(err, BackendError::Timeout(_)), "{err}");
    assert_eq!(fake.attempts(), 2);
}

#[tokio::test]
async fn unreachable_backend_is_reported_not_ready() {
    // Bind then drop: nothing listens on this port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let backend = OpenAiBackend::new(options(&url, "fake", 1)).unwrap();
    assert!(backend.reachable().await.is_err());
    let err = backend.generate(hello()).await.err().expect("must fail");
    assert!(matches!(err, BackendError::Unavailable(_)), "{err}");
    let ollama = OllamaBackend::new(options(&url, "fake", 0)).unwrap();
    assert!(ollama.reachable().await.is_err());
}

#[tokio::test]
async fn ollama_reads_the_documented_ndjson() {
    let (url, fake) = fakes::start().await;
    let backend = OllamaBackend::new(options(&url, "llama3.2", 0)).unwrap();
    let (text, reason, usage) = collect(backend.generate(hello()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(text, "Hello from the fake");
    assert_eq!(reason, FinishReason::Stop);
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (26, 4));
    let body = fake.bodies.lock().unwrap()[0].clone();
    assert_eq!(body["model"], "llama3.2");
    assert_eq!(body["stream"], true);
    assert_eq!(body["options"]["num_predict"], 24);
    assert_eq!(body["options"]["seed"], 3);
    assert_eq!(
        body["messages"][0],
        serde_json::json!({"role": "system", "content": "You are a helpful assistant. Answer briefly."})
    );
    backend.reachable().await.unwrap();
}

#[tokio::test]
async fn ollama_retries_503_and_reports_a_cut_stream() {
    let (url, fake) = fakes::start().await;
    fake.faults.fail_first.store(1, Ordering::SeqCst);
    let backend = OllamaBackend::new(options(&url, "m", 2)).unwrap();
    collect(backend.generate(hello()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(fake.attempts(), 2);

    fake.faults.cut_after.store(2, Ordering::SeqCst);
    fake.faults.pace_ms.store(20, Ordering::SeqCst);
    let err = collect(backend.generate(hello()).await.unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Unavailable(_)), "{err}");
}

/// Through our HTTP server: a streaming client that disconnects makes us close the
/// backend connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_the_backend_request() {
    let (url, fake) = fakes::start().await;
    fake.faults.long.store(400, Ordering::SeqCst);
    fake.faults.pace_ms.store(20, Ordering::SeqCst);
    let backend = Arc::new(OpenAiBackend::new(options(&url, "fake", 0)).unwrap());
    let (service, registry) = common::service_with(backend, None, &[]);
    let ours = common::serve(service.router()).await;

    let response = reqwest::Client::new()
        .post(format!("{ours}/v1/chat/completions"))
        .json(
            &serde_json::json!({"stream": true, "messages": [{"role": "user", "content": "talk"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains(" w1") {
        seen.push_str(&String::from_utf8_lossy(
            &body.next().await.unwrap().unwrap(),
        ));
    }
    drop(body);
    assert!(
        wait_for(&fake.client_went_away).await,
        "the backend request was not cancelled"
    );
    assert!(fake.attempts() == 1);
    // The abandoned stream is counted as cancelled.
    let mut cancelled = false;
    for _ in 0..50 {
        let families = registry.gather();
        cancelled = families.iter().any(|f| {
            f.name() == "mooring_chat_requests_total"
                && f.get_metric()
                    .iter()
                    .any(|m| m.get_label().iter().any(|l| l.value() == "cancelled"))
        });
        if cancelled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cancelled);
}

/// The real model behind llama.cpp's llama-server, through the openai backend.
#[tokio::test]
async fn openai_backend_against_real_llama_server() {
    let url = common::require_env("MOORING_TEST_LLAMA_URL");
    let backend = OpenAiBackend::new(options(&url, "smollm2", 2)).unwrap();
    backend
        .reachable()
        .await
        .expect("llama-server answers /v1/models");
    let (text, reason, usage) = collect(backend.generate(hello()).await.unwrap())
        .await
        .unwrap();
    assert!(text.contains("Paris"), "answer: {text:?}");
    assert_eq!(reason, FinishReason::Stop, "answer: {text:?}");
    assert!(
        usage.prompt_tokens > 10 && usage.completion_tokens > 0,
        "{usage:?}"
    );
    // Greedy with a seed: the same answer twice.
    let (again, _, _) = collect(backend.generate(hello()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(text, again);
}
