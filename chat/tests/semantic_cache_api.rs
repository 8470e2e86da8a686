//! The semantic cache in the request path, with the real all-MiniLM-L6-v2
//! (MOORING_TEST_MINILM_DIR): a paraphrase is answered from the cache even behind a long
//! system prompt, an unrelated question is not.

mod common;

use std::sync::Arc;

use common::ScriptedBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paraphrase_hits_and_unrelated_question_misses() {
    let dir = common::require_env("MOORING_TEST_MINILM_DIR");
    let backend = Arc::new(ScriptedBackend::default());
    let (service, registry) = common::service_with(
        backend.clone(),
        None,
        &[
            "--cache-semantic",
            "on",
            "--embedding-model-dir",
            &dir,
            "--chat-system-prompt",
            "You are the friendly assistant of an online bookshop. Be concise, polite and accurate, \
             and never invent facts about orders, prices or delivery times.",
        ],
    );
    let base = common::serve(service.router()).await;
    let client = reqwest::Client::new();
    let generate = |prompt: &'static str| {
        let client = client.clone();
        let url = format!("{base}/api/v1/generate");
        async move {
            let reply: serde_json::Value = client
                .post(url)
                .json(&serde_json::json!({"prompt": prompt}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            reply["response"].as_str().unwrap().to_string()
        }
    };
    let first = generate("What is AI?").await;
    let paraphrase = generate("What is artificial intelligence?").await;
    assert_eq!(
        paraphrase, first,
        "the paraphrase is answered from the cache"
    );
    assert_eq!(backend.received.lock().unwrap().len(), 1);
    let unrelated = generate("How do I bake sourdough bread?").await;
    assert_ne!(unrelated, first);
    assert_eq!(backend.received.lock().unwrap().len(), 2);
    let hits = registry
        .gather()
        .into_iter()
        .find(|f| f.name() == "mooring_chat_cache_hits_total")
        .map(|f| f.get_metric()[0].get_counter().get_value());
    assert_eq!(hits, Some(1.0));
}
