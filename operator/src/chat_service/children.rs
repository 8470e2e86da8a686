//! Build the desired Deployment, Service and optional HPA/PDB of a ChatService (pure).
//!
//! The pod runs `inference-server serve --chat` with flags the server's own `Cli` parses
//! (`inference-server/tests/operator_contract.rs` holds the two together). The local model's
//! version is written into the pod template (annotation and `--chat-gguf-model`), so an alias
//! move is an ordinary rolling update, judged and rolled back exactly as a ModelDeployment's.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, KeyToPath, PersistentVolumeClaimVolumeSource, PodSpec,
    PodTemplateSpec, Probe, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use mooring_crds::ChatService;
use mooring_crds::chat_service::{BackendKind, ChatServiceSpec, MemoryStore, PromptInjectionMode};
use mooring_crds::common::{BASIC_AUTH_PASSWORD_KEY, BASIC_AUTH_USERNAME_KEY};

use crate::controller::children::{
    CACHE_DIR, DIGEST_ANNOTATION, DesiredChildren, GRPC_PORT, LOG_FORMAT_ENV, PASSWORD_ENV,
    REST_PORT, TOKEN_ENV, URI_ANNOTATION, USERNAME_ENV, VERSION_ANNOTATION, VERSION_LABEL,
    is_label_value, scaling_children, selector_labels, server_ports, surge_strategy,
};
use crate::controller::resolve::VersionInfo;
use crate::controller::validate::{MlflowAuth, RegistryTarget};

use super::validate::{Backend, RedisUrl, ValidChat};

pub const CONTAINER_NAME: &str = "chat-server";
/// The remote backend's API key, from its Secret.
pub const BACKEND_API_KEY_ENV: &str = "MOORING_CHAT_BACKEND_API_KEY";
/// The Redis URL, inline or from its Secret (it may carry a password).
pub const REDIS_URL_ENV: &str = "MOORING_CHAT_REDIS_URL";
/// The PostgreSQL URL, from its Secret (it carries a password).
pub const POSTGRES_URL_ENV: &str = "MOORING_CHAT_POSTGRES_URL";
/// CPU threads of the local model (llama.cpp) and of the semantic cache's embedding model (candle).
pub const THREADS_ENV: &str = "CANDLE_NUM_THREADS";
/// Where the keys file Secret is mounted: a directory mount (not `subPath`), so the kubelet
/// updates the file when the Secret changes and the server reloads it.
pub const API_KEYS_DIR: &str = "/etc/mooring/api-keys";
pub const API_KEYS_FILE: &str = "keys";
/// The start-up probe allows this long for fetching, checking and loading a GGUF.
pub const STARTUP_SECONDS: i32 = 600;

/// Environment variables the operator sets itself: the spec must not set them too.
pub const RESERVED_ENV: [&str; 8] = [
    BACKEND_API_KEY_ENV,
    REDIS_URL_ENV,
    POSTGRES_URL_ENV,
    TOKEN_ENV,
    USERNAME_ENV,
    PASSWORD_ENV,
    "MOORING_CHAT_BACKEND",
    "MOORING_API_KEYS_FILE",
];

/// In-cluster base URL of the OpenAI-compatible API.
pub fn url(name: &str, namespace: &str) -> String {
    format!("http://{name}.{namespace}.svc:{REST_PORT}/v1")
}

/// Digest of what the pods run apart from the model version: everything in the spec but the
/// model reference, the replica count, autoscaling and rollout settings. A rollback pin
/// records it, so that changing any of it retries the alias's version.
pub fn template_hash(spec: &ChatServiceSpec) -> String {
    use sha2::Digest;
    let mut value = serde_json::to_value(spec).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        for key in ["replicas", "autoscaling", "rollout"] {
            map.remove(key);
        }
        if let Some(backend) = map.get_mut("backend").and_then(|b| b.as_object_mut()) {
            backend.remove("model");
        }
    }
    let digest = sha2::Sha256::digest(value.to_string().as_bytes());
    hex::encode(&digest[..8])
}

