//! What the HTTP routes and the gRPC service share: the engine, the prompt guard and the
//! API keys, and the guard check both transports run before the engine takes a request.
//! The transports (`http`, `grpc`) build on this module; it knows nothing of them.

use std::sync::Arc;

use http::HeaderValue;

use crate::auth::Auth;
use crate::backend::Role;
use crate::engine::{ChatRequest, Engine};
use crate::error::ChatError;
use crate::guard::{Guard, GuardAnalysis, GuardError, Layer};

/// State shared by the HTTP handlers and the gRPC service.
#[derive(Clone)]
pub struct Shared {
    pub engine: Engine,
    pub guard: Arc<Guard>,
    pub auth: Auth,
}

impl Shared {
    /// Applies the prompt guard to the request's system and user messages. Block mode
    /// refuses (400 with the analysis); flag mode lets the request through and returns
    /// the value of `x-prompt-guard` header (`http::GUARD_HEADER`). The semantic layer embeds on the blocking pool.
    pub async fn check_prompt(
        &self,
        request: &ChatRequest,
    ) -> Result<Option<HeaderValue>, ChatError> {
        let mut flagged: Vec<String> = Vec::new();
        let mut layers: Vec<Layer> = Vec::new();
        for (i, message) in request.messages.iter().enumerate() {
            if message.role == Role::Assistant {
                continue;
            }
            match self.timed_check(&message.content).await {
                Ok(analysis) if analysis.injection_detected => {
                    layers.extend(analysis.detections.iter().map(|d| d.layer));
                    flagged.extend(analysis.detected_patterns)
                }
                Ok(_) => {}
                Err(e) => return Err(self.guard_error(e, &format!("messages[{i}].content"))),
            }
        }
        if flagged.is_empty() {
            return Ok(None);
        }
        flagged.sort();
        flagged.dedup();
        self.count_detections(layers, "flagged");
        Ok(HeaderValue::from_str(&flagged.join(",")).ok())
    }

    /// The guard's analysis of a single-prompt request (for `generate-secure`).
    pub async fn analyze_prompt(
        &self,
        request: &ChatRequest,
    ) -> Result<serde_json::Value, ChatError> {
        let prompt = request
            .messages
            .last()
            .map(|m| m.content.as_str())
            .unwrap_or("");
        match self.timed_check(prompt).await {
            Ok(analysis) => {
                if analysis.injection_detected {
                    self.count_detections(
                        analysis.detections.iter().map(|d| d.layer).collect(),
                        "flagged",
                    );
                }
                Ok(serde_json::to_value(analysis).unwrap_or_default())
            }
            Err(e) => Err(self.guard_error(e, "prompt")),
        }
    }

    async fn timed_check(&self, text: &str) -> Result<GuardAnalysis, GuardError> {
        let started = std::time::Instant::now();
        let result = self.guard.check_async(text).await;
        self.engine
            .metrics
            .guard_seconds
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// One count per layer that fired.
    fn count_detections(&self, mut layers: Vec<Layer>, action: &str) {
        layers.sort_by_key(|l| l.as_str());
        layers.dedup();
        for layer in layers {
            self.engine
                .metrics
                .guard_detections
                .with_label_values(&[layer.as_str(), action])
                .inc();
        }
    }

    fn guard_error(&self, error: GuardError, field: &str) -> ChatError {
        match error {
            GuardError::Blocked(analysis) => {
                self.count_detections(
                    analysis.detections.iter().map(|d| d.layer).collect(),
                    "blocked",
                );
                ChatError::Blocked {
                    param: field.to_string(),
                    analysis: serde_json::to_value(*analysis).unwrap_or_default(),
                }
            }
            GuardError::PromptTooLong { length, limit } => ChatError::invalid(
                field,
                format!("{length} characters is more than the limit of {limit}"),
            ),
            other => ChatError::invalid(field, other.to_string()),
        }
    }
}
