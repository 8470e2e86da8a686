//! The `local` backend: a GGUF model (e.g. SmolLM2-135M-Instruct Q4_1) run in-process on
//! the CPU with candle's quantized llama, so chat works with no other server.
//!
//! The model lives on one dedicated OS thread: generation is CPU-bound and must not block
//! tokio's workers. Requests reach it through a bounded queue; a full queue is refused at
//! once ("busy", HTTP 429) instead of growing without limit. Tokens go back through a
//! channel per request; when the caller drops its stream the next send fails and the
//! thread moves on to the next request, so a disconnected client costs at most one token.

mod detokenize;
mod template;
mod tokenizer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::{MAX_SEQ_LEN, ModelWeights};
use tokenizers::Tokenizer;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::stop::{StopMatcher, StopOutcome};
use super::{
    Backend, BackendError, EventStream, FinishReason, GenerationRequest, Result, StreamEvent, Usage,
};
use detokenize::IncrementalDecoder;
use template::ChatTemplate;

/// Tokens whose repetition is penalised (a 135M model loops easily under greedy decoding).
const REPEAT_LAST_N: usize = 64;

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
    /// Requests waiting for the model thread beyond the running one.
    pub queue: usize,
}

struct Job {
    prompt: Vec<u32>,
    max_tokens: usize,
    temperature: f64,
    seed: u64,
    stop: Vec<String>,
    events: mpsc::Sender<Result<StreamEvent>>,
}

/// Handle to the model thread.
pub struct LocalBackend {
    jobs: SyncSender<Job>,
    alive: Arc<AtomicBool>,
    template: ChatTemplate,
    tokenizer: Tokenizer,
    context_len: usize,
    options: LocalOptions,
}

impl LocalBackend {
    /// Loads the model (blocking: call it from `spawn_blocking`) and starts its thread.
    pub fn load(options: LocalOptions) -> Result<Self> {
        let path = &options.gguf;
        let mut file = std::fs::File::open(path)
            .map_err(|e| BackendError::Load(format!("--chat-gguf {}: {e}", path.display())))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| load_error(path, format!("not a GGUF file: {e}")))?;
        let tok = tokenizer::from_gguf(&content).map_err(|e| load_error(path, e.to_string()))?;
        let template =
            ChatTemplate::new(tok.chat_template).map_err(|e| load_error(path, e.to_string()))?;
        let context_len = content
            .metadata
            .get("llama.context_length")
            .and_then(|v| v.to_u32().ok())
            .map_or(MAX_SEQ_LEN, |n| (n as usize).min(MAX_SEQ_LEN));
        let model = ModelWeights::from_gguf(content, &mut file, &Device::Cpu)
            .map_err(|e| load_error(path, e.to_string()))?;

        let (jobs, queue) = std::sync::mpsc::sync_channel(options.queue);
        let alive = Arc::new(AtomicBool::new(true));
        let mut worker = Worker {
            model,
            tokenizer: tok.tokenizer.clone(),
            end_of_turn: tok.end_of_turn,
            repeat_penalty: options.repeat_penalty,
        };
        let thread_alive = alive.clone();
        // The matrix products run on candle's own thread pool, sized by CANDLE_NUM_THREADS
        // (else RAYON_NUM_THREADS, else the physical cores). Its workers spin while they wait,
        // so on a CPU-limited or shared node set it to the CPUs really available: measured
        // here, 2.8 tokens/s with 2 threads on 2 busy cores against 18 with 1.
        std::thread::Builder::new()
            .name("mooring-llm".into())
            .spawn(move || serve_jobs(queue, &thread_alive, |job| worker.generate(job)))
            .map_err(|e| BackendError::Load(format!("cannot start the model thread: {e}")))?;
        tracing::info!(gguf = %path.display(), context_len, "local model loaded");
        Ok(LocalBackend {
            jobs,
            alive,
            template,
            tokenizer: tok.tokenizer,
            context_len,
            options,
        })
    }
}

fn load_error(path: &Path, message: String) -> BackendError {
    BackendError::Load(format!("--chat-gguf {}: {message}", path.display()))
}

#[async_trait::async_trait]
impl Backend for LocalBackend {
    async fn generate(&self, request: GenerationRequest) -> Result<EventStream> {
        let prompt_text = self
            .template
            .render(&request.messages)
            .map_err(|e| BackendError::InvalidRequest(e.to_string()))?;
        let prompt = self
            .tokenizer
            .encode(prompt_text, false)
            .map_err(|e| BackendError::InvalidRequest(format!("messages: cannot tokenize: {e}")))?
            .get_ids()
            .to_vec();
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
        let (events, receiver) = mpsc::channel(64);
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
            Ok(()) => Ok(Box::pin(ReceiverStream::new(receiver))),
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

/// Owned by the model thread.
struct Worker {
    model: ModelWeights,
    tokenizer: Tokenizer,
    end_of_turn: Vec<u32>,
    repeat_penalty: f32,
}

/// Clears the readiness flag when the model thread ends, however it ends: a thread that
/// unwound must not leave the backend "ready" while every request fails.
struct AliveWhileHeld<'a>(&'a AtomicBool);

impl Drop for AliveWhileHeld<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// The model thread's loop: runs each queued job with `generate` until every
/// [`LocalBackend`] handle is dropped. A job whose generation panics gets an error and the
/// loop goes on with the next: each generation starts a fresh KV cache (index 0), so
/// nothing of the failed one is reused.
fn serve_jobs(
    queue: Receiver<Job>,
    alive: &AtomicBool,
    mut generate: impl FnMut(Job) -> candle_core::Result<()>,
) {
    let _alive = AliveWhileHeld(alive);
    while let Ok(job) = queue.recv() {
        if job.events.is_closed() {
            continue; // the caller went away while queued
        }
        let events = job.events.clone();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| generate(job)));
        let error = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %what, "the local model panicked during a generation");
                format!("the model failed during generation: {what}")
            }
        };
        let _ = events.blocking_send(Err(BackendError::Model(error)));
    }
}

