//! Helpers shared by the chat integration tests.
#![allow(dead_code)]

pub mod fakes;
pub mod store_contract;
pub mod tiny_gguf;
pub mod tiny_models;
pub mod tiny_vocab;

use std::path::PathBuf;

/// A variable the test environment must provide; panics with the way to get it.
pub fn require_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `make test` (scripts/test.sh sets up and exports it)")
    })
}

/// Whether an answer to "What is 2 + 2?" gives the number, in digits or in words
/// (SmolLM2-135M says "4" with plain attention, "Two and two is equal to four." with flash
/// attention: the sums round differently and its top tokens are close).
pub fn says_four(answer: &str) -> bool {
    answer.contains('4') || answer.to_lowercase().contains("four")
}

pub fn gguf() -> PathBuf {
    let path = PathBuf::from(require_env("MOORING_TEST_GGUF"));
    assert!(
        path.is_file(),
        "MOORING_TEST_GGUF={} is not a file: run `make test`",
        path.display()
    );
    path
}

use std::sync::{Arc, Mutex};

use clap::Parser;
use mooring_chat::auth::{Auth, AuthArgs};
use mooring_chat::backend::{
    Backend, BackendError, ChatMessage, EventStream, FinishReason, GenerationRequest, Role,
    StreamEvent, Usage,
};
use mooring_chat::guard::Guard;
use mooring_chat::memory::MemoryLimits;
use mooring_chat::memory::SessionStore;
use mooring_chat::memory::in_process::InProcessStore;
use mooring_chat::metrics::ChatMetrics;
use mooring_chat::{ChatArgs, ChatService};

/// Parses chat flags as the server would.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    chat: ChatArgs,
}

pub fn args(flags: &[&str]) -> ChatArgs {
    let mut argv = vec!["serve"];
    argv.extend_from_slice(flags);
    Cli::try_parse_from(argv).expect("valid flags").chat
}

/// A backend that answers "echo: <last user message> (turns: <user messages seen>)",
/// word by word, and records every request it gets. `busy` makes it refuse.
#[derive(Default)]
pub struct ScriptedBackend {
    pub received: Mutex<Vec<GenerationRequest>>,
    pub busy: std::sync::atomic::AtomicBool,
}

impl ScriptedBackend {
    pub fn answer(messages: &[ChatMessage]) -> String {
        let users: Vec<&str> = messages
            .iter()
            .filter(|m| m.role == Role::User)
            .map(|m| m.content.as_str())
            .collect();
        format!(
            "echo: {} (turns: {})",
            users.last().unwrap_or(&""),
            users.len()
        )
    }

    pub fn last_request(&self) -> GenerationRequest {
        self.received
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request reached the backend")
    }
}

#[async_trait::async_trait]
impl Backend for ScriptedBackend {
    async fn generate(&self, request: GenerationRequest) -> Result<EventStream, BackendError> {
        if self.busy.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(BackendError::Busy("scripted busy".into()));
        }
        self.received.lock().unwrap().push(request.clone());
        let answer = Self::answer(&request.messages);
        let words: Vec<String> = answer.split_inclusive(' ').map(str::to_string).collect();
        let limit = request.max_tokens.unwrap_or(u32::MAX) as usize;
        let finish_reason = if words.len() > limit {
            FinishReason::Length
        } else {
            FinishReason::Stop
        };
        let taken: Vec<String> = words.into_iter().take(limit).collect();
        let usage = Usage::new(request.messages.len() as u32 * 10, taken.len() as u32);
        let mut events: Vec<Result<StreamEvent, BackendError>> = taken
            .into_iter()
            .map(|w| Ok(StreamEvent::Delta(w)))
            .collect();
        events.push(Ok(StreamEvent::Done {
            finish_reason,
            usage,
        }));
        Ok(Box::pin(futures::stream::iter(events)))
    }

    async fn reachable(&self) -> Result<(), BackendError> {
        Ok(())
    }

    fn model_name(&self) -> &str {
        "scripted"
    }

    fn kind(&self) -> &'static str {
        "scripted"
    }
}

/// A chat service over `backend` with in-process memory; `flags` are chat flags.
pub fn service_with(
    backend: Arc<dyn Backend>,
    store: Option<Arc<dyn SessionStore>>,
    flags: &[&str],
) -> (ChatService, prometheus::Registry) {
    let args = args(flags);
    let registry = prometheus::Registry::new();
    let metrics = ChatMetrics::register(&registry).unwrap();
    let store = store.unwrap_or_else(|| {
        Arc::new(InProcessStore::new(
            std::num::NonZeroUsize::new(100).unwrap(),
            MemoryLimits {
                max_turns: args.chat_memory_max_turns,
                max_chars: args.chat_memory_max_chars,
                ttl: std::time::Duration::from_secs(args.chat_memory_ttl_secs),
            },
        ))
    });
    let guard = Arc::new(Guard::from_args(&args.guard).unwrap());
    let auth = Auth::new(&args.auth).unwrap();
    let _: &AuthArgs = &args.auth;
    let caches = mooring_chat::cache::Caches::from_args(&args.cache).unwrap();
    (
        ChatService::from_parts(&args, backend, store, metrics, guard, auth, caches),
        registry,
    )
}

/// Serves `router` on 127.0.0.1:0; returns the base URL.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}
