//! The `local` backend against the real SmolLM2-135M-Instruct GGUF (MOORING_TEST_GGUF).

mod common;

use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use mooring_chat::backend::local::{LocalBackend, LocalOptions};
use mooring_chat::backend::{
    Backend, ChatMessage, FinishReason, GenerationRequest, Role, StreamEvent, collect,
};

/// One model for all tests of this binary: loading it costs a second.
fn backend() -> Arc<LocalBackend> {
    static BACKEND: OnceLock<Arc<LocalBackend>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            Arc::new(
                LocalBackend::load(LocalOptions {
                    gguf: common::gguf(),
                    model_name: "smollm2".into(),
                    default_max_tokens: 64,
                    default_temperature: 0.0,
                    repeat_penalty: 1.1,
                    queue: 8,
                })
                .expect("the GGUF loads"),
            )
        })
        .clone()
}

fn ask(question: &str, max_tokens: u32) -> GenerationRequest {
    GenerationRequest {
        messages: vec![
            ChatMessage::new(Role::System, "You are a helpful assistant. Answer briefly."),
            ChatMessage::new(Role::User, question),
        ],
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
        seed: Some(1),
        stop: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_a_factual_question_correctly_and_deterministically() {
    let b = backend();
    let (first, reason, usage) = collect(
        b.generate(ask("What is the capital of France?", 40))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(first.contains("Paris"), "answer: {first:?}");
    assert_eq!(reason, FinishReason::Stop, "answer: {first:?}");
    assert!(
        usage.prompt_tokens > 10 && usage.completion_tokens > 0,
        "{usage:?}"
    );
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens
    );
    let (second, _, _) = collect(
        b.generate(ask("What is the capital of France?", 40))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(first, second, "greedy decoding must be deterministic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_ends_generation_with_length() {
    let (text, reason, usage) = collect(
        backend()
            .generate(ask("Write a long story about a dragon.", 5))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(reason, FinishReason::Length);
    assert_eq!(usage.completion_tokens, 5);
    assert!(!text.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_string_ends_generation_and_is_not_returned() {
    let b = backend();
    let (full, _, _) = collect(
        b.generate(ask("Count from 1 to 10, separated by commas.", 40))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(full.contains('4'), "answer: {full:?}");
    let mut request = ask("Count from 1 to 10, separated by commas.", 40);
    request.stop = vec!["4".into()];
    let (cut, reason, _) = collect(b.generate(request).await.unwrap()).await.unwrap();
    assert_eq!(reason, FinishReason::Stop);
    assert!(!cut.contains('4'), "stopped answer: {cut:?}");
    assert!(
        full.starts_with(&cut),
        "{cut:?} is not a prefix of {full:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_with_a_seed_is_reproducible_and_streams_tokens() {
    let b = backend();
    let sampled = |seed| {
        let mut r = ask("Tell me something about cats.", 24);
        r.temperature = Some(1.0);
        r.seed = Some(seed);
        r
    };
    let mut stream = b.generate(sampled(7)).await.unwrap();
    let mut deltas = 0;
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            StreamEvent::Delta(d) => {
                deltas += 1;
                text.push_str(&d);
            }
            StreamEvent::Done { .. } => break,
        }
    }
    assert!(deltas > 3, "tokens arrive one by one, got {deltas} deltas");
    let (again, _, _) = collect(b.generate(sampled(7)).await.unwrap())
        .await
        .unwrap();
    assert_eq!(text, again, "same seed, same sample");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_frees_the_model_for_the_next_request() {
    let b = backend();
    let mut stream = b
        .generate(ask("Write a very long essay about the sea.", 200))
        .await
        .unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert!(matches!(first, StreamEvent::Delta(_)));
    drop(stream);
    // The abandoned generation stops at its next token, so this one is answered well
    // before 200 tokens of the essay could have been generated.
    let (text, _, _) = collect(b.generate(ask("What is 2 + 2?", 16)).await.unwrap())
        .await
        .unwrap();
    assert!(common::says_four(&text), "answer: {text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_longer_than_the_context_is_refused_naming_the_field() {
    let long = "word ".repeat(9000);
    let err = match backend().generate(ask(&long, 16)).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("an over-long prompt must be refused"),
    };
    assert!(err.contains("messages") && err.contains("context"), "{err}");
}
