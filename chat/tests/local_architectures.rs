//! The `local` backend loads and generates with each GGUF architecture it claims, on tiny
//! randomly-initialised models this test writes itself (tests/common/tiny_models.rs): no
//! download, no MOORING_TEST_GGUF, so it runs wherever `cargo test` does. Random weights
//! answer gibberish, so what is asserted is behaviour: the model loads, the family's chat
//! template renders into the tokens the model expects, generation ends with a final event
//! and its usage, a second turn carrying the first answer works, greedy decoding repeats.

mod common;

use std::path::Path;

use common::tiny_models::{
    Family, GEMMA, GEMMA2, GEMMA3, LLAMA3, MISTRAL_7B, MISTRAL_NEMO, PHI3, PHI4_MINI, QWEN2, QWEN3,
};
use futures::StreamExt;
use mooring_chat::backend::local::{EngineOptions, LocalBackend, LocalOptions};
use mooring_chat::backend::{
    Backend, ChatMessage, FinishReason, GenerationRequest, Role, StreamEvent, Usage,
};

const MAX_TOKENS: u32 = 8;

fn load(gguf: &Path) -> mooring_chat::backend::Result<LocalBackend> {
    LocalBackend::load_with(
        LocalOptions {
            gguf: gguf.to_path_buf(),
            model_name: "tiny".into(),
            default_max_tokens: MAX_TOKENS,
            default_temperature: 0.0,
            repeat_penalty: 1.0,
            queue: 4,
        },
        EngineOptions {
            threads: 1,
            parallel: 2,
            cache_tokens: 1024,
            flash_attention: false,
        },
    )
}

fn greedy(messages: Vec<ChatMessage>) -> GenerationRequest {
    GenerationRequest {
        messages,
        max_tokens: Some(MAX_TOKENS),
        temperature: Some(0.0),
        seed: Some(1),
        stop: vec![],
    }
}

/// The answer and its usage; the stream must end with `Done` and nothing after it.
async fn answer(backend: &LocalBackend, request: GenerationRequest) -> (String, Usage) {
    let mut stream = backend
        .generate(request)
        .await
        .expect("the request is accepted");
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event.expect("generation does not fail") {
            StreamEvent::Delta(delta) => text.push_str(&delta),
            StreamEvent::Done {
                finish_reason,
                usage,
            } => {
                assert!(stream.next().await.is_none(), "events after Done");
                // Stop: the model chose an end-of-turn token; else max_tokens ran out.
                if finish_reason == FinishReason::Length {
                    assert_eq!(usage.completion_tokens, MAX_TOKENS);
                }
                return (text, usage);
            }
        }
    }
    panic!("the stream ended without Done");
}

/// The prompt of `messages` as the family's template renders it (what the backend must
/// produce too), with `bos_token` empty since llama.cpp adds BOS itself.
fn render(family: &Family, messages: &[ChatMessage]) -> String {
    let mut env = minijinja::Environment::new();
    env.set_unknown_method_callback(python_methods);
    env.add_template("chat", family.template).unwrap();
    let messages: Vec<_> = messages
        .iter()
        .map(|m| minijinja::context! { role => m.role.as_str(), content => m.content.as_str() })
        .collect();
    env.get_template("chat")
        .unwrap()
        .render(minijinja::context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => "",
            eos_token => family.eos,
        })
        .unwrap()
}

/// The Python string methods the families' templates call (the backend has its own).
fn python_methods(
    _: &minijinja::State,
    value: &minijinja::Value,
    method: &str,
    args: &[minijinja::Value],
) -> Result<minijinja::Value, minijinja::Error> {
    let s = value.as_str().unwrap_or_default();
    let arg = args.first().and_then(|a| a.as_str()).unwrap_or_default();
    Ok(match method {
        "startswith" => s.starts_with(arg).into(),
        "split" => s
            .split(arg)
            .map(minijinja::Value::from)
            .collect::<Vec<_>>()
            .into(),
        "lstrip" => s.trim_start_matches(|c| arg.contains(c)).into(),
        _ => return Err(minijinja::ErrorKind::UnknownMethod.into()),
    })
}

fn assert_usage(family: &Family, prompt: &str, usage: Usage) {
    let expected = family.count_tokens(prompt);
    assert!(expected > 0);
    assert_eq!(
        usage.prompt_tokens as usize, expected,
        "{}: prompt tokens of {prompt:?}",
        family.name
    );
    assert!(
        (1..=MAX_TOKENS).contains(&usage.completion_tokens),
        "{}: {usage:?}",
        family.name
    );
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens
    );
}

async fn loads_and_chats(family: &Family) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join(format!("tiny-{}.gguf", family.architecture));
    family.gguf(7).write(&path);
    let backend = match load(&path) {
        Ok(backend) => backend,
        Err(e) => panic!("{}: the tiny model does not load: {e}", family.name),
    };

    let first = vec![ChatMessage::new(Role::User, "hi there")];
    assert_eq!(
        render(family, &first),
        family.first_prompt,
        "{}",
        family.name
    );
    let (reply, usage) = answer(&backend, greedy(first.clone())).await;
    assert_usage(family, family.first_prompt, usage);

    let (again, _) = answer(&backend, greedy(first.clone())).await;
    assert_eq!(reply, again, "{}: greedy decoding must repeat", family.name);

    let mut second = first;
    second.push(ChatMessage::new(Role::Assistant, reply));
    second.push(ChatMessage::new(Role::User, "and now?"));
    let (_, usage) = answer(&backend, greedy(second.clone())).await;
    assert_usage(family, &render(family, &second), usage);
}

