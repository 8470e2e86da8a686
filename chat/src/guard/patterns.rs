//! The default injection patterns and the patterns-file format that adds to or overrides them.
//!
//! Patterns run case-insensitively against the canonical text of
//! [`super::normalize::for_matching`]: lower case, word separators collapsed to one space,
//! spaced-out letters joined, newlines kept. So `\s+` between words is enough.
//!
//! Each pattern is deliberately tied to its *intent* (an instruction-override verb plus an
//! instruction noun, a jailbreak persona plus "no rules") rather than to single words, so
//! ordinary questions about ignoring whitespace or about operating systems pass.

use std::path::Path;

/// Named default patterns: `(name, regex)`. The name is what `detected_patterns` reports.
pub const DEFAULT_PATTERNS: &[(&str, &str)] = &[
    (
        "ignore_previous_instructions",
        r"\b(ignore|disregard|forget|skip|override|bypass|neglect|drop)\s+(all\s+|any\s+|the\s+|your\s+|my\s+|of\s+|these\s+|those\s+|every\s+)*(previous|prior|above|earlier|preceding|former|initial|original|system|developer|existing|old)\s+(\w+\s+)?(instructions?|prompts?|rules|directions?|guidelines|directives?|context|messages?|commands?|constraints|programming)\b",
    ),
    (
        "ignore_everything_above",
        r"\b(ignore|disregard|forget)\s+(everything|all|anything)\s+(above|before|prior|previously|earlier|you\s+(were|have\s+been)\s+told)\b",
    ),
    (
        "new_instructions",
        r"\b(your\s+)?(new|updated|real|actual)\s+(system\s+)?instructions\s*(are|:)",
    ),
    (
        "dan_jailbreak",
        r"\bdo\s+anything\s+now\b|\b(you\s+are|you're|act\s+as|become|enable|activate|enter)\s+(now\s+)?(an?\s+)?dan\b|\bdan\s+mode\b",
    ),
    (
        "jailbreak_mode",
        r"\b(jailbreak|jailbroken|god|unrestricted|unfiltered|uncensored|evil|developer)\s+mode\s+(enabled|activated)\b|\b(enable|activate|enter|switch\s+to|turn\s+on)\s+(jailbreak|jailbroken|god|unrestricted|unfiltered|uncensored|evil)\s+mode\b",
    ),
    (
        "roleplay_without_rules",
        r"\b(pretend|imagine|roleplay|role\s+play|act\s+as\s+if|behave\s+as\s+if)\s+(that\s+)?(you\s+are|you're|you\s+were|to\s+be|as)\b[^.!?\n]{0,80}?(\b(no|without|free\s+(of|from)|not\s+bound\s+by|ignores?|beyond)\s+(any\s+|all\s+)?(\w+\s+)?(restrictions|rules|limits|limitations|filters|guidelines|ethics|morals|censorship|polic(y|ies)|boundaries)\b|\b(unrestricted|unfiltered|uncensored|jailbroken)\b|\bevil\s+(ai|assistant|bot|model)\b)",
    ),
    (
        "role_override",
        r"\byou\s+are\s+(now|no\s+longer)\s+(an?\s+)?(dan|unrestricted|unfiltered|uncensored|jailbroken|evil|free|an\s+ai|ai|assistant|language\s+model|chatbot|bound|restricted|limited)\b",
    ),
    (
        "system_prompt_extraction",
        r"\b(reveal|show|print|display|output|repeat|leak|dump|expose|recite|tell\s+me|give\s+me|share|what\s+(is|are|was|were))\b[^.?!\n]{0,40}\b(your|the|its)\s+(\w+\s+)?(system\s+prompt|system\s+message|initial\s+prompt|hidden\s+(prompt|instructions)|secret\s+instructions|original\s+instructions|pre\s*prompt)\b",
    ),
    (
        "repeat_prompt_verbatim",
        r"\b(repeat|print|output|recite|copy|echo|write\s+out|spell\s+out)\s+(back\s+)?(everything|all|the\s+text|the\s+words|your\s+(\w+\s+)?(instructions|prompt)|the\s+(\w+\s+)?(instructions|prompt))\s+(above|before|verbatim|word\s+for\s+word|so\s+far)\b",
    ),
    (
        "chat_template_tokens",
        r"<\|\s*(im[\s_]*start|im[\s_]*end|im[\s_]*sep|system|user|assistant|endoftext|end[\s_]*of[\s_]*text|begin[\s_]*of[\s_]*text|start[\s_]*header[\s_]*id|end[\s_]*header[\s_]*id|eot[\s_]*id)\s*\|>",
    ),
    (
        "instruction_delimiters",
        r"\[\s*/?\s*inst\s*\]|<<\s*/?\s*sys\s*>>",
    ),
    (
        "markdown_role_header",
        r"(?m)^\s*#{2,}\s*(system|instructions?|developer|new\s+instructions?)\s*(prompt|message)?\s*(:|$)",
    ),
];

