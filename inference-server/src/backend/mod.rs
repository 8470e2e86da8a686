//! Model execution behind a trait, on dedicated worker threads.
//!
//! Requests reach a model's workers through a bounded queue with a one-shot reply each; a
//! full queue is an immediate `Overloaded` (HTTP 429 / gRPC `RESOURCE_EXHAUSTED`) rather than
//! unbounded waiting. Workers batch queued requests together (see [`batcher`]).

pub mod batcher;
pub mod ort;

use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 32,
            max_queue_delay: Duration::ZERO,
            queue_capacity: 1024,
            workers: 1,
        }
    }
}

/// Called by a worker after each model call with (rows in the batch, execution time).
pub type ExecutionHook = Arc<dyn Fn(usize, Duration) + Send + Sync>;

pub(crate) struct Job {
    inputs: Vec<Tensor>,
    rows: usize,
    reply: oneshot::Sender<Result<Vec<Tensor>>>,
}

/// The sending side of a model's queue. Dropping every handle stops the workers once the
/// queue is drained.
#[derive(Clone)]
pub struct ModelHandle {
    name: String,
    tx: SyncSender<Job>,
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
        for index in 0..config.workers.max(1) {
            let backend = make_backend()?;
            let worker = batcher::Worker::new(
                backend,
                rx.clone(),
                max_rows,
                config.max_queue_delay,
                hook.clone(),
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
        })
    }

    /// Queues validated inputs and waits for the outputs.
    pub async fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let rows = inputs.first().map_or(1, Tensor::rows);
        let (reply, answer) = oneshot::channel();
        match self.tx.try_send(Job {
            inputs,
            rows,
            reply,
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
