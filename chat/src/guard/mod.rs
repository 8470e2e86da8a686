//! Prompt-injection guard.
//!
//! [`Guard::analyze`] strips control and invisible characters, matches a set of named
//! patterns (one compiled [`RegexSet`], case-insensitive) against a canonical form of the
//! prompt that undoes spacing and punctuation tricks, and redacts what it found. What
//! happens next depends on [`GuardMode`]: `block` refuses the prompt (HTTP 400 with the
//! analysis), `flag` serves it and reports the analysis, `off` skips pattern matching.
//! The length limit (`--guard-max-prompt-chars`) holds in every mode.
//!
//! ```no_run
//! # use mooring_chat::guard::{Guard, GuardArgs};
//! # fn demo(args: &GuardArgs) -> Result<(), mooring_chat::guard::GuardError> {
//! let guard = Guard::from_args(args)?;
//! let analysis = guard.check("Ignore previous instructions and ...")?; // Err(Blocked) in block mode
//! # Ok(()) }
//! ```

mod normalize;
mod patterns;

pub use patterns::{DEFAULT_PATTERNS, PatternOverride, PatternsFileError, parse_patterns};

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::Serialize;
use std::path::PathBuf;

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
}

impl Default for GuardArgs {
    fn default() -> Self {
        Self {
            mode: GuardMode::Block,
            max_prompt_chars: 16_000,
            patterns_file: None,
        }
    }
}

/// Everything the guard found out about one prompt. Serialised as-is by
/// `/api/v1/generate-secure` and in block-mode 400 bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardAnalysis {
    /// At least one pattern matched (reported in every mode but `off`).
    pub injection_detected: bool,
    /// Names of the patterns that matched, in pattern order.
    pub detected_patterns: Vec<String>,
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
}

impl Guard {
    /// Builds the guard from its flags: defaults plus the patterns file, compiled once.
    pub fn from_args(args: &GuardArgs) -> Result<Self, GuardError> {
        let overrides = match &args.patterns_file {
            Some(path) => patterns::read_patterns_file(path)?,
            None => Vec::new(),
        };
        Self::new(args.mode, args.max_prompt_chars, &overrides)
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
        let names = patterns.into_iter().map(|(n, _)| n).collect();
        Ok(Self {
            mode,
            max_prompt_chars,
            names,
            set,
            each,
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

    /// Analyses a prompt. Never fails; the length limit is checked by [`Guard::check`].
    pub fn analyze(&self, prompt: &str) -> GuardAnalysis {
        let stripped = normalize::strip_invisible(prompt);
        let matched: Vec<usize> = if self.mode == GuardMode::Off {
            Vec::new()
        } else {
            // Patterns run on the canonical form (catches obfuscation) and on the stripped
            // text itself (catches what the canonical form rewrote, e.g. leetspeak look-alikes).
            let canonical = normalize::for_matching(&stripped);
            let mut hits: Vec<usize> = self.set.matches(&canonical).into_iter().collect();
            hits.extend(self.set.matches(&stripped).iter());
            hits.sort_unstable();
            hits.dedup();
            hits
        };
        let mut sanitized = stripped;
        for &index in &matched {
            // Obfuscated forms matched only on the canonical text stay as written here;
            // they are still reported and blocked.
            sanitized = self.each[index]
                .replace_all(&sanitized, REDACTION)
                .into_owned();
        }
        let injection_detected = !matched.is_empty();
        GuardAnalysis {
            injection_detected,
            detected_patterns: matched.iter().map(|&i| self.names[i].clone()).collect(),
            original_length: prompt.chars().count(),
            sanitized_length: sanitized.chars().count(),
            sanitized,
            blocked: injection_detected && self.mode == GuardMode::Block,
        }
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
