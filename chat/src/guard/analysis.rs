//! What the guard reports about a prompt: [`GuardAnalysis`], serialised as-is by
//! `/api/v1/generate-secure` and in block-mode 400 bodies, and its parts.

use serde::Serialize;

/// The layer of the guard that detected something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// A named phrasing of a known attack.
    Pattern,
    /// Chat-template tokens or role markup in user content.
    Markup,
    /// A pattern that matched only in a decoded (base64) payload.
    Decoded,
    /// Similarity with an attack exemplar.
    Semantic,
}

impl Layer {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Pattern => "pattern",
            Layer::Markup => "markup",
            Layer::Decoded => "decoded",
            Layer::Semantic => "semantic",
        }
    }
}

/// One thing a layer found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    pub layer: Layer,
    /// The pattern's name, or `nearest_exemplar` for the semantic layer.
    pub name: String,
    /// The semantic layer's similarity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

/// Whether the semantic layer ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SemanticStatus {
    /// It ran; the score is reported.
    On,
    /// Asked for (`--guard-semantic on`) but no embedding model is configured.
    Unavailable,
    /// Switched off, or the guard is off.
    Off,
    /// The embedding failed for this prompt; the other layers still decided.
    Failed,
}

/// What the semantic layer made of a prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SemanticReport {
    pub status: SemanticStatus,
    /// Similarity with the nearest attack exemplar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// The threshold in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
}

/// Everything the guard found out about one prompt. Serialised as-is by
/// `/api/v1/generate-secure` and in block-mode 400 bodies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardAnalysis {
    /// At least one layer detected an injection (reported in every mode but `off`).
    pub injection_detected: bool,
    /// Names of the patterns that matched, in pattern order (`semantic` when the semantic
    /// layer fired).
    pub detected_patterns: Vec<String>,
    /// Which layer found what, with the semantic layer's score.
    pub detections: Vec<Detection>,
    /// The semantic layer's status and score.
    pub semantic: SemanticReport,
    /// The prompt without control/invisible characters, with matched spans replaced by
    /// `[FILTERED]`: the text to hand to the model in `flag` mode.
    pub sanitized: String,
    /// Length of the prompt as received, in characters.
    pub original_length: usize,
    /// Length of `sanitized`, in characters.
    pub sanitized_length: usize,
    /// The prompt must not be served (`block` mode and an injection detected).
    pub blocked: bool,
}
