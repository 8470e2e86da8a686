use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// `name@alias` or `name@<version>`: which version of a registered model is meant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelRef {
    pub name: String,
    pub selector: Selector,
}

/// Follow an alias, or pin a version.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Selector {
    Alias(String),
    Version(String),
}

impl ModelRef {
    pub fn alias(name: impl Into<String>, alias: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            selector: Selector::Alias(alias.into()),
        }
    }
    pub fn version(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            selector: Selector::Version(version.into()),
        }
    }
}

impl FromStr for ModelRef {
    type Err = Error;

    /// `iris@production` follows the alias `production`; `iris@3` (all digits) pins version 3,
    /// as in MLflow, where version numbers are integers and aliases may not be.
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidRef {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let (name, sel) = s
            .split_once('@')
            .ok_or_else(|| invalid("expected NAME@ALIAS or NAME@VERSION"))?;
        if name.is_empty() {
            return Err(invalid("the model name is empty"));
        }
        if sel.is_empty() {
            return Err(invalid("nothing after '@': give an alias or a version"));
        }
        if sel.contains('@') || name.contains('/') {
            return Err(invalid(
                "a model name may not contain '/' and only one '@' is allowed",
            ));
        }
        Ok(if sel.bytes().all(|b| b.is_ascii_digit()) {
            ModelRef::version(name, sel)
        } else {
            ModelRef::alias(name, sel)
        })
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.selector {
            Selector::Alias(a) => write!(f, "{}@{}", self.name, a),
            Selector::Version(v) => write!(f, "{}@{}", self.name, v),
        }
    }
}

/// Alias names follow MLflow's rules, so an alias that works on one backend works on the
/// other: letters, digits, `_` and `-`, not all digits (that would read as a version in
/// `name@3`), not `latest` and not `v<digits>` (MLflow reserves both).
pub fn validate_alias(alias: &str) -> Result<(), Error> {
    let bad = |reason: &str| Error::InvalidArgument {
        field: "alias".into(),
        reason: format!("{alias:?} {reason}"),
    };
    if alias.is_empty() || alias.len() > 255 {
        return Err(bad("must be 1 to 255 characters long"));
    }
    if !alias
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(bad("may only contain letters, digits, '_' and '-'"));
    }
    if alias.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(
            "is all digits, which means a version number in NAME@VERSION",
        ));
    }
    let lower = alias.to_ascii_lowercase();
    if lower == "latest"
        || (lower.len() > 1
            && lower.starts_with('v')
            && lower[1..].bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad("is reserved by MLflow (latest, v<number>)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_alias_and_version() {
        assert_eq!(
            "iris@production".parse::<ModelRef>().unwrap(),
            ModelRef::alias("iris", "production")
        );
        assert_eq!(
            "iris@3".parse::<ModelRef>().unwrap(),
            ModelRef::version("iris", "3")
        );
        assert_eq!(
            "iris-classifier@v2x".parse::<ModelRef>().unwrap(),
            ModelRef::alias("iris-classifier", "v2x")
        );
    }

    #[test]
    fn display_round_trips() {
        for s in ["iris@production", "iris@12"] {
            assert_eq!(s.parse::<ModelRef>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_malformed_references_with_a_reason() {
        for (input, reason) in [
            ("iris", "expected NAME@ALIAS"),
            ("@prod", "name is empty"),
            ("iris@", "nothing after '@'"),
            ("iris@a@b", "only one '@'"),
            ("a/b@1", "may not contain '/'"),
        ] {
            let err = input.parse::<ModelRef>().unwrap_err();
            assert!(
                matches!(&err, Error::InvalidRef { input: i, .. } if i == input),
                "{input}: {err}"
            );
            assert!(err.to_string().contains(reason), "{input}: {err}");
        }
    }

    #[test]
    fn alias_rules() {
        for ok in ["production", "challenger", "canary-2", "a_b", "v1x"] {
            validate_alias(ok).unwrap();
        }
        for bad in ["", "3", "latest", "v2", "V10", "prod uction", "a/b", "é"] {
            let err = validate_alias(bad).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid alias"),
                "{bad:?}: {err}"
            );
        }
    }
}