fn labels(name: &str, model: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = selector_labels(name);
    labels.insert(
        "app.kubernetes.io/managed-by".into(),
        "mooring-operator".into(),
    );
    labels.insert("app.kubernetes.io/component".into(), "chat-server".into());
    if let Some(model) = model.filter(|m| is_label_value(m)) {
        labels.insert("mooring.dev/model".into(), model.into());
    }
    labels
}

fn on_off(on: bool) -> String {
    if on { "on" } else { "off" }.into()
}

/// The CPU limit of `resources`, rounded up to whole threads.
fn cpu_limit_threads(spec: &ChatServiceSpec) -> Option<i64> {
    let q = spec.resources.as_ref()?.limits.as_ref()?.get("cpu")?;
    let s = q.0.trim();
    let cores = match s.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok()? / 1000.0,
        None => s.parse::<f64>().ok()?,
    };
    (cores > 0.0).then(|| (cores.ceil() as i64).max(1))
}

/// The server's flags for `spec` serving `version` (local backend).
pub fn args(
    spec: &ChatServiceSpec,
    valid: &ValidChat,
    version: Option<&VersionInfo>,
) -> Vec<String> {
    let mut a: Vec<String> = vec!["serve".into(), "--chat".into()];
    let mut flag = |name: &str, value: String| {
        a.push(format!("--{name}"));
        a.push(value);
    };
    flag("http-port", REST_PORT.to_string());
    flag("grpc-port", GRPC_PORT.to_string());
    flag("cache-dir", CACHE_DIR.into());
    match &valid.backend {
        Backend::Local { target, registry } => {
            flag("chat-backend", "local".into());
            flag("registry", registry.location().into());
            let selector = version.map_or_else(
                || target.model_ref().to_string(),
                |v| format!("{}@{}", target.name(), v.version),
            );
            flag("chat-gguf-model", selector);
            flag("chat-model", target.name().into());
        }
        Backend::Remote {
            kind, url, model, ..
        } => {
            let kind = if *kind == BackendKind::Ollama {
                "ollama"
            } else {
                "openai"
            };
            flag("chat-backend", kind.into());
            flag("chat-url", url.clone());
            if let Some(model) = model {
                flag("chat-model", model.clone());
            }
        }
    }
    let b = &spec.backend;
    flag(
        "chat-first-token-timeout-secs",
        b.timeout_seconds.to_string(),
    );
    flag("chat-read-timeout-secs", b.timeout_seconds.to_string());
    flag("chat-retries", b.max_retries.to_string());
    if let Some(prompt) = &spec.system_prompt {
        flag("chat-system-prompt", prompt.clone());
    }
    let g = &spec.generation;
    if let Some(t) = g.max_tokens {
        flag("chat-max-tokens", t.to_string());
    }
    if let Some(t) = g.temperature {
        flag("chat-temperature", t.to_string());
    }
    let m = &spec.memory;
    flag(
        "chat-memory-store",
        match m.store {
            MemoryStore::Memory => "memory",
            MemoryStore::Redis => "redis",
            MemoryStore::Postgres => "postgres",
        }
        .into(),
    );
    flag("chat-memory-max-turns", m.max_turns.to_string());
    flag("chat-memory-ttl-secs", m.ttl_seconds.to_string());
    if let Some(prefix) = m.redis.as_ref().and_then(|r| r.key_prefix.clone()) {
        flag("chat-redis-prefix", prefix);
    }
    flag(
        "guard-mode",
        match spec.guard.prompt_injection {
            PromptInjectionMode::Block => "block",
            PromptInjectionMode::Flag => "flag",
            PromptInjectionMode::Off => "off",
        }
        .into(),
    );
    flag(
        "guard-max-prompt-chars",
        spec.guard.max_prompt_chars.to_string(),
    );
    let c = &spec.cache;
    flag("cache-exact", on_off(c.exact));
    flag("cache-semantic", on_off(c.semantic));
    flag(
        "cache-similarity-threshold",
        c.similarity_threshold.to_string(),
    );
    flag("cache-max-entries", c.max_entries.to_string());
    if let Some(ttl) = c.ttl_seconds {
        flag("cache-ttl-seconds", ttl.to_string());
    }
    if let Some(auth) = &spec.auth {
        flag("api-keys-file", format!("{API_KEYS_DIR}/{API_KEYS_FILE}"));
        if let Some(rate) = auth.rate_limit_per_second {
            flag("rate-limit-per-second", rate.to_string());
        }
        if let Some(burst) = auth.rate_limit_burst {
            flag("rate-limit-burst", burst.to_string());
        }
        // Bearer JWTs of the organisation's identity provider, beside the keys.
        if let Some(jwt) = &auth.jwt {
            flag("auth-jwt-issuer", jwt.issuer.clone());
            flag("auth-jwt-audience", jwt.audience.clone());
            flag("auth-jwt-jwks-url", jwt.jwks_url.clone());
        }
    }
    a
}

