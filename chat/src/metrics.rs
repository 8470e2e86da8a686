//! Prometheus metrics of chat mode, registered in the registry the server passes in.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, exponential_buckets,
};

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot register chat metrics: {0}")]
    Register(#[from] prometheus::Error),
}

/// The chat metrics; cheap to clone.
#[derive(Clone)]
pub struct ChatMetrics {
    /// Seconds from request to first generated text, by backend.
    pub time_to_first_token: HistogramVec,
    /// Generated tokens per second of generation, by backend.
    pub tokens_per_second: HistogramVec,
    /// Requests by endpoint and outcome (`ok`, `cancelled`, `cache_hit`, `blocked`, or an
    /// error label).
    pub requests: IntCounterVec,
    /// Tokens by kind (`prompt`, `completion`, and `prompt_cached`: the prompt tokens a
    /// backend took from its cache instead of computing them, included in `prompt`).
    pub tokens: IntCounterVec,
    /// Answers served from a cache, by cache (`exact`, `semantic`).
    pub cache_hits: IntCounterVec,
    /// Prompts the guard flagged or blocked, by layer that fired (`pattern`, `markup`,
    /// `decoded`, `semantic`; a prompt counts once per layer) and action.
    pub guard_detections: IntCounterVec,
    /// Seconds the guard took per checked message, semantic layer included.
    pub guard_seconds: Histogram,
}

impl ChatMetrics {
    pub fn register(registry: &Registry) -> Result<Self, MetricsError> {
        let time_to_first_token = HistogramVec::new(
            HistogramOpts::new(
                "mooring_chat_time_to_first_token_seconds",
                "Seconds from a chat request to its first generated text",
            )
            .buckets(exponential_buckets(0.01, 2.0, 14)?),
            &["backend"],
        )?;
        let tokens_per_second = HistogramVec::new(
            HistogramOpts::new(
                "mooring_chat_tokens_per_second",
                "Generated tokens per second, after the first token",
            )
            .buckets(exponential_buckets(1.0, 1.6, 14)?),
            &["backend"],
        )?;
        let requests = IntCounterVec::new(
            Opts::new("mooring_chat_requests_total", "Chat requests by outcome"),
            &["endpoint", "outcome"],
        )?;
        let tokens = IntCounterVec::new(
            Opts::new(
                "mooring_chat_tokens_total",
                "Prompt and completion tokens; prompt_cached: prompt tokens taken from the backend's cache",
            ),
            &["kind"],
        )?;
        let cache_hits = IntCounterVec::new(
            Opts::new(
                "mooring_chat_cache_hits_total",
                "Answers served from a cache",
            ),
            &["cache"],
        )?;
        let guard_detections = IntCounterVec::new(
            Opts::new(
                "mooring_chat_guard_detections_total",
                "Prompts in which the guard detected an injection attempt",
            ),
            &["layer", "action"],
        )?;
        let guard_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "mooring_chat_guard_seconds",
                "Seconds the prompt guard took per checked message",
            )
            .buckets(exponential_buckets(0.0001, 2.0, 14)?),
        )?;
        registry.register(Box::new(time_to_first_token.clone()))?;
        registry.register(Box::new(tokens_per_second.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(tokens.clone()))?;
        registry.register(Box::new(cache_hits.clone()))?;
        registry.register(Box::new(guard_detections.clone()))?;
        registry.register(Box::new(guard_seconds.clone()))?;
        Ok(ChatMetrics {
            time_to_first_token,
            tokens_per_second,
            requests,
            tokens,
            cache_hits,
            guard_detections,
            guard_seconds,
        })
    }

    pub fn outcome(&self, endpoint: &str, outcome: &str) {
        self.requests.with_label_values(&[endpoint, outcome]).inc();
    }
}
