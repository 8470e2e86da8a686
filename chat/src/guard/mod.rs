//! Prompt-injection guard.
//!
//! [`Guard::analyze`] runs cheap layers, each reported by name in
//! [`GuardAnalysis::detections`] (and in `mooring_chat_guard_detections_total{layer,action}`):
//!
//! 1. **normalisation** (no detection of its own): control and invisible characters stripped,
//!    Unicode NFKC, confusable skeletons of mixed-script words, leetspeak and spacing tricks
//!    undone, base64 payloads decoded ([`normalize::MatchForms`]);
//! 2. **`pattern`**: named phrasings of known attacks in English and a dozen other languages
//!    (one compiled [`RegexSet`], case-insensitive) over those forms;
//! 3. **`markup`**: chat-template tokens and role markup (`<|im_start|>`, `</user><system>`,
//!    `System:` lines) in user content;
//! 4. **`decoded`**: a pattern that matched only inside a decoded base64 payload;
//! 5. **`semantic`**: nearest-neighbour similarity with a corpus of attack exemplars in the
//!    MiniLM embedding space ([`SemanticLayer`]), when an embedding model is configured; without
//!    one the other layers still run and [`SemanticReport::status`] says `unavailable`.
//!
//! What happens next depends on [`GuardMode`]: `block` refuses the prompt (HTTP 400 with the
//! analysis), `flag` serves it and reports the analysis, `off` skips detection.
//! The length limit (`--guard-max-prompt-chars`) holds in every mode.
//!
//! ```no_run
//! # use mooring_chat::guard::{Guard, GuardArgs};
//! # fn demo(args: &GuardArgs) -> Result<(), mooring_chat::guard::GuardError> {
//! let guard = Guard::from_args(args)?;
//! let analysis = guard.check("Ignore previous instructions and ...")?; // Err(Blocked) in block mode
//! # Ok(()) }
//! ```

mod analysis;
mod normalize;
mod patterns;
mod semantic;

pub use analysis::{Detection, GuardAnalysis, Layer, SemanticReport, SemanticStatus};

pub use normalize::{MatchForms, strip_invisible};
pub use patterns::{
    DEFAULT_PATTERNS, MARKUP_PATTERNS, PatternOverride, PatternsFileError, parse_patterns,
};
pub use semantic::{
    DEFAULT_SEMANTIC_THRESHOLD, EXEMPLARS, Exemplar, SemanticLayer, SemanticMatch, escape, unescape,
};

use crate::cache::{EmbedError, Embedder, Switch};
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

/// What the guard does when a pattern matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardMode {
    /// Refuse the prompt: the caller answers HTTP 400 with the analysis.
    Block,
    /// Serve the prompt, report the analysis (header/field and a metric).
    Flag,
    /// No pattern matching (control characters are still stripped, the length limit holds).
    Off,
}

/// Command-line flags of the guard.
#[derive(Debug, Clone, clap::Args)]
pub struct GuardArgs {
    /// What to do with a prompt that matches an injection pattern.
    #[arg(
        long = "guard-mode",
        env = "MOORING_GUARD_MODE",
        value_enum,
        default_value = "block"
    )]
    pub mode: GuardMode,
    /// Longest prompt accepted, in characters (after control characters are stripped); 0 = no limit.
    #[arg(
        long = "guard-max-prompt-chars",
        env = "MOORING_GUARD_MAX_PROMPT_CHARS",
        default_value_t = 16_000
    )]
    pub max_prompt_chars: usize,
    /// File of extra patterns, one `name = regex` per line (`#` comments). A name that
    /// matches a default pattern replaces it; `name = off` switches a default off.
    #[arg(long = "guard-patterns-file", env = "MOORING_GUARD_PATTERNS_FILE")]
    pub patterns_file: Option<PathBuf>,
    /// Compare each prompt with a corpus of attack exemplars in the embedding space of the
    /// model given by --embedding-model-dir (loaded once, shared with the semantic cache).
    /// Without that flag the other layers still run and the analysis says `unavailable`.
    #[arg(
        long = "guard-semantic",
        env = "MOORING_GUARD_SEMANTIC",
        value_enum,
        default_value = "on"
    )]
    pub semantic_layer: Switch,
    /// Cosine similarity with the nearest attack exemplar at or above which the semantic
    /// layer flags a prompt (chosen on the development half of bench/guard/prompts.tsv).
    #[arg(long = "guard-semantic-threshold", env = "MOORING_GUARD_SEMANTIC_THRESHOLD", default_value_t = DEFAULT_SEMANTIC_THRESHOLD)]
    pub semantic_threshold: f32,
}

