//! Model execution behind a trait, on dedicated worker threads.
//!
//! Requests reach a model's workers through a bounded queue with a one-shot reply each; a
//! full queue is an immediate `Overloaded` (HTTP 429 / gRPC `RESOURCE_EXHAUSTED`) rather than
//! unbounded waiting. Workers batch queued requests together (see [`batcher`]).
//!
//! One shortcut: when nothing is queued, a backend is idle and the model is known to answer
//! this many rows in a few tens of microseconds, the request runs on the caller's thread.
//! Handing it to a worker would cost two thread wake-ups — several times the model call
//! itself for a small model — and there is nothing to batch it with. As soon as a request
//! waits (a backend busy, the queue not empty) requests queue and batch as before.

pub mod batcher;
pub mod ort;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::{Result, ServerError};
use crate::tensor::Tensor;

/// Runs one model: named inputs (in signature order) in, every output (in signature order) out.
/// `&mut self` because an ONNX Runtime session runs one call at a time.
pub trait Backend: Send {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>>;
}

/// Dynamic batching and queueing limits of one model.
#[derive(Clone, Debug)]
pub struct BatchConfig {
    /// Most rows one model call may hold; 1 disables batching.
    pub max_batch_size: usize,
    /// How long the first request of a batch may wait for others; zero batches only what is
    /// already queued (no added latency).
    pub max_queue_delay: Duration,
    /// Requests that may wait for a worker; beyond it callers are told to retry.
    pub queue_capacity: usize,
    /// Worker threads, each with its own backend instance.
    pub workers: usize,
    /// A request the model is expected to answer within this time may run on the caller's
    /// thread when nothing waits (see the module's documentation); zero never does.
    pub inline_budget: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 32,
            max_queue_delay: Duration::ZERO,
            queue_capacity: 1024,
            workers: 1,
            inline_budget: INLINE_BUDGET,
        }
    }
}

/// Called by a worker after each model call with (rows in the batch, execution time).
pub type ExecutionHook = Arc<dyn Fn(usize, Duration) + Send + Sync>;

pub(crate) struct Job {
    inputs: Vec<Tensor>,
    rows: usize,
    reply: oneshot::Sender<Result<Vec<Tensor>>>,
    /// Counts the job as waiting until it is answered (or dropped unanswered).
    waiting: Waiting,
}

impl Job {
    /// Replies to the caller; the job stops counting as waiting first, so the caller's next
    /// request already sees it answered.
    pub(crate) fn answer(self, result: Result<Vec<Tensor>>) {
        let Job { reply, waiting, .. } = self;
        drop(waiting);
        // The caller may have gone (a cancelled request): nothing to do then.
        let _ = reply.send(result);
    }
}

/// By default a model call may run on the caller's (async runtime) thread when it is
/// expected to take at most this long: tokio's guidance for work between two `.await`s.
const INLINE_BUDGET: Duration = Duration::from_micros(50);

/// What a model's callers and workers share.
pub(crate) struct Shared {
    /// One backend per worker; a worker locks its own for each call, the shortcut any idle one.
    pub(crate) backends: Vec<Mutex<Box<dyn Backend>>>,
    /// Jobs queued or being batched, not yet answered.
    waiting: AtomicUsize,
    /// Recent execution time per row in nanoseconds (a moving average); `u64::MAX` until
    /// the first call.
    ns_per_row: AtomicU64,
    inline_budget: Duration,
    hook: ExecutionHook,
}

impl Shared {
    /// Runs one call on `backend`, timing it for the hook and the shortcut's estimate.
    pub(crate) fn run(
        &self,
        backend: &mut dyn Backend,
        inputs: Vec<Tensor>,
        rows: usize,
    ) -> Result<Vec<Tensor>> {
        let started = Instant::now();
        let result = backend.run(inputs);
        let took = started.elapsed();
        (self.hook)(rows, took);
        let sample = (took.as_nanos() as u64 / rows.max(1) as u64).max(1);
        // Races between two updaters lose a sample, which an average can afford.
        let old = self.ns_per_row.load(Ordering::Relaxed);
        let new = if old == u64::MAX {
            sample
        } else {
            (old.saturating_mul(7) / 8).saturating_add(sample / 8)
        };
        self.ns_per_row.store(new, Ordering::Relaxed);
        result
    }

