//! Validate a ModelDeployment's spec (pure): turn what the user wrote into what the controller
//! needs, or say exactly which field to fix.

use mooring_crds::ModelDeployment;
use mooring_crds::model_deployment::ModelDeploymentSpec;
use mooring_crds::{LocalRegistrySpec, MlflowRegistrySpec, SecretKeyRef, SecretRef};
use mooring_registry::{ModelRef, validate_alias};

use super::children;

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
    #[error(
        "spec.predictionLog.volume: a file:// sink needs a volume at its path (the pods' root filesystem is read-only): set volume.persistentVolumeClaim, or log to s3://"
    )]
    SinkWithoutVolume,
    #[error(
        "metadata.name {0:?}: must be a DNS-1035 label (at most 63 lower-case letters, digits and '-', starting with a letter) to name the Service"
    )]
    InvalidName(String),
    #[error("spec.env[{index}].name {name:?}: {problem}")]
    InvalidEnv {
        index: usize,
        name: String,
        problem: &'static str,
    },
    #[error("spec.podLabels {key:?}: {problem}")]
    InvalidPodLabel { key: String, problem: &'static str },
    #[error("spec.autoscaling: {0}")]
    InvalidAutoscaling(&'static str),
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
            Error::InvalidSampleRate(_) | Error::InvalidSink(_) | Error::SinkWithoutVolume => {
                "InvalidPredictionLog"
            }
            Error::InvalidName(_) => "InvalidName",
            Error::InvalidEnv { .. } => "InvalidEnv",
            Error::InvalidPodLabel { .. } => "InvalidPodLabel",
            Error::InvalidAutoscaling(_) => "InvalidAutoscaling",
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

/// Environment variables the operator sets itself in the inference-server container: the
/// spec must not set them too (the API server would reject the duplicate, or one would
/// silently win). `MOORING_LOG_FORMAT` is not among them: the spec may override it.
pub const RESERVED_ENV: [&str; 5] = [
    children::TOKEN_ENV,
    children::USERNAME_ENV,
    children::PASSWORD_ENV,
    children::PREDICTION_LOG_ENV,
    children::PREDICTION_LOG_SAMPLE_RATE_ENV,
];

/// Validate a whole ModelDeployment: its name (which names its Service) and its spec.
pub fn validate_resource(md: &ModelDeployment) -> Result<ValidSpec> {
    let name = md.metadata.name.as_deref().unwrap_or_default();
    if !is_dns1035_label(name) {
        return Err(Error::InvalidName(name.to_string()));
    }
    validate(&md.spec)
}

/// A DNS-1035 label, as a Service name must be.
pub fn is_dns1035_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[bytes.len() - 1] != b'-'
}

/// An environment variable name the API server accepts (a C identifier, or more loosely
/// printable ASCII without `=`; the C form is what every shell and the server read).
pub(crate) fn env_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("must not be empty");
    }
    if name.contains('=') || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Some("must be printable ASCII without '=' or spaces");
    }
    None
}

/// Label keys: an optional DNS-subdomain prefix and a `/`, then a name of ≤ 63 characters.
pub(crate) fn label_key_problem(key: &str) -> Option<&'static str> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if name.is_empty() || !children::is_label_value(name) {
        return Some(
            "not a valid label key (at most 63 of [A-Za-z0-9._-], alphanumeric at both ends)",
        );
    }
    if prefix.is_some_and(|p| p.is_empty() || p.len() > 253) {
        return Some("the prefix before '/' must be a DNS subdomain");
    }
    None
}