impl Default for GuardArgs {
    /// The flags' defaults (from their `default_value`s, not the environment).
    fn default() -> Self {
        crate::config::clap_defaults()
    }
}

/// Why the guard refused a prompt or could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The prompt is longer than `--guard-max-prompt-chars`.
    #[error("prompt: {length} characters is more than the limit of {limit}")]
    PromptTooLong { length: usize, limit: usize },
    /// Block mode and an injection pattern matched.
    #[error("prompt: refused by the prompt-injection guard (patterns: {})", .0.detected_patterns.join(", "))]
    Blocked(Box<GuardAnalysis>),
    #[error(transparent)]
    PatternsFile(#[from] PatternsFileError),
    #[error("guard pattern {name}: {source}")]
    BadPattern {
        name: String,
        source: Box<regex::Error>,
    },
    #[error("guard-semantic-threshold: {0} is not in (0, 1]")]
    BadThreshold(f32),
    #[error("guard: embedding the attack exemplars: {0}")]
    Exemplars(#[from] EmbedError),
    #[error("guard: the embedding thread failed: {0}")]
    EmbedderPanicked(String),
}

/// The text put where a matched span was.
const REDACTION: &str = "[FILTERED]";

/// A compiled guard; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Guard {
    mode: GuardMode,
    max_prompt_chars: usize,
    names: Vec<String>,
    /// One pass over the text tells which patterns match.
    set: RegexSet,
    /// The same patterns one by one, used only to redact spans of those that matched.
    each: Vec<Regex>,
    /// The layer each pattern reports as.
    layers: Vec<Layer>,
    semantic: Option<SemanticLayer>,
    /// What the analysis says when `semantic` is `None`.
    semantic_missing: SemanticStatus,
}

impl Guard {
    /// Builds the guard from its flags: defaults plus the patterns file, compiled once.
    /// Without an embedding model: with `--guard-semantic on` the analysis reports the
    /// semantic layer `unavailable`. See [`Guard::with_embedder`].
    pub fn from_args(args: &GuardArgs) -> Result<Self, GuardError> {
        Self::with_embedder(args, None)
    }

