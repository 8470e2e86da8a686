//! Dynamic batching, Triton style: a worker takes the first queued request, gathers more
//! until `max_rows` rows or `max_queue_delay` has passed, runs them as one model call with
//! the inputs concatenated along the batch dimension, and hands each caller its own rows.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Job, Shared};
use crate::error::{Result, ServerError};
use crate::tensor::{Tensor, TensorData};

pub(crate) struct Worker {
    shared: Arc<Shared>,
    /// This worker's backend in `shared.backends`.
    backend: usize,
    queue: Arc<Mutex<Receiver<Job>>>,
    max_rows: usize,
    max_delay: Duration,
    /// A request taken from the queue that did not fit the previous batch; it starts the next.
    carried: Option<Job>,
}

impl Worker {
    pub(crate) fn new(
        shared: Arc<Shared>,
        backend: usize,
        queue: Arc<Mutex<Receiver<Job>>>,
        max_rows: usize,
        max_delay: Duration,
    ) -> Self {
        Self {
            shared,
            backend,
            queue,
            max_rows,
            max_delay,
            carried: None,
        }
    }

    pub(crate) fn run(mut self) {
        while let Some(batch) = self.next_batch() {
            self.execute(batch);
        }
        tracing::debug!("model worker stopped: its queue is closed");
    }

    /// Blocks for the next batch; `None` once the queue is closed and drained.
    fn next_batch(&mut self) -> Option<Vec<Job>> {
        // The lock is held while gathering so one worker fills one batch; other workers take
        // the queue as soon as this batch is complete.
        let queue = self
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let first = match self.carried.take() {
            Some(job) => job,
            None => queue.recv().ok()?,
        };
        let mut rows = first.rows;
        let mut batch = vec![first];
        let deadline = Instant::now() + self.max_delay;
        while rows < self.max_rows {
            let wait = deadline.saturating_duration_since(Instant::now());
            let next = if wait.is_zero() {
                queue.try_recv().ok()
            } else {
                // A timeout or a closed queue both end the gathering.
                queue.recv_timeout(wait).ok()
            };
            let Some(job) = next else { break };
            if rows + job.rows > self.max_rows || !compatible(&batch[0].inputs, &job.inputs) {
                self.carried = Some(job);
                break;
            }
            rows += job.rows;
            batch.push(job);
        }
        Some(batch)
    }

    fn execute(&mut self, mut batch: Vec<Job>) {
        // Held for the call only; the shortcut of `ModelHandle::infer` may use it in between.
        let mut backend = self.shared.backends[self.backend]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if batch.len() == 1 {
            let mut job = batch.pop().expect("one job");
            let inputs = std::mem::take(&mut job.inputs);
            let result = self.shared.run(backend.as_mut(), inputs, job.rows);
            drop(backend);
            job.answer(result);
            return;
        }
        let row_counts: Vec<usize> = batch.iter().map(|j| j.rows).collect();
        let total: usize = row_counts.iter().sum();
        let merged = merge_inputs(&batch);
        let result = self
            .shared
            .run(backend.as_mut(), merged, total)
            .and_then(|outputs| split_outputs(outputs, &row_counts));
        drop(backend);
        match result {
            Ok(per_job) => {
                for (job, outputs) in batch.into_iter().zip(per_job) {
                    job.answer(Ok(outputs));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for job in batch {
                    job.answer(Err(ServerError::Execution(message.clone())));
                }
            }
        }
    }
}

/// Requests can share a call when every input has the same datatype and the same
/// dimensions after the batch dimension.
fn compatible(a: &[Tensor], b: &[Tensor]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.datatype() == y.datatype() && x.shape[1..] == y.shape[1..])
}

fn merge_inputs(batch: &[Job]) -> Vec<Tensor> {
    let total: usize = batch.iter().map(|j| j.rows).sum();
    (0..batch[0].inputs.len())
        .map(|i| {
            let first = &batch[0].inputs[i];
            let parts: Vec<&TensorData> = batch.iter().map(|j| &j.inputs[i].data).collect();
            let mut shape = first.shape.clone();
            shape[0] = total as i64;
            Tensor {
                name: first.name.clone(),
                shape,
                data: TensorData::concat(&parts),
            }
        })
        .collect()
}

