//! Validate a ModelDeployment's spec (pure): turn what the user wrote into what the controller
//! needs, or say exactly which field to fix.

use mooring_crds::model_deployment::ModelDeploymentSpec;
use mooring_crds::{LocalRegistrySpec, MlflowRegistrySpec, SecretKeyRef, SecretRef};
use mooring_registry::{ModelRef, validate_alias};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A spec the user must change; the controller reports it and waits for the change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("spec.model.name must not be empty")]
    EmptyModelName,
    #[error("spec.model: set exactly one of alias (follow it) or version (pin), not both")]
    AliasAndVersion,
    #[error("spec.model: set one of alias (follow it) or version (pin)")]
    NeitherAliasNorVersion,
    #[error("spec.model.alias: {0}")]
    InvalidAlias(String),
    #[error("spec.model.version {0:?}: must be a registry version number, e.g. \"3\"")]
    InvalidVersion(String),
    #[error("spec.registry: set exactly one of mlflow or local, not both")]
    TwoRegistries,
    #[error(
        "spec.registry: set one of mlflow (url) or local (path); other registry types are not supported"
    )]
    UnknownRegistry,
    #[error("spec.registry.mlflow.url {0:?}: must start with http:// or https://")]
    InvalidMlflowUrl(String),
    #[error(
        "spec.registry.mlflow: set at most one of tokenSecretRef (bearer token) or basicAuthSecretRef (username and password), not both"
    )]
    TokenAndBasicAuth,
    #[error("spec.registry.local.path {0:?}: must be an absolute path")]
    InvalidLocalPath(String),
    #[error("spec.replicas {0}: must be 0 or more")]
    NegativeReplicas(i32),
    #[error("spec.rollout.resolveIntervalSeconds {0}: must be at least 5")]
    ResolveIntervalTooShort(i32),
    #[error("spec.rollout.progressDeadlineSeconds {0}: must be at least 10")]
    ProgressDeadlineTooShort(i32),
    #[error("spec.predictionLog.sampleRate {0}: must be between 0 and 1")]
    InvalidSampleRate(f64),
    #[error("spec.predictionLog.sink {0:?}: must start with file:/// or s3://")]
    InvalidSink(String),
}

impl Error {
    /// The condition reason and metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::EmptyModelName | Error::AliasAndVersion | Error::NeitherAliasNorVersion => {
                "InvalidModel"
            }
            Error::InvalidAlias(_) | Error::InvalidVersion(_) => "InvalidModel",
            Error::TwoRegistries | Error::UnknownRegistry => "InvalidRegistry",
            Error::InvalidMlflowUrl(_) | Error::TokenAndBasicAuth | Error::InvalidLocalPath(_) => {
                "InvalidRegistry"
            }
            Error::NegativeReplicas(_)
            | Error::ResolveIntervalTooShort(_)
            | Error::ProgressDeadlineTooShort(_) => "InvalidRollout",
            Error::InvalidSampleRate(_) | Error::InvalidSink(_) => "InvalidPredictionLog",
        }
    }
}

/// What the spec asks to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelTarget {
    /// Follow `alias` of model `name`.
    Alias { name: String, alias: String },
    /// Serve exactly `version`.
    Pinned { name: String, version: String },
}

impl ModelTarget {
    pub fn name(&self) -> &str {
        match self {
            ModelTarget::Alias { name, .. } | ModelTarget::Pinned { name, .. } => name,
        }
    }

    pub fn model_ref(&self) -> ModelRef {
        match self {
            ModelTarget::Alias { name, alias } => ModelRef::alias(name, alias),
            ModelTarget::Pinned { name, version } => ModelRef::version(name, version),
        }
    }
}

/// How the operator and the inference server authenticate to MLflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MlflowAuth {
    /// A bearer token in this key of a Secret.
    Token(SecretKeyRef),
    /// A username and password under the keys `username` and `password` of this Secret.
    Basic(SecretRef),
}

/// The registry the spec names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryTarget {
    Mlflow {
        url: String,
        auth: Option<MlflowAuth>,
    },
    Local {
        path: String,
        persistent_volume_claim: Option<String>,
    },
}

