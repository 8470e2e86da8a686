//! The `local` backend: a GGUF chat model (e.g. SmolLM2-135M-Instruct Q4_1) run in-process
//! on the CPU with llama.cpp (the `llama-cpp-2` binding), so chat works with no other server.
//!
//! The model lives on one dedicated OS thread (generation is CPU-bound and must not block
//! tokio's workers), which runs several generations at once by continuous batching and keeps
//! each finished conversation's KV cache for its next turn ([`scheduler`], [`slots`]).
//! Requests reach it through a bounded queue; a full queue is refused at once ("busy",
//! HTTP 429) instead of growing without limit. Tokens go back through a channel per
//! request; a caller that drops its stream frees its slot before the next step.

mod llama_log;
mod model;
mod scheduler;
mod slots;
mod template;

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::model::LlamaModel;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::{Backend, BackendError, EventStream, GenerationRequest, Result};
use scheduler::{Job, Scheduler};
use template::ChatTemplate;

/// Prompt tokens computed per step (llama.cpp's default batch).
const BATCH_TOKENS: u32 = 512;

/// llama.cpp's `LLAMA_FLASH_ATTN_TYPE_DISABLED` and `_ENABLED` (the binding does not
/// re-export them).
const FLASH_ATTENTION_DISABLED: i32 = 0;
const FLASH_ATTENTION_ENABLED: i32 = 1;

/// Settings of the local backend.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub gguf: PathBuf,
    /// Name reported by `/v1/models` and in responses.
    pub model_name: String,
    pub default_max_tokens: u32,
    pub default_temperature: f64,
    /// 1.0 disables it.
    pub repeat_penalty: f32,
    /// Requests waiting for a free slot beyond the running ones.
    pub queue: usize,
}

/// How the engine uses the machine: threads, concurrent generations, cache memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// CPU threads of the matrix products.
    pub threads: usize,
    /// Generations decoded together (continuous batching); also how many conversations
    /// keep their KV cache for their next turn.
    pub parallel: usize,
    /// Size of the KV cache in tokens, shared by all slots (the memory bound); a prompt
    /// plus its `max_tokens` must fit in it and in the model's trained context.
    pub cache_tokens: usize,
    /// llama.cpp's fused attention kernel (the default): faster, and it skips the cache cells
    /// of other conversations; plain attention rounds differently (`--chat-flash-attention`).
    pub flash_attention: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            threads: default_threads(),
            parallel: 4,
            cache_tokens: 8192,
            flash_attention: true,
        }
    }
}