/// What went wrong reading a patterns file.
#[derive(Debug, thiserror::Error)]
pub enum PatternsFileError {
    #[error("guard patterns file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "guard patterns file {path} line {line}: expected `name = regex` (name of letters, digits, `_`)"
    )]
    Syntax { path: String, line: usize },
}

/// One change from a patterns file: a pattern to add or replace, or a default to switch off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternOverride {
    Set { name: String, regex: String },
    Disable { name: String },
}

/// Reads a patterns file: one `name = regex` per line; `#` starts a comment line; a name
/// that matches a default replaces it; `name = off` switches a default off.
pub fn read_patterns_file(path: &Path) -> Result<Vec<PatternOverride>, PatternsFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| PatternsFileError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_patterns(&text).map_err(|line| PatternsFileError::Syntax { path: shown, line })
}

/// Parses the patterns-file text; the error is the 1-based line number.
pub fn parse_patterns(text: &str) -> Result<Vec<PatternOverride>, usize> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, regex) = line.split_once('=').ok_or(index + 1)?;
        let (name, regex) = (name.trim(), regex.trim());
        let name_ok =
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok || regex.is_empty() {
            return Err(index + 1);
        }
        out.push(if regex == "off" {
            PatternOverride::Disable {
                name: name.to_owned(),
            }
        } else {
            PatternOverride::Set {
                name: name.to_owned(),
                regex: regex.to_owned(),
            }
        });
    }
    Ok(out)
}

/// The defaults with the overrides applied, in a stable order (defaults first, then additions).
pub fn effective_patterns(overrides: &[PatternOverride]) -> Vec<(String, String)> {
    let mut patterns: Vec<(String, String)> = DEFAULT_PATTERNS
        .iter()
        .map(|(n, r)| ((*n).to_owned(), (*r).to_owned()))
        .collect();
    for change in overrides {
        match change {
            PatternOverride::Set { name, regex } => {
                match patterns.iter_mut().find(|(n, _)| n == name) {
                    Some(existing) => existing.1 = regex.clone(),
                    None => patterns.push((name.clone(), regex.clone())),
                }
            }
            PatternOverride::Disable { name } => patterns.retain(|(n, _)| n != name),
        }
    }
    patterns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_set_disable_comments_and_reports_bad_lines() {
        let text = "# mine\n\nleak_key = api\\s+key\nchat_template_tokens = off\n";
        assert_eq!(
            parse_patterns(text).unwrap(),
            vec![
                PatternOverride::Set {
                    name: "leak_key".into(),
                    regex: "api\\s+key".into()
                },
                PatternOverride::Disable {
                    name: "chat_template_tokens".into()
                },
            ]
        );
        assert_eq!(parse_patterns("ok = a\nno equals sign\n"), Err(2));
        assert_eq!(parse_patterns("bad name = a\n"), Err(1));
        assert_eq!(parse_patterns("empty =\n"), Err(1));
    }

    #[test]
    fn overrides_replace_disable_and_add() {
        let patterns = effective_patterns(&[
            PatternOverride::Set {
                name: "dan_jailbreak".into(),
                regex: "x".into(),
            },
            PatternOverride::Disable {
                name: "markdown_role_header".into(),
            },
            PatternOverride::Set {
                name: "extra".into(),
                regex: "y".into(),
            },
        ]);
        assert_eq!(patterns.len(), DEFAULT_PATTERNS.len());
        assert!(
            patterns
                .iter()
                .any(|(n, r)| n == "dan_jailbreak" && r == "x")
        );
        assert!(!patterns.iter().any(|(n, _)| n == "markdown_role_header"));
        assert_eq!(
            patterns.last().unwrap(),
            &("extra".to_owned(), "y".to_owned())
        );
    }
}