    /// Builds the guard from its flags and, when `--guard-semantic on`, the embedding model
    /// (blocking: embeds the exemplar corpus, a second or two; call it at start-up off the
    /// runtime's workers).
    pub fn with_embedder(
        args: &GuardArgs,
        embedder: Option<Arc<dyn Embedder>>,
    ) -> Result<Self, GuardError> {
        let overrides = match &args.patterns_file {
            Some(path) => patterns::read_patterns_file(path)?,
            None => Vec::new(),
        };
        let mut guard = Self::new(args.mode, args.max_prompt_chars, &overrides)?;
        let threshold = args.semantic_threshold;
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(GuardError::BadThreshold(threshold));
        }
        if args.semantic_layer == Switch::On && args.mode != GuardMode::Off {
            match embedder {
                Some(embedder) => {
                    let exemplars = SemanticLayer::carried_exemplars();
                    guard =
                        guard.with_semantic(SemanticLayer::new(embedder, exemplars, threshold)?);
                }
                None => guard.semantic_missing = SemanticStatus::Unavailable,
            }
        }
        Ok(guard)
    }

    /// Adds a semantic layer (tests and the benchmark use their own exemplars).
    pub fn with_semantic(mut self, layer: SemanticLayer) -> Self {
        self.semantic = Some(layer);
        self
    }

    /// The semantic layer, when configured.
    pub fn semantic_layer(&self) -> Option<&SemanticLayer> {
        self.semantic.as_ref()
    }

    /// Builds a guard from a mode, a length limit (0 = none) and pattern overrides.
    pub fn new(
        mode: GuardMode,
        max_prompt_chars: usize,
        overrides: &[PatternOverride],
    ) -> Result<Self, GuardError> {
        let patterns = patterns::effective_patterns(overrides);
        let mut each = Vec::with_capacity(patterns.len());
        for (name, source) in &patterns {
            let regex = RegexBuilder::new(source)
                .case_insensitive(true)
                .build()
                .map_err(|e| GuardError::BadPattern {
                    name: name.clone(),
                    source: Box::new(e),
                })?;
            each.push(regex);
        }
        let set = RegexSetBuilder::new(patterns.iter().map(|(_, r)| r))
            .case_insensitive(true)
            .build()
            .map_err(|e| GuardError::BadPattern {
                name: "(set)".into(),
                source: Box::new(e),
            })?;
        let layers = patterns
            .iter()
            .map(|(name, _)| {
                if MARKUP_PATTERNS.contains(&name.as_str()) {
                    Layer::Markup
                } else {
                    Layer::Pattern
                }
            })
            .collect();
        let names = patterns.into_iter().map(|(n, _)| n).collect();
        Ok(Self {
            mode,
            max_prompt_chars,
            names,
            set,
            each,
            layers,
            semantic: None,
            semantic_missing: SemanticStatus::Off,
        })
    }

    /// The configured mode.
    pub fn mode(&self) -> GuardMode {
        self.mode
    }

    /// The configured length limit in characters (0 = none).
    pub fn max_prompt_chars(&self) -> usize {
        self.max_prompt_chars
    }

    /// Names of the active patterns, in the order `detected_patterns` uses.
    pub fn pattern_names(&self) -> &[String] {
        &self.names
    }

    /// Analyses a prompt. Never fails (an embedding error is reported in
    /// [`GuardAnalysis::semantic`]); the length limit is checked by [`Guard::check`].
    /// With a semantic layer this embeds the prompt: blocking, see [`Guard::check_async`].
    pub fn analyze(&self, prompt: &str) -> GuardAnalysis {
        let stripped = normalize::strip_invisible(prompt);
        let mut detections = Vec::new();
        let mut matched: Vec<usize> = Vec::new();
        let mut semantic = SemanticReport {
            status: SemanticStatus::Off,
            score: None,
            threshold: None,
        };
        if self.mode != GuardMode::Off {
            let forms = MatchForms::of(&stripped);
            // Patterns run on the stripped text itself, its NFKC form (other languages) and
            // its canonical form (obfuscation undone); then on decoded payloads.
            let mut hits: Vec<usize> = self.set.matches(&stripped).into_iter().collect();
            hits.extend(self.set.matches(&forms.plain).iter());
            hits.extend(self.set.matches(&forms.canonical).iter());
            if let Some(with_l) = &forms.canonical_with_l {
                hits.extend(self.set.matches(with_l).iter());
            }
            hits.sort_unstable();
            hits.dedup();
            let mut decoded_hits: Vec<usize> = forms
                .decoded
                .iter()
                .flat_map(|text| self.set.matches(text).into_iter())
                .filter(|i| !hits.contains(i))
                .collect();
            decoded_hits.sort_unstable();
            decoded_hits.dedup();
            for &i in &hits {
                detections.push(Detection {
                    layer: self.layers[i],
                    name: self.names[i].clone(),
                    score: None,
                });
            }
            for &i in &decoded_hits {
                detections.push(Detection {
                    layer: Layer::Decoded,
                    name: self.names[i].clone(),
                    score: None,
                });
            }
            matched = hits.into_iter().chain(decoded_hits).collect();
            semantic = self.semantic_report(&forms, &mut detections);
        }
        let mut sanitized = stripped;
        for &index in &matched {
            // Obfuscated forms matched only on the canonical text stay as written here;
            // they are still reported and blocked.
            sanitized = self.each[index]
                .replace_all(&sanitized, REDACTION)
                .into_owned();
        }
        let injection_detected = !detections.is_empty();
        let mut detected_patterns: Vec<String> =
            matched.iter().map(|&i| self.names[i].clone()).collect();
        if detections.iter().any(|d| d.layer == Layer::Semantic) {
            detected_patterns.push("semantic".to_owned());
        }
        GuardAnalysis {
            injection_detected,
            detected_patterns,
            detections,
            semantic,
            original_length: prompt.chars().count(),
            sanitized_length: sanitized.chars().count(),
            sanitized,
            blocked: injection_detected && self.mode == GuardMode::Block,
        }
    }

    fn semantic_report(
        &self,
        forms: &MatchForms,
        detections: &mut Vec<Detection>,
    ) -> SemanticReport {
        let Some(layer) = &self.semantic else {
            return SemanticReport {
                status: self.semantic_missing,
                score: None,
                threshold: None,
            };
        };
        let threshold = Some(layer.threshold());
        match layer.nearest(&forms.embeddable, &forms.decoded_text) {
            Ok(found) => {
                let score = found.map(|m| m.score);
                if let Some(score) = score
                    && score >= layer.threshold()
                {
                    detections.push(Detection {
                        layer: Layer::Semantic,
                        name: "nearest_exemplar".to_owned(),
                        score: Some(score),
                    });
                }
                SemanticReport {
                    status: SemanticStatus::On,
                    score,
                    threshold,
                }
            }
            Err(error) => {
                tracing::warn!(%error, "guard: the semantic layer could not embed a prompt");
                SemanticReport {
                    status: SemanticStatus::Failed,
                    score: None,
                    threshold,
                }
            }
        }
    }

    /// [`Guard::check`] for async callers: with a semantic layer the whole check runs on the
    /// blocking pool (embedding takes milliseconds of CPU), so the runtime's workers never
    /// wait on the model; without one it runs inline (patterns take microseconds).
    pub async fn check_async(self: &Arc<Self>, prompt: &str) -> Result<GuardAnalysis, GuardError> {
        if self.semantic.is_none() {
            return self.check(prompt);
        }
        let guard = Arc::clone(self);
        let prompt = prompt.to_owned();
        tokio::task::spawn_blocking(move || guard.check(&prompt))
            .await
            .map_err(|e| GuardError::EmbedderPanicked(e.to_string()))?
    }

    /// Analyses a prompt and applies the policy: `Err(PromptTooLong)` over the length limit
    /// (any mode), `Err(Blocked)` in block mode when a pattern matched, else the analysis.
    pub fn check(&self, prompt: &str) -> Result<GuardAnalysis, GuardError> {
        // Checked first so an oversized prompt costs no pattern matching.
        let length = stripped_len(prompt);
        if self.max_prompt_chars > 0 && length > self.max_prompt_chars {
            return Err(GuardError::PromptTooLong {
                length,
                limit: self.max_prompt_chars,
            });
        }
        let analysis = self.analyze(prompt);
        if analysis.blocked {
            return Err(GuardError::Blocked(Box::new(analysis)));
        }
        Ok(analysis)
    }
}

/// Length in characters after control/invisible characters are stripped: padding a prompt
/// with zero-width characters must not count against (or around) the limit.
fn stripped_len(prompt: &str) -> usize {
    normalize::strip_invisible(prompt).chars().count()
}
