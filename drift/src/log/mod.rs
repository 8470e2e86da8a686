//! Prediction logging off the request path.
//!
//! [`PredictionLogger::log`] never waits: it samples, then `try_send`s into a bounded queue.
//! When the queue is full (the sink is slower than the traffic) the record is dropped and
//! counted — inference must never block or fail because of logging. One writer task drains
//! the queue, buffers JSON lines and writes them to the sink when the buffer is large, at
//! least every `flush_interval`, and at [`PredictionLogger::shutdown`], which therefore
//! loses nothing. A crash loses at most the unflushed tail; the reader skips a half-written
//! last line.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mooring_drift::log::LogError> {
//! use mooring_drift::log::{LoggerOptions, PredictionLogger, PredictionRecord};
//! let (logger, writer) = PredictionLogger::start("file:///var/log/mooring", LoggerOptions::default()).await?;
//! logger.register(prometheus::default_registry())?;
//! logger.log(PredictionRecord::now("iris", "3", "req-1", "api_v1"));
//! logger.shutdown().await; // flushes; `writer` then completes
//! # let _ = writer; Ok(()) }
//! ```

pub mod columns;
mod line;
pub mod reader;
pub mod record;
pub mod sink;

pub use columns::{Cell, LogColumns};
pub use reader::{ReadQuery, ReadStats, read_columns, read_records};
pub use record::{FeatureValue, Prediction, PredictionRecord};
pub use sink::{S3Options, SinkError, SinkUrl};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge, Opts};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use sink::{Rotation, SinkWriter};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("invalid prediction log option {field}: {reason}")]
    InvalidOption { field: &'static str, reason: String },
    #[error("registering prediction log metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Tuning of the logger; the defaults suit a server pod.
#[derive(Clone, Debug)]
pub struct LoggerOptions {
    /// Share of records kept, in (0, 1]. Sampling is deterministic (every 1/rate-th record).
    pub sample_rate: f64,
    /// Capacity of the queue between request handlers and the writer task.
    pub queue_capacity: usize,
    /// Buffered bytes that trigger a write before the flush interval.
    pub buffer_bytes: usize,
    /// Buffered lines are written at least this often.
    pub flush_interval: Duration,
    /// File sink: start a new file past this size …
    pub max_file_bytes: u64,
    /// … or this age.
    pub max_file_age: Duration,
    /// Names this process's files; defaults to pod name + pid + random suffix.
    pub writer_id: Option<String>,
    /// S3 settings for `s3://` sinks (environment variables otherwise).
    pub s3: S3Options,
}

impl Default for LoggerOptions {
    fn default() -> Self {
        LoggerOptions {
            sample_rate: 1.0,
            queue_capacity: 10_000,
            buffer_bytes: 256 * 1024,
            flush_interval: Duration::from_secs(1),
            max_file_bytes: 64 * 1024 * 1024,
            max_file_age: Duration::from_secs(3600),
            writer_id: None,
            s3: S3Options::default(),
        }
    }
}

impl LoggerOptions {
    fn validate(&self) -> Result<(), LogError> {
        if !(self.sample_rate > 0.0 && self.sample_rate <= 1.0) {
            return Err(LogError::InvalidOption {
                field: "sample_rate",
                reason: format!("{} is not in (0, 1]", self.sample_rate),
            });
        }
        if self.queue_capacity == 0 {
            return Err(LogError::InvalidOption {
                field: "queue_capacity",
                reason: "must be at least 1".into(),
            });
        }
        if self.flush_interval.is_zero() {
            return Err(LogError::InvalidOption {
                field: "flush_interval",
                reason: "must be positive".into(),
            });
        }
        Ok(())
    }
}

/// The logger's Prometheus collectors.
#[derive(Clone)]
pub struct LogMetrics {
    /// Records accepted into the queue.
    pub logged: IntCounter,
    /// Records dropped because the queue was full (or the logger shut down).
    pub dropped: IntCounter,
    /// Records written to the sink.
    pub written: IntCounter,
    /// Records lost because the sink refused a write.
    pub write_errors: IntCounter,
    /// Records waiting in the queue.
    pub queue_depth: IntGauge,
}

impl LogMetrics {
    fn new() -> Self {
        let counter = |name: &str, help: &str| {
            IntCounter::with_opts(Opts::new(name, help)).expect("valid metric")
        };
        LogMetrics {
            logged: counter(
                "mooring_prediction_log_logged_total",
                "Prediction records accepted for logging",
            ),
            dropped: counter(
                "mooring_prediction_log_dropped_total",
                "Prediction records dropped because the log queue was full",
            ),
            written: counter(
                "mooring_prediction_log_written_total",
                "Prediction records written to the sink",
            ),
            write_errors: counter(
                "mooring_prediction_log_write_errors_total",
                "Prediction records lost because a sink write failed",
            ),
            queue_depth: IntGauge::with_opts(Opts::new(
                "mooring_prediction_log_queue_depth",
                "Prediction records waiting to be written",
            ))
            .expect("valid metric"),
        }
    }
}

enum Msg {
    Record(Box<PredictionRecord>),
    Shutdown(oneshot::Sender<()>),
}

struct Inner {
    tx: mpsc::Sender<Msg>,
    metrics: LogMetrics,
    sample_rate: f64,
    seen: AtomicU64,
}

/// Handle to the prediction log; cheap to clone into every request handler.
#[derive(Clone)]
pub struct PredictionLogger {
    inner: Arc<Inner>,
}

impl PredictionLogger {
    /// Open the sink (`file:///dir` or `s3://bucket/prefix`) and spawn the writer task.
    /// The returned handle completes after [`shutdown`](Self::shutdown) has flushed.
    pub async fn start(
        sink_url: &str,
        opts: LoggerOptions,
    ) -> Result<(PredictionLogger, JoinHandle<()>), LogError> {
        opts.validate()?;
        let url = SinkUrl::parse(sink_url)?;
        let writer_id = opts
            .writer_id
            .clone()
            .unwrap_or_else(sink::default_writer_id);
        let rotation = Rotation {
            max_bytes: opts.max_file_bytes,
            max_age: opts.max_file_age,
        };
        let sink = SinkWriter::open(&url, writer_id.clone(), rotation, &opts.s3).await?;
        let (tx, rx) = mpsc::channel(opts.queue_capacity);
        let metrics = LogMetrics::new();
        tracing::info!(
            sink = sink_url,
            writer_id,
            sample_rate = opts.sample_rate,
            "prediction logging started"
        );
        let task = tokio::spawn(writer_task(rx, sink, metrics.clone(), opts.clone()));
        let inner = Inner {
            tx,
            metrics,
            sample_rate: opts.sample_rate,
            seen: AtomicU64::new(0),
        };
        Ok((
            PredictionLogger {
                inner: Arc::new(inner),
            },
            task,
        ))
    }

    /// Queue one record without waiting. Returns false when it was dropped (queue full or
    /// logger shut down); records left out by sampling return true.
    pub fn log(&self, record: PredictionRecord) -> bool {
        let inner = &self.inner;
        if inner.sample_rate < 1.0 {
            // Keep record k when floor((k+1)·rate) > floor(k·rate): exactly `rate` of them.
            let k = inner.seen.fetch_add(1, Ordering::Relaxed) as f64;
            if ((k + 1.0) * inner.sample_rate).floor() <= (k * inner.sample_rate).floor() {
                return true;
            }
        }
        match inner.tx.try_send(Msg::Record(Box::new(record))) {
            Ok(()) => {
                inner.metrics.logged.inc();
                inner
                    .metrics
                    .queue_depth
                    .set((inner.tx.max_capacity() - inner.tx.capacity()) as i64);
                true
            }
            Err(_) => {
                inner.metrics.dropped.inc();
                false
            }
        }
    }

    /// The collectors, for reading them in tests and dashboards.
    pub fn metrics(&self) -> &LogMetrics {
        &self.inner.metrics
    }

    /// Register the collectors in the server's registry.
    pub fn register(&self, registry: &prometheus::Registry) -> Result<(), LogError> {
        let m = &self.inner.metrics;
        registry.register(Box::new(m.logged.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.written.clone()))?;
        registry.register(Box::new(m.write_errors.clone()))?;
        registry.register(Box::new(m.queue_depth.clone()))?;
        Ok(())
    }

    /// Write everything queued so far and stop the writer. Records logged afterwards are
    /// dropped (and counted).
    pub async fn shutdown(&self) {
        let (ack_tx, ack_rx) = oneshot::channel();
        if self.inner.tx.send(Msg::Shutdown(ack_tx)).await.is_ok() {
            let _ = ack_rx.await;
        }
    }
}

async fn writer_task(
    mut rx: mpsc::Receiver<Msg>,
    mut sink: SinkWriter,
    metrics: LogMetrics,
    opts: LoggerOptions,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(opts.buffer_bytes + 4096);
    let mut buffered: u64 = 0;
    let mut tick = tokio::time::interval(opts.flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Record(rec)) => {
                    metrics.queue_depth.set(rx.len() as i64);
                    match serde_json::to_writer(&mut buf, &rec) {
                        Ok(()) => { buf.push(b'\n'); buffered += 1; }
                        Err(e) => { tracing::warn!(error = %e, "prediction record not serialisable"); metrics.write_errors.inc(); }
                    }
                    if buf.len() >= opts.buffer_bytes {
                        flush(&mut sink, &mut buf, &mut buffered, &metrics).await;
                    }
                }
                Some(Msg::Shutdown(ack)) => {
                    // Everything queued before the shutdown message is already in `buf`.
                    flush(&mut sink, &mut buf, &mut buffered, &metrics).await;
                    rx.close();
                    while let Ok(Msg::Record(_)) = rx.try_recv() { metrics.dropped.inc(); }
                    metrics.queue_depth.set(0);
                    let _ = ack.send(());
                    tracing::info!("prediction log flushed and closed");
                    return;
                }
                None => {
                    flush(&mut sink, &mut buf, &mut buffered, &metrics).await;
                    return;
                }
            },
            _ = tick.tick() => flush(&mut sink, &mut buf, &mut buffered, &metrics).await,
        }
    }
}

async fn flush(sink: &mut SinkWriter, buf: &mut Vec<u8>, buffered: &mut u64, metrics: &LogMetrics) {
    if buf.is_empty() {
        return;
    }
    match sink.write(buf).await {
        Ok(()) => metrics.written.inc_by(*buffered),
        Err(e) => {
            tracing::warn!(error = %e, records = *buffered, "prediction log write failed; records lost");
            metrics.write_errors.inc_by(*buffered);
        }
    }
    buf.clear();
    *buffered = 0;
}