/// Cuts every output along its first dimension into each request's rows.
pub(crate) fn split_outputs(
    outputs: Vec<Tensor>,
    row_counts: &[usize],
) -> Result<Vec<Vec<Tensor>>> {
    let total: usize = row_counts.iter().sum();
    let mut per_job: Vec<Vec<Tensor>> = row_counts
        .iter()
        .map(|_| Vec::with_capacity(outputs.len()))
        .collect();
    for output in outputs {
        if output.shape.first().copied() != Some(total as i64) {
            return Err(ServerError::Execution(format!(
                "output {:?} has shape {:?}, not one row per input row ({total}); the model cannot be batched",
                output.name, output.shape
            )));
        }
        let row_len = output.row_len();
        let mut start = 0;
        for (rows, outputs) in row_counts.iter().zip(per_job.iter_mut()) {
            let mut shape = output.shape.clone();
            shape[0] = *rows as i64;
            let end = start + rows * row_len;
            outputs.push(Tensor {
                name: output.name.clone(),
                shape,
                data: output.data.slice(start, end),
            });
            start = end;
        }
    }
    Ok(per_job)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::backend::{Backend, BatchConfig, ExecutionHook, ModelHandle};

    /// Doubles its `[n, 2]` FP32 input and records the batch sizes it was called with, and
    /// on which thread.
    struct Doubler {
        calls: Arc<Mutex<Vec<usize>>>,
        gate: Option<Arc<Mutex<()>>>,
        threads: Arc<Mutex<Vec<String>>>,
        /// Calls started (before the gate).
        entered: Arc<AtomicUsize>,
    }

    impl Backend for Doubler {
        fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
            self.entered.fetch_add(1, Ordering::SeqCst);
            if let Some(gate) = &self.gate {
                drop(gate.lock().unwrap());
            }
            let x = &inputs[0];
            let thread = std::thread::current().name().unwrap_or("").to_string();
            self.threads.lock().unwrap().push(thread);
            self.calls.lock().unwrap().push(x.rows());
            let TensorData::F32(v) = &x.data else {
                panic!("FP32 expected")
            };
            let data = TensorData::F32(v.iter().map(|a| a * 2.0).collect());
            Ok(vec![Tensor {
                name: "y".into(),
                shape: x.shape.clone(),
                data,
            }])
        }
    }

    fn rows(values: &[f32]) -> Vec<Tensor> {
        vec![Tensor {
            name: "x".into(),
            shape: vec![(values.len() / 2) as i64, 2],
            data: TensorData::F32(values.to_vec()),
        }]
    }

    /// What the doublers of one handle saw.
    #[derive(Default)]
    struct Seen {
        calls: Arc<Mutex<Vec<usize>>>,
        threads: Arc<Mutex<Vec<String>>>,
        entered: Arc<AtomicUsize>,
    }

    fn spawn(
        config: BatchConfig,
        calls: Arc<Mutex<Vec<usize>>>,
        gate: Option<Arc<Mutex<()>>>,
    ) -> ModelHandle {
        let seen = Seen {
            calls,
            ..Default::default()
        };
        spawn_seen(config, &seen, gate)
    }

    fn spawn_seen(config: BatchConfig, seen: &Seen, gate: Option<Arc<Mutex<()>>>) -> ModelHandle {
        let executed = Arc::new(AtomicUsize::new(0));
        let hook: ExecutionHook = Arc::new(move |_, _| {
            executed.fetch_add(1, Ordering::Relaxed);
        });
        let (calls, threads, entered) = (
            seen.calls.clone(),
            seen.threads.clone(),
            seen.entered.clone(),
        );
        let make = move || {
            Ok(Box::new(Doubler {
                calls: calls.clone(),
                gate: gate.clone(),
                threads: threads.clone(),
                entered: entered.clone(),
            }) as Box<dyn Backend>)
        };
        ModelHandle::spawn("doubler", make, true, &config, hook).unwrap()
    }

    #[tokio::test]
    async fn an_idle_fast_model_answers_on_the_callers_thread() {
        let seen = Seen::default();
        // Any known speed is fast enough: the test must not depend on how long a call takes.
        let config = BatchConfig {
            inline_budget: Duration::MAX,
            ..Default::default()
        };
        let handle = spawn_seen(config, &seen, None);
        // The first call goes to the worker (nothing is known of the model's speed yet), the
        // next ones find the queue empty and run here.
        for _ in 0..3 {
            let out = handle.infer(rows(&[1.0, 2.0])).await.unwrap();
            assert_eq!(out[0].data, TensorData::F32(vec![2.0, 4.0]));
        }
        let here = std::thread::current().name().unwrap_or("").to_string();
        let threads = seen.threads.lock().unwrap().clone();
        assert_eq!(threads[0], "model-doubler-0");
        assert_eq!(threads[1..], [here.clone(), here]);
        assert_eq!(handle.waiting(), 0);
    }

    // The gate is a std mutex held on purpose while the test awaits: it stops the backend
    // (on another thread), never this task.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_that_wait_are_still_batched() {
        let seen = Seen::default();
        let gate = Arc::new(Mutex::new(()));
        let config = BatchConfig {
            max_batch_size: 3,
            max_queue_delay: Duration::from_secs(30),
            inline_budget: Duration::MAX,
            ..Default::default()
        };
        let handle = Arc::new(spawn_seen(config, &seen, Some(gate.clone())));
        // Three rows fill a batch: the worker runs them at once and learns the model's speed.
        handle.infer(rows(&[0.0; 6])).await.unwrap();
        let closed = gate.lock().unwrap();
        // A runs on its caller's thread and stops at the gate, holding the only backend …
        let a = tokio::spawn({
            let h = handle.clone();
            async move { h.infer(rows(&[1.0, 1.0])).await }
        });
        while seen.entered.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        // … so B, C and D, sent meanwhile, wait in the queue and go as one batch.
        let others: Vec<_> = [2.0, 3.0, 4.0]
            .into_iter()
            .map(|v| {
                let h = handle.clone();
                tokio::spawn(async move { h.infer(rows(&[v, v])).await })
            })
            .collect();
        while handle.waiting() < 3 {
            tokio::task::yield_now().await;
        }
        drop(closed);
        assert_eq!(
            a.await.unwrap().unwrap()[0].data,
            TensorData::F32(vec![2.0, 2.0])
        );
        for (v, task) in [2.0, 3.0, 4.0].into_iter().zip(others) {
            let out = task.await.unwrap().unwrap();
            assert_eq!(out[0].data, TensorData::F32(vec![2.0 * v, 2.0 * v]));
        }
        assert_eq!(*seen.calls.lock().unwrap(), vec![3, 1, 3]);
        assert_eq!(handle.waiting(), 0);
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_call_and_get_their_own_rows() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        // A long delay and a batch size of exactly the request count: the batch closes when
        // full, so the test does not depend on timing.
        let config = BatchConfig {
            max_batch_size: 5,
            max_queue_delay: Duration::from_secs(30),
            ..Default::default()
        };
        let handle = spawn(config, calls.clone(), None);
        let requests = [
            vec![1.0, 2.0],
            vec![3.0, 4.0, 5.0, 6.0],
            vec![7.0, 8.0],
            vec![9.0, 10.0],
        ];
        let answers =
            futures::future::join_all(requests.iter().map(|r| handle.infer(rows(r)))).await;
        for (request, answer) in requests.iter().zip(answers) {
            let outputs = answer.unwrap();
            let want: Vec<f32> = request.iter().map(|a| a * 2.0).collect();
            assert_eq!(outputs[0].data, TensorData::F32(want));
            assert_eq!(outputs[0].shape, vec![(request.len() / 2) as i64, 2]);
        }
        assert_eq!(
            *calls.lock().unwrap(),
            vec![5],
            "all five rows ran in one call"
        );
    }

    #[tokio::test]
    async fn a_request_that_does_not_fit_starts_the_next_batch() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let config = BatchConfig {
            max_batch_size: 2,
            max_queue_delay: Duration::from_secs(30),
            ..Default::default()
        };
        let handle = spawn(config, calls.clone(), None);
        let (a, b, c) = tokio::join!(
            handle.infer(rows(&[1.0, 1.0])),
            handle.infer(rows(&[2.0, 2.0])),
            handle.infer(rows(&[3.0, 3.0, 4.0, 4.0]))
        );
        assert_eq!(a.unwrap()[0].data, TensorData::F32(vec![2.0, 2.0]));
        assert_eq!(b.unwrap()[0].data, TensorData::F32(vec![4.0, 4.0]));
        assert_eq!(
            c.unwrap()[0].data,
            TensorData::F32(vec![6.0, 6.0, 8.0, 8.0])
        );
        assert_eq!(*calls.lock().unwrap(), vec![2, 2]);
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_not_queued() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Mutex::new(()));
        let closed = gate.lock().unwrap();
        let config = BatchConfig {
            max_batch_size: 1,
            queue_capacity: 1,
            ..Default::default()
        };
        let handle = spawn(config, calls.clone(), Some(gate.clone()));
        // With the worker blocked on the gate it holds at most one request and the queue one
        // more, so of three sent at once at least one must be refused. Each future is polled
        // once (which queues it) and dropped; the queued job stays queued.
        let mut refused = None;
        for _ in 0..3 {
            if let Some(Err(e)) = futures::FutureExt::now_or_never(handle.infer(rows(&[1.0, 1.0])))
            {
                refused = Some(e);
            }
        }
        drop(closed);
        let refused = refused.expect("one request must be refused while the queue is full");
        assert!(matches!(refused, ServerError::Overloaded(_)), "{refused}");
        assert_eq!(
            refused.http_status(),
            axum::http::StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[test]
    fn outputs_without_a_row_per_input_row_are_an_error() {
        let out = vec![Tensor {
            name: "y".into(),
            shape: vec![1],
            data: TensorData::F32(vec![1.0]),
        }];
        assert!(split_outputs(out, &[1, 1]).is_err());
    }
}
