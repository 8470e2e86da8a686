//! The local backend's engine against the real SmolLM2-135M-Instruct GGUF (MOORING_TEST_GGUF):
//! concurrent generations, the queue bound, a disconnecting client, a session's next turn
//! over its cached prefix. Behaviour only; bench/chat-engine/run.sh measures speed.

mod common;

use futures::StreamExt;
use mooring_chat::backend::local::{EngineOptions, LocalBackend, LocalOptions};
use mooring_chat::backend::{
    Backend, BackendError, ChatMessage, FinishReason, GenerationRequest, Role, StreamEvent, collect,
};

fn backend(parallel: usize, queue: usize) -> LocalBackend {
    LocalBackend::load_with(
        LocalOptions {
            gguf: common::gguf(),
            model_name: "smollm2".into(),
            default_max_tokens: 64,
            default_temperature: 0.0,
            repeat_penalty: 1.1,
            queue,
        },
        EngineOptions {
            parallel,
            ..EngineOptions::default()
        },
    )
    .expect("the GGUF loads")
}

fn ask(messages: Vec<ChatMessage>, max_tokens: u32) -> GenerationRequest {
    GenerationRequest {
        messages,
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
        seed: Some(1),
        stop: vec![],
    }
}

fn question(text: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new(Role::System, "You are a helpful assistant. Answer briefly."),
        ChatMessage::new(Role::User, text),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_sessions_generate_at_once_and_each_gets_its_own_answer() {
    let b = backend(4, 4);
    let questions = [
        "What is the capital of France?",
        "What is 2 + 2?",
        "Name a colour of the sky.",
        "Write a long story about a dragon.",
    ];
    // All four start before any is read: they run in the same batches.
    let mut streams = Vec::new();
    for q in questions {
        streams.push(b.generate(ask(question(q), 24)).await.unwrap());
    }
    let answers = futures::future::join_all(streams.into_iter().map(collect)).await;
    let answers: Vec<_> = answers.into_iter().map(Result::unwrap).collect();
    assert!(answers[0].0.contains("Paris"), "{:?}", answers[0]);
    assert_eq!(answers[3].1, FinishReason::Length);
    assert_eq!(answers[3].2.completion_tokens, 24);
    for (text, _, usage) in &answers {
        assert!(
            !text.is_empty() && usage.prompt_tokens > 10,
            "{text:?} {usage:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_running_and_queued_requests_the_backend_is_busy() {
    let b = backend(1, 1);
    let long = || ask(question("Write a very long essay about the sea."), 200);
    let mut running = b.generate(long()).await.unwrap();
    // Wait until the first one runs, so the next one is the one waiting in the queue.
    assert!(matches!(
        running.next().await,
        Some(Ok(StreamEvent::Delta(_)))
    ));
    let _queued = b.generate(long()).await.unwrap();
    match b.generate(long()).await {
        Err(BackendError::Busy(m)) => assert!(m.contains("waiting"), "{m}"),
        Err(e) => panic!("expected busy, got {e}"),
        Ok(_) => panic!("expected busy, got a stream"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_frees_its_slot_for_the_next_request() {
    let b = backend(1, 1);
    let mut essay = b
        .generate(ask(
            question("Write a very long essay about the sea."),
            2000,
        ))
        .await
        .unwrap();
    assert!(matches!(
        essay.next().await,
        Some(Ok(StreamEvent::Delta(_)))
    ));
    drop(essay);
    // With one slot, this answer can only come once the essay's slot was given back.
    let (text, reason, _) = collect(
        b.generate(ask(question("What is 2 + 2?"), 16))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(common::says_four(&text), "{text:?}");
    assert_eq!(reason, FinishReason::Stop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_turn_over_its_cached_prefix_counts_its_whole_prompt() {
    let b = backend(2, 2);
    let mut messages = question("What is the capital of France?");
    let (first, _, _) = collect(b.generate(ask(messages.clone(), 24)).await.unwrap())
        .await
        .unwrap();
    messages.push(ChatMessage::new(Role::Assistant, first));
    messages.push(ChatMessage::new(Role::User, "And of Italy?"));
    // Turn 2 reuses turn 1's slot; the same prompt on a fresh engine computes it all.
    let (warm, _, warm_usage) = collect(b.generate(ask(messages.clone(), 16)).await.unwrap())
        .await
        .unwrap();
    let fresh = backend(2, 2);
    let (cold, _, cold_usage) = collect(fresh.generate(ask(messages, 16)).await.unwrap())
        .await
        .unwrap();
    // The reused prefix was computed in another batch shape, so the answers may differ in
    // rounding; both answer the same prompt, counted the same.
    assert!(!warm.is_empty() && !cold.is_empty(), "{warm:?} {cold:?}");
    assert_eq!(warm_usage.prompt_tokens, cold_usage.prompt_tokens);
    assert!(warm_usage.prompt_tokens > 40, "{warm_usage:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_sharing_a_system_prompt_share_it_and_keep_their_own_turns() {
    let b = backend(2, 2);
    let mut a = question("What is the capital of France?");
    let (a1, _, a1_usage) = collect(b.generate(ask(a.clone(), 24)).await.unwrap())
        .await
        .unwrap();
    assert_eq!(a1_usage.cached_prompt_tokens(), 0, "{a1_usage:?}");
    // Another session with the same system prompt: it takes the free slot, with the system
    // prompt's cells shared from the first session's, which it leaves alone.
    let (_, _, b1_usage) = collect(
        b.generate(ask(question("Name a colour of the sky."), 8))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let shared = b1_usage.cached_prompt_tokens();
    assert!(
        shared > 5 && shared < b1_usage.prompt_tokens,
        "{b1_usage:?}"
    );
    a.push(ChatMessage::new(Role::Assistant, a1));
    a.push(ChatMessage::new(Role::User, "And of Italy?"));
    // The user reads the answer: the idle engine computes the answer's last token and the
    // template's hand-over to the user ahead, so all of turn 1 is in the cache.
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let (_, _, a2_usage) = collect(b.generate(ask(a, 8)).await.unwrap()).await.unwrap();
    let turn1 = a1_usage.prompt_tokens + a1_usage.completion_tokens;
    assert!(
        a2_usage.cached_prompt_tokens() > turn1
            && a2_usage.cached_prompt_tokens() < a2_usage.prompt_tokens,
        "turn 1 had {turn1} tokens: {a2_usage:?}"
    );
}