    /// The shortcut applies: nothing waits and `rows` rows are expected within the budget
    /// (nothing is expected before the first call).
    fn may_run_inline(&self, rows: usize) -> bool {
        let ns_per_row = self.ns_per_row.load(Ordering::Relaxed);
        self.waiting.load(Ordering::Acquire) == 0
            && ns_per_row != u64::MAX
            && u128::from(ns_per_row) * rows as u128 <= self.inline_budget.as_nanos()
    }
}

/// One job counted in [`Shared::waiting`] for as long as it lives.
struct Waiting(Arc<Shared>);

impl Waiting {
    fn enter(shared: &Arc<Shared>) -> Self {
        shared.waiting.fetch_add(1, Ordering::AcqRel);
        Waiting(shared.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The sending side of a model's queue. Dropping every handle stops the workers once the
/// queue is drained.
#[derive(Clone)]
pub struct ModelHandle {
    name: String,
    tx: SyncSender<Job>,
    shared: Arc<Shared>,
}

impl ModelHandle {
    /// Starts `config.workers` threads, each running a backend built by `make_backend`.
    /// `batching` is false when the model has no batch dimension.
    pub fn spawn<F>(
        name: &str,
        make_backend: F,
        batching: bool,
        config: &BatchConfig,
        hook: ExecutionHook,
    ) -> Result<Self>
    where
        F: Fn() -> Result<Box<dyn Backend>>,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(config.queue_capacity.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let max_rows = if batching {
            config.max_batch_size.max(1)
        } else {
            1
        };
        let workers = config.workers.max(1);
        let backends = (0..workers)
            .map(|_| make_backend().map(Mutex::new))
            .collect::<Result<_>>()?;
        let shared = Arc::new(Shared {
            backends,
            waiting: AtomicUsize::new(0),
            ns_per_row: AtomicU64::new(u64::MAX),
            inline_budget: config.inline_budget,
            hook,
        });
        for index in 0..workers {
            let worker = batcher::Worker::new(
                shared.clone(),
                index,
                rx.clone(),
                max_rows,
                config.max_queue_delay,
            );
            std::thread::Builder::new()
                .name(format!("model-{name}-{index}"))
                .spawn(move || worker.run())
                .map_err(|e| {
                    ServerError::Unavailable(format!("cannot start a worker thread: {e}"))
                })?;
        }
        Ok(Self {
            name: name.to_string(),
            tx,
            shared,
        })
    }

    /// Jobs queued or being batched, not yet answered.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.shared.waiting.load(Ordering::Acquire)
    }

    /// Queues validated inputs and waits for the outputs (or runs them at once, see the
    /// module's documentation).
    pub async fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let rows = inputs.first().map_or(1, Tensor::rows);
        if self.shared.may_run_inline(rows) {
            for backend in &self.shared.backends {
                // Busy (or poisoned by a panic, which the worker deals with): try the next.
                if let Ok(mut backend) = backend.try_lock() {
                    return self.shared.run(backend.as_mut(), inputs, rows);
                }
            }
        }
        let (reply, answer) = oneshot::channel();
        match self.tx.try_send(Job {
            inputs,
            rows,
            reply,
            waiting: Waiting::enter(&self.shared),
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(ServerError::Overloaded(self.name.clone())),
            Err(TrySendError::Disconnected(_)) => {
                return Err(ServerError::Unavailable(format!(
                    "model {:?} is shutting down",
                    self.name
                )));
            }
        }
        answer.await.map_err(|_| {
            ServerError::Execution(format!("the worker of model {:?} stopped", self.name))
        })?
    }
}
