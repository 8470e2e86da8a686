//! Validate a ChatService's spec (pure): what the schema cannot check (or an old API server
//! did not), each refusal naming the field to fix.

use mooring_crds::chat_service::{BackendKind, ChatServiceSpec, MemoryStore};
use mooring_crds::{ChatService, SecretKeyRef};
use mooring_registry::validate_alias;

use crate::controller::validate::{
    self as md_validate, ModelTarget, RegistryTarget, env_name_problem, is_dns1035_label,
    label_key_problem,
};

use super::children;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A spec the user must change; the controller reports it and waits for the change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error(
        "metadata.name {0:?}: must be a DNS-1035 label (at most 63 lower-case letters, digits and '-', starting with a letter) to name the Service"
    )]
    InvalidName(String),
    #[error(
        "spec.backend.model: the local backend needs a registry reference, name@alias (followed) or name@version (pinned), e.g. smollm2@production"
    )]
    MissingLocalModel,
    #[error(
        "spec.backend.model {0:?}: must be name@alias or name@version (a registry reference), e.g. smollm2@production"
    )]
    InvalidModelRef(String),
    #[error("spec.backend.model {model:?}: {problem}")]
    InvalidAlias { model: String, problem: String },
    #[error(
        "spec.registry: the local backend needs the registry holding its GGUF versions (mlflow or local)"
    )]
    MissingRegistry,
    #[error(transparent)]
    Registry(md_validate::Error),
    #[error("spec.backend.url: required for the {0} backend")]
    MissingUrl(&'static str),
    #[error("spec.backend.url {0:?}: must start with http:// or https://")]
    InvalidUrl(String),
    #[error("spec.backend.apiKeySecretRef: only remote backends (ollama, openai) take an API key")]
    ApiKeyForLocal,
    #[error("spec.memory.redis: required when memory.store is redis")]
    MissingRedis,
    #[error("spec.memory.postgres: required when memory.store is postgres (postgres.urlSecretRef)")]
    MissingPostgres,
    #[error("spec.auth.jwt.{0}: must not be empty")]
    EmptyJwtField(&'static str),
    #[error("spec.auth.jwt.jwksUrl {0:?}: must start with https:// or http://")]
    InvalidJwksUrl(String),
    #[error("spec.memory.redis: set exactly one of url or urlSecretRef")]
    RedisUrlAndSecret,
    #[error("spec.memory.redis.url {0:?}: must start with redis:// or rediss://")]
    InvalidRedisUrl(String),
    #[error(
        "spec.memory.store memory keeps sessions inside each pod: with {0} a conversation would lose its memory whenever another pod answers; use memory.store redis, or replicas 1"
    )]
    SessionsNotShared(&'static str),
    #[error("spec.replicas {0}: must be 0 or more")]
    NegativeReplicas(i32),
    #[error("spec.rollout.progressDeadlineSeconds {0}: must be at least 10")]
    ProgressDeadlineTooShort(i32),
    #[error("spec.rollout.resolveIntervalSeconds {0}: must be at least 5")]
    ResolveIntervalTooShort(i32),
    #[error("spec.{field} {value}: {problem}")]
    OutOfRange {
        field: &'static str,
        value: String,
        problem: &'static str,
    },
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
            Error::InvalidName(_) => "InvalidName",
            Error::MissingLocalModel | Error::InvalidModelRef(_) | Error::InvalidAlias { .. } => {
                "InvalidModel"
            }
            Error::MissingRegistry => "InvalidRegistry",
            Error::Registry(e) => e.reason(),
            Error::MissingUrl(_) | Error::InvalidUrl(_) | Error::ApiKeyForLocal => "InvalidBackend",
            Error::MissingRedis
            | Error::RedisUrlAndSecret
            | Error::InvalidRedisUrl(_)
            | Error::MissingPostgres => "InvalidMemory",
            Error::EmptyJwtField(_) | Error::InvalidJwksUrl(_) => "InvalidAuth",
            Error::SessionsNotShared(_) => "SessionsNotShared",
            Error::NegativeReplicas(_)
            | Error::ProgressDeadlineTooShort(_)
            | Error::ResolveIntervalTooShort(_) => "InvalidRollout",
            Error::OutOfRange { .. } => "InvalidValue",
            Error::InvalidEnv { .. } => "InvalidEnv",
            Error::InvalidPodLabel { .. } => "InvalidPodLabel",
            Error::InvalidAutoscaling(_) => "InvalidAutoscaling",
        }
    }
}