/// The container's environment: the spec's own, JSON logs, and every secret by reference.
pub fn env(spec: &ChatServiceSpec, valid: &ValidChat) -> Vec<EnvVar> {
    let mut env = spec.env.clone();
    let plain = |name: &str, value: String| EnvVar {
        name: name.into(),
        value: Some(value),
        ..EnvVar::default()
    };
    if !env.iter().any(|e| e.name == LOG_FORMAT_ENV) {
        env.push(plain(LOG_FORMAT_ENV, "json".into()));
    }
    let secret = crate::pod::env_from_secret;
    match &valid.backend {
        Backend::Local { registry, .. } => {
            match registry {
                RegistryTarget::Mlflow {
                    auth: Some(MlflowAuth::Token(s)),
                    ..
                } => env.push(secret(TOKEN_ENV, &s.name, &s.key)),
                RegistryTarget::Mlflow {
                    auth: Some(MlflowAuth::Basic(s)),
                    ..
                } => {
                    env.push(secret(USERNAME_ENV, &s.name, BASIC_AUTH_USERNAME_KEY));
                    env.push(secret(PASSWORD_ENV, &s.name, BASIC_AUTH_PASSWORD_KEY));
                }
                _ => {}
            }
            // candle would use every core of the node; the container gets its CPU limit.
            let threads = spec
                .generation
                .threads
                .map(i64::from)
                .or_else(|| cpu_limit_threads(spec));
            if let Some(threads) = threads
                && !env.iter().any(|e| e.name == THREADS_ENV)
            {
                env.push(plain(THREADS_ENV, threads.to_string()));
            }
        }
        Backend::Remote {
            api_key: Some(s), ..
        } => env.push(secret(BACKEND_API_KEY_ENV, &s.name, &s.key)),
        Backend::Remote { .. } => {}
    }
    match &valid.redis {
        Some(RedisUrl::Inline(url)) => env.push(plain(REDIS_URL_ENV, url.clone())),
        Some(RedisUrl::Secret(s)) => env.push(secret(REDIS_URL_ENV, &s.name, &s.key)),
        None => {}
    }
    if let Some(s) = &valid.postgres {
        env.push(secret(POSTGRES_URL_ENV, &s.name, &s.key));
    }
    env
}