#[tokio::test]
async fn llama3_loads_and_chats() {
    loads_and_chats(&LLAMA3).await;
}

#[tokio::test]
async fn mistral_7b_loads_and_chats() {
    loads_and_chats(&MISTRAL_7B).await;
}

#[tokio::test]
async fn mistral_nemo_loads_and_chats() {
    loads_and_chats(&MISTRAL_NEMO).await;
}

#[tokio::test]
async fn qwen2_loads_and_chats() {
    loads_and_chats(&QWEN2).await;
}

#[tokio::test]
async fn qwen3_loads_and_chats() {
    loads_and_chats(&QWEN3).await;
}

#[tokio::test]
async fn phi3_loads_and_chats() {
    loads_and_chats(&PHI3).await;
}

#[tokio::test]
async fn phi4_mini_loads_and_chats() {
    loads_and_chats(&PHI4_MINI).await;
}

#[tokio::test]
async fn gemma_loads_and_chats() {
    loads_and_chats(&GEMMA).await;
}

#[tokio::test]
async fn gemma2_loads_and_chats() {
    loads_and_chats(&GEMMA2).await;
}

#[tokio::test]
async fn gemma3_loads_and_chats() {
    loads_and_chats(&GEMMA3).await;
}

#[test]
fn an_unknown_architecture_fails_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-unknown.gguf");
    let mut gguf = LLAMA3.gguf(7);
    gguf.set("general.architecture", "quantum-llm");
    gguf.write(&path);
    let message = match load(&path) {
        Ok(_) => panic!("an unknown architecture must not load"),
        Err(e) => e.to_string(),
    };
    assert!(message.contains("`quantum-llm`"), "{message}");
    assert!(
        message.contains("qwen2"),
        "names what is supported: {message}"
    );
}

#[test]
fn a_file_missing_a_tensor_fails_at_start_with_llama_cpps_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-qwen2-no-query.gguf");
    QWEN2
        .gguf(7)
        .remove_tensor("blk.0.attn_q.weight")
        .write(&path);
    let message = match load(&path) {
        Ok(_) => panic!("a file without a required tensor must not load"),
        Err(e) => e.to_string(),
    };
    assert!(message.contains("`qwen2`"), "{message}");
    assert!(message.contains("blk.0.attn_q.weight"), "{message}");
}

/// A sliding-window model's cache gives the cells that left a sequence's window to other
/// sequences. A conversation whose cells were taken so is computed afresh when it goes on:
/// its answer is the one a fresh engine gives. (The scenario follows how llama.cpp places
/// tokens — from the first cell a removal freed, on into cells that left their window —
/// and was checked to fail without the backend's recomputation.)
#[tokio::test]
async fn a_sliding_window_conversation_goes_on_correctly_after_another_took_its_cells() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-gemma2-window.gguf");
    let mut gguf = GEMMA2.gguf_with(7, 0.01);
    // Both layers local, with a window of 16 tokens; no BOS and a template without a
    // common start, so that two conversations share no prefix and keep a slot each.
    gguf.set("gemma2.attention.sliding_window", 16u32)
        .set("gemma2.attention.sliding_window_pattern", 3u32)
        .set("tokenizer.ggml.add_bos_token", false)
        .set(
            "tokenizer.chat_template",
            "{% for m in messages %}{{ m['content'] + '\n' }}{% endfor %}",
        );
    gguf.write(&path);
    let backend = load(&path).unwrap();
    let user = |text: &str| ChatMessage::new(Role::User, text);

    // The cache holds `long`, then `short` right after it.
    let long = vec![user(&format!(
        "Tell me about {}",
        "the sea and the sky ".repeat(5)
    ))];
    answer(&backend, greedy(long.clone())).await;
    let short = vec![user(
        "hi there, how are you doing on this fine day, my friend?",
    )];
    answer(&backend, greedy(short)).await;
    // `long` is asked again with more at its end: its cells from there on are freed, and
    // the new tokens, more than those cells, go on into the cells of `short` that left its
    // window.
    let edited = format!(
        "{} and the birds that fly over the water at night, {}",
        long[0].content,
        "far from the land ".repeat(3)
    );
    answer(&backend, greedy(vec![user(&edited)])).await;

    // `short` edited near its end: it goes on from a point whose window's cells were taken.
    let short_next = vec![user(
        "hi there, how are you doing on this fine day, my dear old friend?",
    )];
    let (continued, _) = answer(&backend, greedy(short_next.clone())).await;
    drop(backend);
    let (fresh, _) = answer(&load(&path).unwrap(), greedy(short_next)).await;
    assert_eq!(continued, fresh);
}