/// Where the answers come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A GGUF version of a registry model, run in the pod.
    Local {
        target: ModelTarget,
        registry: RegistryTarget,
    },
    /// A remote Ollama or OpenAI-compatible server.
    Remote {
        kind: BackendKind,
        url: String,
        model: Option<String>,
        api_key: Option<SecretKeyRef>,
    },
}

/// Where the Redis URL comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisUrl {
    Inline(String),
    Secret(SecretKeyRef),
}

/// A spec that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidChat {
    pub backend: Backend,
    /// `Some` for `memory.store: redis`.
    pub redis: Option<RedisUrl>,
    /// The Secret key holding the URL, for `memory.store: postgres`.
    pub postgres: Option<SecretKeyRef>,
}

impl ValidChat {
    /// The registry model followed, for the local backend.
    pub fn target(&self) -> Option<&ModelTarget> {
        match &self.backend {
            Backend::Local { target, .. } => Some(target),
            Backend::Remote { .. } => None,
        }
    }
}

/// `name@alias` or `name@version` (all digits: a version, as everywhere in Mooring).
pub fn parse_model_ref(model: &str) -> Result<ModelTarget> {
    let (name, selector) = model
        .split_once('@')
        .filter(|(n, s)| !n.trim().is_empty() && !s.is_empty())
        .ok_or_else(|| Error::InvalidModelRef(model.to_string()))?;
    if selector.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(ModelTarget::Pinned {
            name: name.into(),
            version: selector.into(),
        });
    }
    validate_alias(selector).map_err(|e| Error::InvalidAlias {
        model: model.into(),
        problem: e.to_string(),
    })?;
    Ok(ModelTarget::Alias {
        name: name.into(),
        alias: selector.into(),
    })
}

/// Validate a whole ChatService: its name (which names its Service) and its spec.
pub fn validate_resource(chat: &ChatService) -> Result<ValidChat> {
    let name = chat.metadata.name.as_deref().unwrap_or_default();
    if !is_dns1035_label(name) {
        return Err(Error::InvalidName(name.to_string()));
    }
    validate(&chat.spec)
}