impl RegistryTarget {
    /// The location string the registry crate and the server's `--registry` flag take.
    pub fn location(&self) -> &str {
        match self {
            RegistryTarget::Mlflow { url, .. } => url,
            RegistryTarget::Local { path, .. } => path,
        }
    }
}

/// A spec that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidSpec {
    pub target: ModelTarget,
    pub registry: RegistryTarget,
}

/// Check everything the schema cannot (or an old API server did not) enforce.
pub fn validate(spec: &ModelDeploymentSpec) -> Result<ValidSpec> {
    let model = &spec.model;
    if model.name.trim().is_empty() {
        return Err(Error::EmptyModelName);
    }
    let target = match (&model.alias, &model.version) {
        (Some(_), Some(_)) => return Err(Error::AliasAndVersion),
        (None, None) => return Err(Error::NeitherAliasNorVersion),
        (Some(alias), None) => {
            validate_alias(alias).map_err(|e| Error::InvalidAlias(e.to_string()))?;
            ModelTarget::Alias {
                name: model.name.clone(),
                alias: alias.clone(),
            }
        }
        (None, Some(version)) => {
            // All digits: that is how `name@3` tells a version from an alias everywhere.
            if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::InvalidVersion(version.clone()));
            }
            ModelTarget::Pinned {
                name: model.name.clone(),
                version: version.clone(),
            }
        }
    };
    let registry = match (&spec.registry.mlflow, &spec.registry.local) {
        (Some(_), Some(_)) => return Err(Error::TwoRegistries),
        (None, None) => return Err(Error::UnknownRegistry),
        (
            Some(MlflowRegistrySpec {
                url,
                token_secret_ref,
                basic_auth_secret_ref,
            }),
            None,
        ) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::InvalidMlflowUrl(url.clone()));
            }
            let auth = match (token_secret_ref, basic_auth_secret_ref) {
                (Some(_), Some(_)) => return Err(Error::TokenAndBasicAuth),
                (Some(token), None) => Some(MlflowAuth::Token(token.clone())),
                (None, Some(basic)) => Some(MlflowAuth::Basic(basic.clone())),
                (None, None) => None,
            };
            RegistryTarget::Mlflow {
                url: url.clone(),
                auth,
            }
        }
        (
            None,
            Some(LocalRegistrySpec {
                path,
                persistent_volume_claim,
            }),
        ) => {
            if !path.starts_with('/') {
                return Err(Error::InvalidLocalPath(path.clone()));
            }
            RegistryTarget::Local {
                path: path.clone(),
                persistent_volume_claim: persistent_volume_claim.clone(),
            }
        }
    };
    if spec.replicas < 0 {
        return Err(Error::NegativeReplicas(spec.replicas));
    }
    if spec.rollout.resolve_interval_seconds < 5 {
        return Err(Error::ResolveIntervalTooShort(
            spec.rollout.resolve_interval_seconds,
        ));
    }
    if spec.rollout.progress_deadline_seconds < 10 {
        return Err(Error::ProgressDeadlineTooShort(
            spec.rollout.progress_deadline_seconds,
        ));
    }
    if let Some(log) = &spec.prediction_log {
        if !(0.0..=1.0).contains(&log.sample_rate) {
            return Err(Error::InvalidSampleRate(log.sample_rate));
        }
        if !(log.sink.starts_with("file:///") || log.sink.starts_with("s3://")) {
            return Err(Error::InvalidSink(log.sink.clone()));
        }
    }
    Ok(ValidSpec { target, registry })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::spec_from_yaml;

    #[test]
    fn alias_and_local_registry() {
        let spec = spec_from_yaml(
            "model: {name: iris, alias: production}\nregistry: {local: {path: /models}}",
        );
        let valid = validate(&spec).unwrap();
        assert_eq!(
            valid.target,
            ModelTarget::Alias {
                name: "iris".into(),
                alias: "production".into()
            }
        );
        assert_eq!(valid.registry.location(), "/models");
    }

    #[test]
    fn pinned_version_and_mlflow() {
        let spec = spec_from_yaml(
            "model: {name: iris, version: '3'}\nregistry: {mlflow: {url: 'http://mlflow:5000', tokenSecretRef: {name: t}}}",
        );
        let valid = validate(&spec).unwrap();
        assert_eq!(
            valid.target,
            ModelTarget::Pinned {
                name: "iris".into(),
                version: "3".into()
            }
        );
        let RegistryTarget::Mlflow {
            auth: Some(MlflowAuth::Token(token)),
            ..
        } = valid.registry
        else {
            panic!("mlflow with a token expected: {:?}", valid.registry)
        };
        assert_eq!(token.key, "token");
    }

    #[test]
    fn mlflow_basic_auth() {
        let spec = spec_from_yaml(
            "model: {name: iris, alias: production}\nregistry: {mlflow: {url: 'http://mlflow:5000', basicAuthSecretRef: {name: mlflow-basic}}}",
        );
        assert_eq!(
            validate(&spec).unwrap().registry,
            RegistryTarget::Mlflow {
                url: "http://mlflow:5000".into(),
                auth: Some(MlflowAuth::Basic(SecretRef {
                    name: "mlflow-basic".into()
                })),
            }
        );
    }

    #[test]
    fn token_and_basic_auth_together_are_rejected_naming_both() {
        let spec = spec_from_yaml(
            "model: {name: iris, alias: production}\nregistry: {mlflow: {url: 'http://mlflow:5000', tokenSecretRef: {name: t}, basicAuthSecretRef: {name: b}}}",
        );
        let err = validate(&spec).unwrap_err();
        assert_eq!(err, Error::TokenAndBasicAuth);
        assert_eq!(err.reason(), "InvalidRegistry");
        let message = err.to_string();
        for field in [
            "spec.registry.mlflow",
            "tokenSecretRef",
            "basicAuthSecretRef",
        ] {
            assert!(message.contains(field), "{field} not in {message}");
        }
    }

    #[test]
    fn both_alias_and_version_is_rejected_naming_the_field() {
        let spec = spec_from_yaml(
            "model: {name: iris, alias: production, version: '3'}\nregistry: {local: {path: /m}}",
        );
        let err = validate(&spec).unwrap_err();
        assert_eq!(err, Error::AliasAndVersion);
        assert!(err.to_string().contains("spec.model"));
    }

    #[test]
    fn unknown_registry_type_is_rejected() {
        // An `s3:` registry is not a field of the type: serde drops it, leaving neither backend.
        let spec =
            spec_from_yaml("model: {name: iris, alias: production}\nregistry: {s3: {bucket: b}}");
        assert_eq!(validate(&spec).unwrap_err(), Error::UnknownRegistry);
        let spec = spec_from_yaml(
            "model: {name: iris, alias: p}\nregistry: {local: {path: /m}, mlflow: {url: 'http://x'}}",
        );
        assert_eq!(validate(&spec).unwrap_err(), Error::TwoRegistries);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (
                "model: {name: '', alias: p}\nregistry: {local: {path: /m}}",
                "spec.model.name",
            ),
            (
                "model: {name: i, alias: 'a b'}\nregistry: {local: {path: /m}}",
                "spec.model.alias",
            ),
            (
                "model: {name: i, alias: p}\nregistry: {mlflow: {url: 'mlflow:5000'}}",
                "spec.registry.mlflow.url",
            ),
            (
                "model: {name: i, alias: p}\nregistry: {local: {path: models}}",
                "spec.registry.local.path",
            ),
            (
                "model: {name: i, alias: p}\nregistry: {local: {path: /m}}\nreplicas: -1",
                "spec.replicas",
            ),
            (
                "model: {name: i, alias: p}\nregistry: {local: {path: /m}}\npredictionLog: {sink: 'http://x'}",
                "spec.predictionLog.sink",
            ),
        ];
        for (yaml, field) in cases {
            let err = validate(&spec_from_yaml(yaml)).unwrap_err();
            assert!(err.to_string().contains(field), "{yaml}: {err}");
        }
    }
}