/// Build the children of `chat`, serving `version` for the local backend.
pub fn build(
    chat: &ChatService,
    owner: OwnerReference,
    valid: &ValidChat,
    version: Option<&VersionInfo>,
    default_image: &str,
) -> DesiredChildren {
    let name = chat.metadata.name.clone().unwrap_or_default();
    let spec = &chat.spec;
    let model = valid.target().map(|t| t.name());
    let labels = labels(&name, model);
    let meta = ObjectMeta {
        name: Some(name.clone()),
        namespace: chat.metadata.namespace.clone(),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    };

    let mut template_labels = spec.pod.pod_labels.clone();
    template_labels.extend(labels.clone());
    let mut template_annotations = spec.pod.pod_annotations.clone();
    if let Some(v) = version {
        if is_label_value(&v.version) {
            template_labels.insert(VERSION_LABEL.into(), v.version.clone());
        }
        template_annotations.insert(VERSION_ANNOTATION.into(), v.version.clone());
        if let Some(digest) = &v.digest {
            template_annotations.insert(DIGEST_ANNOTATION.into(), digest.clone());
        }
        if let Some(uri) = &v.uri {
            template_annotations.insert(URI_ANNOTATION.into(), uri.clone());
        }
    }

    let empty_dir = |name: &str| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    };
    let mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    };
    // The root filesystem is read-only: the fetched GGUF and temporary files get emptyDirs.
    let mut volumes = vec![empty_dir("cache"), empty_dir("tmp")];
    let mut mounts = vec![
        mount("cache", CACHE_DIR, false),
        mount("tmp", "/tmp", false),
    ];
    if let Backend::Local {
        registry:
            RegistryTarget::Local {
                path,
                persistent_volume_claim: Some(claim),
            },
        ..
    } = &valid.backend
    {
        volumes.push(Volume {
            name: "registry".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(true),
            }),
            ..Volume::default()
        });
        mounts.push(mount("registry", path, true));
    }
    if let Some(auth) = &spec.auth {
        volumes.push(Volume {
            name: "api-keys".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(auth.api_keys_secret_ref.name.clone()),
                items: Some(vec![KeyToPath {
                    key: auth.api_keys_secret_ref.key.clone(),
                    path: API_KEYS_FILE.into(),
                    mode: None,
                }]),
                optional: Some(false),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount("api-keys", API_KEYS_DIR, true));
    }

    let probe = crate::pod::http_probe;
    let env = env(spec, valid);
    let mut container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(
            spec.image
                .clone()
                .unwrap_or_else(|| default_image.to_string()),
        ),
        args: Some(args(spec, valid, version)),
        env: (!env.is_empty()).then_some(env),
        ports: Some(server_ports()),
        // `/readyz` checks the backend and the session store: BackendReachable.
        readiness_probe: Some(probe("/readyz", 5)),
        liveness_probe: Some(probe("/healthz", 10)),
        // Fetching, checking and loading a GGUF takes a while; liveness waits for it.
        startup_probe: Some(Probe {
            failure_threshold: Some(STARTUP_SECONDS / 5),
            ..probe("/healthz", 5)
        }),
        resources: spec.resources.clone(),
        volume_mounts: Some(mounts),
        security_context: Some(crate::pod::restricted_container()),
        ..Container::default()
    };
    let mut pod_spec = PodSpec {
        volumes: Some(volumes),
        security_context: Some(crate::pod::restricted_pod()),
        ..PodSpec::default()
    };
    crate::pod::apply_pod_options(&spec.pod, &mut pod_spec, &mut container);
    // Streamed answers finish while the pod leaves the Service.
    crate::pod::drain_on_termination(&mut pod_spec, &mut container);
    pod_spec.containers = vec![container];

    let selector = LabelSelector {
        match_labels: Some(selector_labels(&name)),
        match_expressions: None,
    };
    let deployment = Deployment {
        metadata: meta.clone(),
        spec: Some(DeploymentSpec {
            // Under an autoscaler the replicas are its to set.
            replicas: spec.autoscaling.is_none().then_some(spec.replicas),
            selector: selector.clone(),
            progress_deadline_seconds: Some(spec.rollout.progress_deadline_seconds),
            strategy: Some(surge_strategy()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(template_labels),
                    annotations: (!template_annotations.is_empty()).then_some(template_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    };
    let (autoscaler, disruption_budget) =
        scaling_children(&meta, spec.replicas, spec.autoscaling.as_ref(), selector);
    let service = crate::controller::children::service(meta, &name);
    DesiredChildren {
        deployment,
        service,
        autoscaler,
        disruption_budget,
    }
}