fn http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// Check everything the schema cannot enforce.
pub fn validate(spec: &ChatServiceSpec) -> Result<ValidChat> {
    let b = &spec.backend;
    let backend = match b.kind {
        BackendKind::Local => {
            let model = b.model.as_deref().ok_or(Error::MissingLocalModel)?;
            let target = parse_model_ref(model)?;
            let registry = spec.registry.as_ref().ok_or(Error::MissingRegistry)?;
            let registry = md_validate::validate_registry(registry).map_err(Error::Registry)?;
            if b.api_key_secret_ref.is_some() {
                return Err(Error::ApiKeyForLocal);
            }
            Backend::Local { target, registry }
        }
        kind => {
            let label = if kind == BackendKind::Ollama {
                "ollama"
            } else {
                "openai"
            };
            let url = b.url.clone().ok_or(Error::MissingUrl(label))?;
            if !http_url(&url) {
                return Err(Error::InvalidUrl(url));
            }
            Backend::Remote {
                kind,
                url,
                model: b.model.clone(),
                api_key: b.api_key_secret_ref.clone(),
            }
        }
    };
    let postgres = match (spec.memory.store, &spec.memory.postgres) {
        (MemoryStore::Postgres, None) => return Err(Error::MissingPostgres),
        (MemoryStore::Postgres, Some(p)) => Some(p.url_secret_ref.clone()),
        _ => None,
    };
    if let Some(jwt) = spec.auth.as_ref().and_then(|a| a.jwt.as_ref()) {
        for (field, value) in [
            ("issuer", &jwt.issuer),
            ("audience", &jwt.audience),
            ("jwksUrl", &jwt.jwks_url),
        ] {
            if value.trim().is_empty() {
                return Err(Error::EmptyJwtField(field));
            }
        }
        if !(jwt.jwks_url.starts_with("https://") || jwt.jwks_url.starts_with("http://")) {
            return Err(Error::InvalidJwksUrl(jwt.jwks_url.clone()));
        }
    }
    let redis = match (spec.memory.store, &spec.memory.redis) {
        (MemoryStore::Memory | MemoryStore::Postgres, _) => None,
        (MemoryStore::Redis, None) => return Err(Error::MissingRedis),
        (MemoryStore::Redis, Some(r)) => match (&r.url, &r.url_secret_ref) {
            (Some(url), None) => {
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err(Error::InvalidRedisUrl(url.clone()));
                }
                Some(RedisUrl::Inline(url.clone()))
            }
            (None, Some(secret)) => Some(RedisUrl::Secret(secret.clone())),
            _ => return Err(Error::RedisUrlAndSecret),
        },
    };
    if spec.replicas < 0 {
        return Err(Error::NegativeReplicas(spec.replicas));
    }
    // Never lose sessions silently: in-process memory and several pods do not mix.
    if spec.memory.store == MemoryStore::Memory {
        if spec.autoscaling.is_some() {
            return Err(Error::SessionsNotShared("autoscaling"));
        }
        if spec.replicas > 1 {
            return Err(Error::SessionsNotShared("more than one replica"));
        }
    }
    if spec.rollout.progress_deadline_seconds < 10 {
        return Err(Error::ProgressDeadlineTooShort(
            spec.rollout.progress_deadline_seconds,
        ));
    }
    if spec.rollout.resolve_interval_seconds < 5 {
        return Err(Error::ResolveIntervalTooShort(
            spec.rollout.resolve_interval_seconds,
        ));
    }
    let out_of_range = |field, value: String, problem| {
        Err(Error::OutOfRange {
            field,
            value,
            problem,
        })
    };
    if b.timeout_seconds < 1 {
        return out_of_range(
            "backend.timeoutSeconds",
            b.timeout_seconds.to_string(),
            "must be at least 1",
        );
    }
    if !(0..=10).contains(&b.max_retries) {
        return out_of_range(
            "backend.maxRetries",
            b.max_retries.to_string(),
            "must be between 0 and 10",
        );
    }
    if spec.memory.max_turns < 1 {
        return out_of_range(
            "memory.maxTurns",
            spec.memory.max_turns.to_string(),
            "must be at least 1",
        );
    }
    if spec.memory.ttl_seconds < 1 {
        return out_of_range(
            "memory.ttlSeconds",
            spec.memory.ttl_seconds.to_string(),
            "must be at least 1",
        );
    }
    if spec.guard.max_prompt_chars < 1 {
        return out_of_range(
            "guard.maxPromptChars",
            spec.guard.max_prompt_chars.to_string(),
            "must be at least 1",
        );
    }
    let c = &spec.cache;
    if !(c.similarity_threshold > 0.0 && c.similarity_threshold <= 1.0) {
        return out_of_range(
            "cache.similarityThreshold",
            c.similarity_threshold.to_string(),
            "must be in (0, 1]",
        );
    }
    if c.max_entries < 1 {
        return out_of_range(
            "cache.maxEntries",
            c.max_entries.to_string(),
            "must be at least 1",
        );
    }
    if c.ttl_seconds.is_some_and(|t| t < 0) {
        return out_of_range(
            "cache.ttlSeconds",
            c.ttl_seconds.unwrap_or_default().to_string(),
            "must be 0 or more",
        );
    }
    let g = &spec.generation;
    if g.max_tokens.is_some_and(|t| t < 1) {
        return out_of_range(
            "generation.maxTokens",
            g.max_tokens.unwrap_or_default().to_string(),
            "must be at least 1",
        );
    }
    if g.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        return out_of_range(
            "generation.temperature",
            g.temperature.unwrap_or_default().to_string(),
            "must be between 0 and 2",
        );
    }
    if g.threads.is_some_and(|t| !(1..=256).contains(&t)) {
        return out_of_range(
            "generation.threads",
            g.threads.unwrap_or_default().to_string(),
            "must be between 1 and 256",
        );
    }
    if let Some(auth) = &spec.auth {
        if auth
            .rate_limit_per_second
            .is_some_and(|r| !(r >= 0.0 && r.is_finite()))
        {
            return out_of_range(
                "auth.rateLimitPerSecond",
                auth.rate_limit_per_second.unwrap_or_default().to_string(),
                "must be a finite number, 0 or more",
            );
        }
        if auth.rate_limit_burst.is_some_and(|b| b < 0) {
            return out_of_range(
                "auth.rateLimitBurst",
                auth.rate_limit_burst.unwrap_or_default().to_string(),
                "must be 0 or more",
            );
        }
    }
    if let Some(a) = &spec.autoscaling {
        if a.min_replicas < 1 {
            return Err(Error::InvalidAutoscaling("minReplicas must be at least 1"));
        }
        if a.max_replicas < a.min_replicas {
            return Err(Error::InvalidAutoscaling(
                "maxReplicas must be at least minReplicas",
            ));
        }
        if a.target_in_flight_requests.is_some() {
            return Err(Error::InvalidAutoscaling(
                "a ChatService scales on CPU only: remove targetInFlightRequests",
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (index, env) in spec.env.iter().enumerate() {
        let problem = env_name_problem(&env.name)
            .or_else(|| {
                children::RESERVED_ENV
                    .contains(&env.name.as_str())
                    .then_some("set by the operator itself (from the spec's other fields)")
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
                (!crate::controller::children::is_label_value(value))
                    .then_some("its value is not a valid label value")
            })
            .or_else(|| {
                crate::controller::children::selector_labels("")
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
    Ok(ValidChat {
        backend,
        redis,
        postgres,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> ChatServiceSpec {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    const LOCAL: &str =
        "backend: {kind: local, model: smollm2@production}\nregistry: {local: {path: /models}}";

    #[test]
    fn local_backend_follows_an_alias_or_pins_a_version() {
        let valid = validate(&spec(LOCAL)).unwrap();
        assert_eq!(
            valid.target(),
            Some(&ModelTarget::Alias {
                name: "smollm2".into(),
                alias: "production".into()
            })
        );
        let pinned = validate(&spec(&LOCAL.replace("@production", "@3"))).unwrap();
        assert_eq!(
            pinned.target(),
            Some(&ModelTarget::Pinned {
                name: "smollm2".into(),
                version: "3".into()
            })
        );
    }

    #[test]
    fn remote_backend_needs_a_url() {
        let valid = validate(&spec(
            "backend: {kind: openai, url: 'http://vllm:8000/v1', model: qwen, apiKeySecretRef: {name: openai, key: key}}",
        ))
        .unwrap();
        assert!(matches!(valid.backend, Backend::Remote { .. }));
        assert_eq!(valid.target(), None);
    }

    /// Each bad field gets a refusal naming it, with its reason; nothing panics.
    #[test]
    fn invalid_spec_matrix_names_each_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "backend: {kind: local, model: smollm2@production}\nregistry: {local: {path: /models}}\nmemory: {store: postgres}",
                "InvalidMemory",
                "spec.memory.postgres",
            ),
            (
                "backend: {kind: local, model: smollm2@production}\nregistry: {local: {path: /models}}\nauth: {apiKeysSecretRef: {name: k}, jwt: {issuer: '', audience: a, jwksUrl: 'https://x/certs'}}",
                "InvalidAuth",
                "spec.auth.jwt.issuer",
            ),
            (
                "backend: {kind: local, model: smollm2@production}\nregistry: {local: {path: /models}}\nauth: {apiKeysSecretRef: {name: k}, jwt: {issuer: i, audience: a, jwksUrl: 'ftp://x/certs'}}",
                "InvalidAuth",
                "spec.auth.jwt.jwksUrl",
            ),
            (
                "backend: {kind: local}\nregistry: {local: {path: /models}}",
                "InvalidModel",
                "spec.backend.model",
            ),
            (
                "backend: {kind: local, model: /models/x.gguf}\nregistry: {local: {path: /models}}",
                "InvalidModel",
                "spec.backend.model",
            ),
            (
                "backend: {kind: local, model: 'smollm2@Bad Alias'}\nregistry: {local: {path: /models}}",
                "InvalidModel",
                "spec.backend.model",
            ),
            (
                "backend: {kind: local, model: smollm2@production}",
                "InvalidRegistry",
                "spec.registry",
            ),
            (
                "backend: {kind: local, model: smollm2@production}\nregistry: {local: {path: models}}",
                "InvalidRegistry",
                "spec.registry.local.path",
            ),
            (
                "backend: {kind: local, model: smollm2@production}\nregistry: {mlflow: {url: 'mlflow:5000'}}",
                "InvalidRegistry",
                "spec.registry.mlflow.url",
            ),
            (
                "backend: {kind: openai}",
                "InvalidBackend",
                "spec.backend.url",
            ),
            (
                "backend: {kind: ollama, url: 'ollama:11434'}",
                "InvalidBackend",
                "spec.backend.url",
            ),
            (
                "backend: {kind: local, model: smollm2@production, apiKeySecretRef: {name: k}}\nregistry: {local: {path: /models}}",
                "InvalidBackend",
                "spec.backend.apiKeySecretRef",
            ),
            (
                &format!("{LOCAL}\nmemory: {{store: redis}}"),
                "InvalidMemory",
                "spec.memory.redis",
            ),
            (
                &format!("{LOCAL}\nmemory: {{store: redis, redis: {{url: 'http://redis'}}}}"),
                "InvalidMemory",
                "spec.memory.redis.url",
            ),
            (
                &format!("{LOCAL}\nmemory: {{store: redis, redis: {{}}}}"),
                "InvalidMemory",
                "spec.memory.redis",
            ),
            (
                &format!("{LOCAL}\nreplicas: 2"),
                "SessionsNotShared",
                "spec.memory.store",
            ),
            (
                &format!("{LOCAL}\nautoscaling: {{minReplicas: 1, maxReplicas: 3}}"),
                "SessionsNotShared",
                "spec.memory.store",
            ),
            (
                &format!("{LOCAL}\nreplicas: -1"),
                "InvalidRollout",
                "spec.replicas",
            ),
            (
                &format!("{LOCAL}\nrollout: {{progressDeadlineSeconds: 1}}"),
                "InvalidRollout",
                "spec.rollout.progressDeadlineSeconds",
            ),
            (
                "backend: {kind: local, model: smollm2@production, timeoutSeconds: 0}\nregistry: {local: {path: /models}}",
                "InvalidValue",
                "spec.backend.timeoutSeconds",
            ),
            (
                &format!("{LOCAL}\nmemory: {{maxTurns: 0}}"),
                "InvalidValue",
                "spec.memory.maxTurns",
            ),
            (
                &format!("{LOCAL}\nguard: {{maxPromptChars: 0}}"),
                "InvalidValue",
                "spec.guard.maxPromptChars",
            ),
            (
                &format!("{LOCAL}\ncache: {{similarityThreshold: 1.5}}"),
                "InvalidValue",
                "spec.cache.similarityThreshold",
            ),
            (
                &format!("{LOCAL}\ngeneration: {{maxTokens: 0}}"),
                "InvalidValue",
                "spec.generation.maxTokens",
            ),
            (
                &format!("{LOCAL}\ngeneration: {{temperature: 3}}"),
                "InvalidValue",
                "spec.generation.temperature",
            ),
            (
                &format!("{LOCAL}\ngeneration: {{threads: 0}}"),
                "InvalidValue",
                "spec.generation.threads",
            ),
            (
                &format!("{LOCAL}\nenv: [{{name: MOORING_CHAT_BACKEND, value: x}}]"),
                "InvalidEnv",
                "spec.env[0].name",
            ),
            (
                &format!("{LOCAL}\nenv: [{{name: A, value: x}}, {{name: A, value: y}}]"),
                "InvalidEnv",
                "spec.env[1].name",
            ),
            (
                &format!("{LOCAL}\npodLabels: {{app.kubernetes.io/instance: x}}"),
                "InvalidPodLabel",
                "spec.podLabels",
            ),
            (
                &format!(
                    "{LOCAL}\nmemory: {{store: redis, redis: {{url: 'redis://r'}}}}\nautoscaling: {{minReplicas: 1, maxReplicas: 3, targetInFlightRequests: 4}}"
                ),
                "InvalidAutoscaling",
                "spec.autoscaling",
            ),
        ];
        for (yaml, reason, field) in cases {
            let err = validate(&spec(yaml)).expect_err(yaml);
            assert_eq!(err.reason(), *reason, "{yaml}: {err}");
            assert!(err.to_string().starts_with(field), "{yaml}: {err}");
        }
    }

    #[test]
    fn redis_memory_may_have_several_replicas() {
        let valid = validate(&spec(&format!(
            "{LOCAL}\nmemory: {{store: redis, redis: {{urlSecretRef: {{name: redis, key: url}}}}}}\nreplicas: 3"
        )))
        .unwrap();
        assert!(matches!(valid.redis, Some(RedisUrl::Secret(_))));
    }
}