/// Check `spec.registry` (shared by every resource that names a registry).
pub fn validate_registry(registry: &mooring_crds::RegistrySpec) -> Result<RegistryTarget> {
    Ok(match (&registry.mlflow, &registry.local) {
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
    })
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
    let registry = validate_registry(&spec.registry)?;
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
        if log.sink.starts_with("file:///") && log.volume.is_none() {
            return Err(Error::SinkWithoutVolume);
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (index, env) in spec.env.iter().enumerate() {
        let problem = env_name_problem(&env.name)
            .or_else(|| {
                RESERVED_ENV.contains(&env.name.as_str()).then_some(
                    "set by the operator itself (from spec.registry or spec.predictionLog)",
                )
            })
            .or_else(|| (!seen.insert(env.name.as_str())).then_some("set twice"));
        if let Some(problem) = problem {
            return Err(Error::InvalidEnv {
                index,
                name: env.name.clone(),
                problem,
            });
        }
    }
    for (key, value) in &spec.pod.pod_labels {
        let problem = label_key_problem(key)
            .or_else(|| {
                (!children::is_label_value(value))
                    .then_some("its value is not a valid label value (at most 63 of [A-Za-z0-9._-], alphanumeric at both ends)")
            })
            .or_else(|| {
                children::selector_labels("")
                    .contains_key(key)
                    .then_some("is one of the operator's selector labels")
            });
        if let Some(problem) = problem {
            return Err(Error::InvalidPodLabel {
                key: key.clone(),
                problem,
            });
        }
    }
    if let Some(a) = &spec.autoscaling {
        if a.min_replicas < 1 {
            return Err(Error::InvalidAutoscaling("minReplicas must be at least 1"));
        }
        if a.min_replicas > a.max_replicas {
            return Err(Error::InvalidAutoscaling(
                "minReplicas must not exceed maxReplicas",
            ));
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

    #[test]
    fn what_the_api_server_would_reject_is_refused_up_front() {
        const BASE: &str = "model: {name: i, alias: p}\nregistry: {local: {path: /m}}\n";
        let cases = [
            (
                "env: [{name: A, value: '1'}, {name: A, value: '2'}]",
                "spec.env[1].name \"A\": set twice",
            ),
            (
                "env: [{name: MOORING_REGISTRY_TOKEN, value: x}]",
                "spec.env[0].name \"MOORING_REGISTRY_TOKEN\": set by the operator",
            ),
            (
                "env: [{name: MOORING_PREDICTION_LOG, value: x}]",
                "spec.env[0]",
            ),
            ("env: [{name: 'A B', value: x}]", "spec.env[0].name"),
            ("env: [{name: '', value: x}]", "spec.env[0].name"),
            ("podLabels: {team: 'a b'}", "spec.podLabels \"team\""),
            ("podLabels: {'bad key!': x}", "spec.podLabels \"bad key!\""),
            (
                "podLabels: {app.kubernetes.io/instance: other}",
                "selector labels",
            ),
            (
                "predictionLog: {sink: 'file:///var/log/mooring'}",
                "spec.predictionLog.volume",
            ),
            (
                "autoscaling: {minReplicas: 3, maxReplicas: 2}",
                "spec.autoscaling",
            ),
        ];
        for (yaml, expected) in cases {
            let err = validate(&spec_from_yaml(&format!("{BASE}{yaml}"))).unwrap_err();
            assert!(err.to_string().contains(expected), "{yaml}: {err}");
        }
        // Overriding the log format is allowed; a file sink with a volume is fine.
        validate(&spec_from_yaml(&format!(
            "{BASE}env: [{{name: MOORING_LOG_FORMAT, value: pretty}}]\npredictionLog: {{sink: 'file:///var/log/m', volume: {{persistentVolumeClaim: logs}}}}"
        )))
        .unwrap();
    }

    #[test]
    fn the_name_must_be_a_dns_1035_label() {
        for good in ["iris", "a", "iris-v2", &"a".repeat(63)] {
            assert!(is_dns1035_label(good), "{good}");
        }
        for bad in [
            "",
            "Iris",
            "1iris",
            "iris-",
            "ir_is",
            "iris.ml",
            &"a".repeat(64),
        ] {
            assert!(!is_dns1035_label(bad), "{bad}");
        }
        let mut md = crate::controller::fixtures::md_from_yaml(
            "model: {name: i, alias: p}\nregistry: {local: {path: /m}}",
        );
        md.metadata.name = Some("x".repeat(64));
        let err = validate_resource(&md).unwrap_err();
        assert_eq!(err.reason(), "InvalidName");
        assert!(err.to_string().contains("metadata.name"), "{err}");
    }
}
