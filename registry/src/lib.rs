//! The model registry: where a model's versions and aliases live.
//!
//! Everything that needs to know "which version is `iris-classifier@production` now, and
//! where are its bytes" goes through [`Registry`]: the operator (to pin the version in the
//! pod template), the inference server (to load it) and the `mooring` CLI (to promote).
//! Two backends implement it: a local directory ([`local::LocalRegistry`]) and MLflow
//! ([`mlflow::MlflowRegistry`]); [`connect`] picks one from a location string.
#![forbid(unsafe_code)]

mod cache;
mod config;
mod digest;
pub mod local;
pub mod mlflow;
mod model_ref;
mod signature;
pub mod time;

#[cfg(feature = "clap")]
pub use config::CredentialArgs;
pub use config::{DEFAULT_MAX_RETRIES, RegistryConfig, connect};
pub use digest::Sha256Sums;
pub use model_ref::{ModelRef, Selector, validate_alias};
pub use signature::{Signature, TensorSpec};

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// File names inside a model version.
pub const MODEL_FILE: &str = "model.onnx";
pub const SIGNATURE_FILE: &str = "signature.json";
pub const REFERENCE_FILE: &str = "reference.csv";
/// `sha256sum -c` compatible digests of every file of a version.
pub const SHA256SUMS_FILE: &str = "sha256sums";
/// Optional metadata of a version: description, created_at, metrics, params, tags.
pub const VERSION_META_FILE: &str = "version.json";

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
    pub(crate) fn corrupt(path: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.to_string(),
            reason: reason.into(),
        }
    }
    pub(crate) fn invalid_arg(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid model reference {input:?}: {reason}")]
    InvalidRef { input: String, reason: String },
    #[error("model {name:?} not found in the registry")]
    ModelNotFound { name: String },
    #[error("model {name:?} has no alias {alias:?} (known aliases: {known})")]
    AliasNotFound {
        name: String,
        alias: String,
        known: String,
    },
    #[error("model {name:?} has no version {version:?}")]
    VersionNotFound { name: String, version: String },
    #[error("model {name:?} version {version} is not ready to serve (status {status})")]
    VersionNotReady {
        name: String,
        version: String,
        status: String,
    },
    #[error("digest mismatch for {file}: expected sha256 {expected}, got {actual}")]
    DigestMismatch {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("invalid signature for {name:?} version {version}: {reason}")]
    InvalidSignature {
        name: String,
        version: String,
        reason: String,
    },
    #[error("registry unreachable: {0}")]
    Unreachable(String),
    #[error("registry call {call} failed: {message}")]
    Api {
        call: String,
        status: Option<u16>,
        message: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Registry content that is not what Mooring expects (a malformed `aliases.json`, a
    /// missing or malformed `sha256sums`, a model directory without `model.onnx`).
    #[error("invalid registry data at {path}: {reason}")]
    Corrupt { path: String, reason: String },
    /// A bad argument or setting from the caller (an alias name, a registry location).
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
}

impl Error {
    /// True when retrying later may succeed (network trouble, registry 5xx/429); false when
    /// the request itself is wrong and will stay wrong until the user changes something.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable(_) => true,
            Error::Api { status, .. } => matches!(status, None | Some(429) | Some(500..=599)),
            Error::Io { .. } => true,
            _ => false,
        }
    }

    /// A short, stable label for metrics and condition reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidRef { .. } => "InvalidModelRef",
            Error::ModelNotFound { .. } => "ModelNotFound",
            Error::AliasNotFound { .. } => "AliasNotFound",
            Error::VersionNotFound { .. } => "VersionNotFound",
            Error::VersionNotReady { .. } => "VersionNotReady",
            Error::DigestMismatch { .. } => "DigestMismatch",
            Error::InvalidSignature { .. } => "InvalidSignature",
            Error::Unreachable(_) => "RegistryUnreachable",
            Error::Api { .. } => "RegistryApiError",
            Error::Io { .. } => "IoError",
            Error::Corrupt { .. } => "RegistryDataInvalid",
            Error::InvalidArgument { .. } => "InvalidArgument",
        }
    }
}

/// A registered model version, as the registry describes it (no bytes fetched yet).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    /// Where the artifacts live: `file:///…`, `mlflow-artifacts:/…`, `models:/…`, `s3://…`.
    pub source: String,
    /// Registry status; only `READY` versions are served.
    pub status: String,
    pub run_id: Option<String>,
    /// Creation time, milliseconds since the Unix epoch, when known.
    pub created_at_ms: Option<i64>,
    pub description: Option<String>,
    pub aliases: Vec<String>,
    pub tags: BTreeMap<String, String>,
    /// Metrics recorded with the version (e.g. accuracy), when the registry has them.
    pub metrics: BTreeMap<String, f64>,
}