impl Worker {
    /// Runs one generation; returns early (Ok) when the caller dropped its stream.
    fn generate(&mut self, job: Job) -> candle_core::Result<()> {
        let sampling = if job.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            Sampling::All {
                temperature: job.temperature,
            }
        };
        let mut sampler = LogitsProcessor::from_sampling(job.seed, sampling);
        let mut stops = StopMatcher::new(&job.stop);
        let mut generated: Vec<u32> = Vec::new();
        let mut detokenizer = IncrementalDecoder::default();
        let input = Tensor::new(job.prompt.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
        // index_pos 0 starts a fresh KV cache.
        let mut logits = self.model.forward(&input, 0)?;
        let finish_reason = loop {
            let next = self.sample(&mut sampler, &logits, &generated)?;
            if self.end_of_turn.contains(&next) {
                break FinishReason::Stop;
            }
            generated.push(next);
            let fresh = detokenizer
                .next(&generated, |ids| self.tokenizer.decode(ids, true))
                .map_err(|e| candle_core::Error::Msg(format!("decode: {e}")))?;
            // Empty while a token ends inside a UTF-8 character: the rest comes next.
            if !fresh.is_empty() {
                match stops.push(&fresh) {
                    StopOutcome::Continue(ready) => {
                        if !self.send(&job.events, ready) {
                            return Ok(());
                        }
                    }
                    StopOutcome::Stopped(ready) => {
                        if !self.send(&job.events, ready) {
                            return Ok(());
                        }
                        break FinishReason::Stop;
                    }
                }
            }
            if generated.len() >= job.max_tokens {
                break FinishReason::Length;
            }
            let input = Tensor::new(&[next], &Device::Cpu)?.unsqueeze(0)?;
            logits = self
                .model
                .forward(&input, job.prompt.len() + generated.len() - 1)?;
        };
        // Text held back as a possible stop-string start is part of the answer after all
        // (empty when a stop string ended generation).
        if !self.send(&job.events, stops.finish()) {
            return Ok(());
        }
        let usage = Usage::new(job.prompt.len() as u32, generated.len() as u32);
        let _ = job.events.blocking_send(Ok(StreamEvent::Done {
            finish_reason,
            usage,
        }));
        Ok(())
    }

    fn sample(
        &self,
        sampler: &mut LogitsProcessor,
        logits: &Tensor,
        generated: &[u32],
    ) -> candle_core::Result<u32> {
        let logits = logits.squeeze(0)?.to_dtype(candle_core::DType::F32)?;
        let logits = if self.repeat_penalty == 1.0 || generated.is_empty() {
            logits
        } else {
            let start = generated.len().saturating_sub(REPEAT_LAST_N);
            candle_transformers::utils::apply_repeat_penalty(
                &logits,
                self.repeat_penalty,
                &generated[start..],
            )?
        };
        sampler.sample(&logits)
    }

    /// Sends a non-empty delta; false when the caller has gone.
    fn send(&self, events: &mpsc::Sender<Result<StreamEvent>>, text: String) -> bool {
        text.is_empty() || events.blocking_send(Ok(StreamEvent::Delta(text))).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> (Job, mpsc::Receiver<Result<StreamEvent>>) {
        let (events, receiver) = mpsc::channel(4);
        let job = Job {
            prompt: vec![1],
            max_tokens: 1,
            temperature: 0.0,
            seed: 0,
            stop: Vec::new(),
            events,
        };
        (job, receiver)
    }

    #[test]
    fn a_panicking_generation_fails_its_request_and_the_model_thread_serves_the_next() {
        let (jobs, queue) = std::sync::mpsc::sync_channel(2);
        let alive = Arc::new(AtomicBool::new(true));
        let thread_alive = alive.clone();
        let mut calls = 0;
        let thread = std::thread::spawn(move || {
            serve_jobs(queue, &thread_alive, |job| {
                calls += 1;
                if calls == 1 {
                    panic!("index out of bounds");
                }
                let _ = job
                    .events
                    .blocking_send(Ok(StreamEvent::Delta("hi".into())));
                Ok(())
            })
        });
        let (first, mut first_events) = job();
        jobs.send(first).unwrap();
        match first_events.blocking_recv() {
            Some(Err(BackendError::Model(m))) => assert!(m.contains("index out of bounds"), "{m}"),
            other => panic!("expected a model error, got {other:?}"),
        }
        let (second, mut second_events) = job();
        jobs.send(second).unwrap();
        assert!(matches!(
            second_events.blocking_recv(),
            Some(Ok(StreamEvent::Delta(t))) if t == "hi"
        ));
        assert!(
            alive.load(Ordering::SeqCst),
            "the model thread must still serve"
        );
        drop(jobs);
        thread.join().unwrap();
        assert!(
            !alive.load(Ordering::SeqCst),
            "a stopped model thread must not look ready"
        );
    }
}
