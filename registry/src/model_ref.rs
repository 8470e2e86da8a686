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
        Self { name: name.into(), selector: Selector::Alias(alias.into()) }
    }
    pub fn version(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self { name: name.into(), selector: Selector::Version(version.into()) }
    }
}

impl FromStr for ModelRef {
    type Err = Error;

    /// `iris@production` follows the alias `production`; `iris@3` (all digits) pins version 3,
    /// as in MLflow, where version numbers are integers and aliases may not be.
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidRef { input: s.to_string(), reason: reason.to_string() };
        let (name, sel) = s.split_once('@').ok_or_else(|| invalid("expected NAME@ALIAS or NAME@VERSION"))?;
        if name.is_empty() {
            return Err(invalid("the model name is empty"));
        }
        if sel.is_empty() {
            return Err(invalid("nothing after '@': give an alias or a version"));
        }
        if sel.contains('@') || name.contains('/') {
            return Err(invalid("a model name may not contain '/' and only one '@' is allowed"));
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