/// Threads when none are configured: `CANDLE_NUM_THREADS` (which also sizes the embedding
/// model's pool, and which the operator sets from the container's CPU limit), else the CPUs
/// this process may use — `available_parallelism` reads the cgroup quota (`cpu.max`) and
/// the affinity mask, so a container limited to 2 CPUs on a 64-core node gets 2. llama.cpp's
/// threads spin while they wait: more threads than CPUs makes generation several times
/// slower.
pub fn default_threads() -> usize {
    std::env::var("CANDLE_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Handle to the model thread.
pub struct LocalBackend {
    jobs: SyncSender<Job>,
    alive: Arc<AtomicBool>,
    /// Asks the model thread to end at its next step (set when the backend is dropped).
    stop: Arc<AtomicBool>,
    /// Joined when the backend is dropped: no llama.cpp work outlives it (a process that
    /// exits while the thread still decodes crashes in llama.cpp's teardown).
    thread: Option<std::thread::JoinHandle<()>>,
    template: ChatTemplate,
    model: Arc<LlamaModel>,
    context_len: usize,
    options: LocalOptions,
}

impl LocalBackend {
    /// Loads the model with [`EngineOptions::default`] (blocking: call it from `spawn_blocking`).
    pub fn load(options: LocalOptions) -> Result<Self> {
        Self::load_with(options, EngineOptions::default())
    }

    /// Loads the model (blocking: call it from `spawn_blocking`) and starts its thread.
    pub fn load_with(options: LocalOptions, engine: EngineOptions) -> Result<Self> {
        let loaded = model::load(&options.gguf)?;
        let template = ChatTemplate::new(loaded.chat_template, loaded.eos_token).map_err(|e| {
            BackendError::Load(format!("--chat-gguf {}: {e}", options.gguf.display()))
        })?;
        let sliding_window = loaded.sliding_window;
        let model = Arc::new(loaded.model);
        let next_turn = template
            .next_turn_opening()
            .map(|text| model.vocab().tokenize(text.as_bytes(), false, true))
            .unwrap_or_default();
        let context_len = loaded.context_len.min(engine.cache_tokens);
        let parallel = engine.parallel.max(1);
        let threads = engine.threads.max(1) as i32;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(engine.cache_tokens.max(1) as u32))
            .with_n_batch(BATCH_TOKENS)
            .with_n_ubatch(BATCH_TOKENS)
            .with_n_seq_max(parallel as u32)
            // One cache for all slots: a long conversation may use what short ones leave.
            .with_kv_unified(true)
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            // The fused kernel skips other sequences' cells, which plain attention multiplies
            // by a mask: with several conversations kept, plain attention per token grows
            // with the whole occupied cache.
            .with_flash_attention_policy(if engine.flash_attention {
                FLASH_ATTENTION_ENABLED
            } else {
                FLASH_ATTENTION_DISABLED
            });

        let (jobs, queue) = std::sync::mpsc::sync_channel(options.queue);
        let (started, start_result) = std::sync::mpsc::sync_channel(1);
        let alive = Arc::new(AtomicBool::new(true));
        let thread_alive = alive.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread_model = model.clone();
        let repeat_penalty = options.repeat_penalty;
        let thread = std::thread::Builder::new()
            .name("mooring-llm".into())
            .spawn(move || {
                let _alive = AliveWhileHeld(&thread_alive);
                // The context borrows the model, so both live on this thread's stack.
                let context = model::llama_backend().and_then(|backend| {
                    thread_model.new_context(backend, params).map_err(|e| {
                        BackendError::Load(format!(
                            "cannot create a llama.cpp context of {} tokens: {e}",
                            engine.cache_tokens
                        ))
                    })
                });
                match context {
                    Ok(ctx) => {
                        let _ = started.send(Ok(()));
                        Scheduler::new(
                            &thread_model,
                            ctx,
                            parallel,
                            BATCH_TOKENS as usize,
                            repeat_penalty,
                            next_turn,
                            sliding_window,
                        )
                        .run(queue, &thread_stop);
                    }
                    Err(e) => {
                        let _ = started.send(Err(e));
                    }
                }
            })
            .map_err(|e| BackendError::Load(format!("cannot start the model thread: {e}")))?;
        start_result
            .recv()
            .map_err(|_| BackendError::Load("the model thread ended while starting".into()))??;
        tracing::info!(
            gguf = %options.gguf.display(),
            context_len,
            threads,
            parallel,
            cache_tokens = engine.cache_tokens,
            flash_attention = engine.flash_attention,
            "local model loaded"
        );
        Ok(LocalBackend {
            jobs,
            alive,
            stop,
            thread: Some(thread),
            template,
            model,
            context_len,
            options,
        })
    }
}

#[async_trait::async_trait]
impl Backend for LocalBackend {
    async fn generate(&self, request: GenerationRequest) -> Result<EventStream> {
        let prompt_text = self
            .template
            .render(&request.messages)
            .map_err(|e| BackendError::InvalidRequest(e.to_string()))?;
        // `add_special`: BOS when the GGUF asks for it; `parse_special`: `<|im_start|>` in the
        // rendered template is one control token.
        let prompt = self
            .model
            .vocab()
            .tokenize(prompt_text.as_bytes(), true, true);
        let max_tokens = request
            .max_tokens
            .unwrap_or(self.options.default_max_tokens) as usize;
        if prompt.len() + max_tokens > self.context_len {
            return Err(BackendError::InvalidRequest(format!(
                "messages: the prompt has {} tokens and max_tokens is {max_tokens}; together they exceed the model's context of {} tokens",
                prompt.len(),
                self.context_len
            )));
        }
        let (events, receiver) = mpsc::unbounded_channel();
        let job = Job {
            prompt,
            max_tokens,
            temperature: request
                .temperature
                .unwrap_or(self.options.default_temperature),
            seed: request.seed.unwrap_or_else(random_seed),
            stop: request.stop,
            events,
        };
        match self.jobs.try_send(job) {
            Ok(()) => Ok(Box::pin(UnboundedReceiverStream::new(receiver))),
            Err(TrySendError::Full(_)) => Err(BackendError::Busy(format!(
                "{} requests are already waiting for the local model",
                self.options.queue
            ))),
            Err(TrySendError::Disconnected(_)) => Err(BackendError::Unavailable(
                "the local model thread has stopped".into(),
            )),
        }
    }

    async fn reachable(&self) -> Result<()> {
        if self.alive.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(BackendError::Unavailable(
                "the local model thread has stopped".into(),
            ))
        }
    }

    fn model_name(&self) -> &str {
        &self.options.model_name
    }

    fn kind(&self) -> &'static str {
        "local"
    }
}

fn random_seed() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Drop for LocalBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Closing the queue wakes a model thread that waits for work.
        let (closed, _) = std::sync::mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.jobs, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Clears the readiness flag when the model thread ends, however it ends: a thread that
/// unwound must not leave the backend "ready" while every request fails.
struct AliveWhileHeld<'a>(&'a AtomicBool);

impl Drop for AliveWhileHeld<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}