impl ModelVersion {
    pub fn is_ready(&self) -> bool {
        self.status.eq_ignore_ascii_case("READY")
    }

    /// The error to return when this version is asked to be served but is not ready.
    pub fn not_ready_error(&self) -> Error {
        Error::VersionNotReady {
            name: self.name.clone(),
            version: self.version.clone(),
            status: self.status.clone(),
        }
    }
}

/// A registered model with its versions and aliases.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegisteredModel {
    pub name: String,
    pub description: Option<String>,
    /// alias → version
    pub aliases: BTreeMap<String, String>,
    pub versions: Vec<ModelVersion>,
}

/// A version whose artifacts are in a local directory, digest verified.
#[derive(Clone, Debug)]
pub struct FetchedModel {
    pub version: ModelVersion,
    /// Directory holding `model.onnx`, `signature.json` and, when present, `reference.csv`.
    pub dir: PathBuf,
    /// `sha256:<hex>` of `model.onnx`: the identity of what is served.
    pub digest: String,
    pub signature: Signature,
}

impl FetchedModel {
    pub fn model_path(&self) -> PathBuf {
        self.dir.join(MODEL_FILE)
    }
    pub fn reference_path(&self) -> Option<PathBuf> {
        let p = self.dir.join(REFERENCE_FILE);
        p.exists().then_some(p)
    }
}

/// A fetched version holding a GGUF language model (the chat service's local backend)
/// rather than an ONNX model: no signature.
#[derive(Clone, Debug)]
pub struct FetchedGguf {
    pub version: ModelVersion,
    /// The digest-verified `.gguf` file in the cache.
    pub path: PathBuf,
    /// `sha256:<hex>` of the GGUF file.
    pub digest: String,
}

/// File name ending of GGUF models.
pub const GGUF_EXTENSION: &str = ".gguf";

/// The operations Mooring needs from a model registry.
#[async_trait]
pub trait Registry: Send + Sync {
    /// A human-readable location, for logs and errors (`models/`, `http://mlflow:5000`).
    fn location(&self) -> String;

    /// Which version does this reference name now? Cheap: no artifacts are fetched, so the
    /// operator can call it on every resolve interval.
    async fn resolve(&self, model: &ModelRef) -> Result<ModelVersion>;

    /// Copy a version's artifacts into `cache_dir/<name>/<version>/` (reusing a complete,
    /// verified copy), check their sha256 and parse the signature. Refuses versions that are
    /// not `READY`.
    async fn fetch(
        &self,
        version: &ModelVersion,
        cache_dir: &std::path::Path,
    ) -> Result<FetchedModel>;

    /// Copy a version holding one `.gguf` file into `cache_dir/<name>/<version>/` (reusing a
    /// complete, verified copy) and check every file's sha256. Refuses versions that are not
    /// `READY`, and versions without exactly one `.gguf` file.
    async fn fetch_gguf(
        &self,
        version: &ModelVersion,
        _cache_dir: &std::path::Path,
    ) -> Result<FetchedGguf> {
        Err(Error::invalid_arg(
            "registry",
            format!(
                "{} cannot serve GGUF versions yet (model {} version {}): use a local registry",
                self.location(),
                version.name,
                version.version
            ),
        ))
    }

    /// All registered models with their versions and aliases.
    async fn list_models(&self) -> Result<Vec<RegisteredModel>>;

    /// Point `alias` at `version` (promotion). The version must exist.
    async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()>;

    /// Remove an alias (demotion). Removing an alias that does not exist is an error.
    async fn delete_alias(&self, name: &str, alias: &str) -> Result<()>;

    /// Tag a version (e.g. who promoted it). Registries without version tags (the local
    /// directory) record nothing and return `Ok(false)`; `Ok(true)` when the tag was set.
    async fn set_version_tag(
        &self,
        _name: &str,
        _version: &str,
        _key: &str,
        _value: &str,
    ) -> Result<bool> {
        Ok(false)
    }

    /// Register the model directory `dir` (model.onnx, signature.json, optional reference.csv)
    /// as a new version of `name`, creating the model if needed; returns the new version.
    async fn register(&self, name: &str, dir: &std::path::Path) -> Result<ModelVersion>;
}
