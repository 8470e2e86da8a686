//! Prometheus metrics of the data plane, in a registry of their own so other parts of the
//! process (chat, prediction logging) can register theirs beside them and share `/metrics`.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Latency buckets from 100 µs to 10 s: in-process ONNX calls take tens of microseconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Requests by model, version, protocol (`rest`, `grpc`, `api_v1`) and outcome.
    pub requests: IntCounterVec,
    /// Whole-request latency by protocol and model.
    pub request_seconds: HistogramVec,
    /// Model call latency (one call may serve a batch of requests).
    pub execution_seconds: HistogramVec,
    pub in_flight: IntGauge,
    /// Rows per model call, after dynamic batching.
    pub batch_size: HistogramVec,
    pub model_load_seconds: GaugeVec,
}

impl Metrics {
    /// Metrics in a registry of their own.
    pub fn new() -> Self {
        Self::with_registry(Registry::new())
    }

    /// Metrics registered into `registry`, which other components share (one `/metrics`).
    pub fn with_registry(registry: Registry) -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "mooring_inference_requests_total",
                "Inference requests by model, version, protocol and outcome",
            ),
            &["model", "version", "protocol", "outcome"],
        )
        .expect("valid metric");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "mooring_inference_request_duration_seconds",
                "Inference request latency, end to end in the server",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["model", "protocol"],
        )
        .expect("valid metric");
        let execution_seconds = HistogramVec::new(
            HistogramOpts::new(
                "mooring_model_execution_duration_seconds",
                "Model execution latency per (batched) call",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["model"],
        )
        .expect("valid metric");
        let in_flight = IntGauge::new(
            "mooring_inference_requests_in_flight",
            "Inference requests being served",
        )
        .expect("valid metric");
        let batch_size = HistogramVec::new(
            HistogramOpts::new(
                "mooring_model_batch_size",
                "Rows per model call after dynamic batching",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            &["model"],
        )
        .expect("valid metric");
        let model_load_seconds = GaugeVec::new(
            Opts::new(
                "mooring_model_load_duration_seconds",
                "Time to fetch, verify and load a model version",
            ),
            &["model", "version"],
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_seconds.clone()),
            Box::new(execution_seconds.clone()),
            Box::new(in_flight.clone()),
            Box::new(batch_size.clone()),
            Box::new(model_load_seconds.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self {
            registry,
            requests,
            request_seconds,
            execution_seconds,
            in_flight,
            batch_size,
            model_load_seconds,
        }
    }

    /// The Prometheus text exposition of every metric in the registry.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
