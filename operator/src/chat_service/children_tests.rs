//! The ChatService builder, field by field, from small YAML fixtures.

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use mooring_crds::ChatService;

use super::children::{self, build, template_hash};
use super::validate::validate_resource;
use crate::controller::children::DesiredChildren;
use crate::controller::resolve::VersionInfo;

const IMAGE: &str = "mooring/inference-server:test";
const LOCAL: &str =
    "backend: {kind: local, model: smollm2@production}\nregistry: {local: {path: /models}}";

fn chat(spec_yaml: &str) -> ChatService {
    let spec = serde_yaml::from_str(spec_yaml).unwrap_or_else(|e| panic!("{e}\n{spec_yaml}"));
    let mut chat = ChatService::new("assistant", spec);
    chat.metadata.namespace = Some("ml".into());
    chat.metadata.uid = Some("uid-1".into());
    chat
}

fn version(v: &str) -> VersionInfo {
    VersionInfo {
        version: v.into(),
        uri: Some(format!("file:///models/smollm2/{v}")),
        digest: Some(format!("sha256:{v}{v}")),
    }
}

fn build_for(spec_yaml: &str) -> DesiredChildren {
    let chat = chat(spec_yaml);
    let valid = validate_resource(&chat).unwrap();
    let owner = OwnerReference {
        name: "assistant".into(),
        uid: "uid-1".into(),
        controller: Some(true),
        ..OwnerReference::default()
    };
    let v = version("2");
    let local = valid.target().is_some();
    build(&chat, owner, &valid, local.then_some(&v), IMAGE)
}

fn pod(c: &DesiredChildren) -> &PodSpec {
    c.deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
}

fn container(c: &DesiredChildren) -> &Container {
    &pod(c).containers[0]
}

fn args(c: &DesiredChildren) -> Vec<String> {
    container(c).args.clone().unwrap()
}

fn flag(c: &DesiredChildren, name: &str) -> Option<String> {
    let a = args(c);
    a.windows(2)
        .find(|w| w[0] == format!("--{name}"))
        .map(|w| w[1].clone())
}

fn env(c: &DesiredChildren, name: &str) -> Option<k8s_openapi::api::core::v1::EnvVar> {
    container(c)
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .cloned()
}

#[test]
fn local_backend_serves_the_resolved_version_from_the_registry() {
    let c = build_for(LOCAL);
    assert_eq!(&args(&c)[..2], ["serve", "--chat"]);
    assert_eq!(flag(&c, "chat-backend").as_deref(), Some("local"));
    assert_eq!(flag(&c, "registry").as_deref(), Some("/models"));
    assert_eq!(flag(&c, "chat-gguf-model").as_deref(), Some("smollm2@2"));
    assert_eq!(flag(&c, "chat-model").as_deref(), Some("smollm2"));
    let annotations = c
        .deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap();
    let a = annotations.annotations.as_ref().unwrap();
    assert_eq!(a["mooring.dev/model-version"], "2");
    assert_eq!(a["mooring.dev/model-digest"], "sha256:22");
    assert_eq!(
        annotations.labels.as_ref().unwrap()["mooring.dev/model-version"],
        "2"
    );
    assert_eq!(container(&c).image.as_deref(), Some(IMAGE));
    assert_eq!(
        c.deployment.metadata.owner_references.as_ref().unwrap()[0].uid,
        "uid-1"
    );
}

#[test]
fn every_server_setting_becomes_its_flag() {
    let c = build_for(&format!(
        "{LOCAL}\nsystemPrompt: Be brief.\ngeneration: {{maxTokens: 128, temperature: 0.2}}\nguard: {{promptInjection: flag, maxPromptChars: 4000}}\ncache: {{exact: false, semantic: true, similarityThreshold: 0.9, maxEntries: 10, ttlSeconds: 60}}\nmemory: {{store: redis, redis: {{url: 'redis://r:6379', keyPrefix: 'team-a:'}}, maxTurns: 5, ttlSeconds: 600}}\nbackend: {{kind: local, model: smollm2@production, timeoutSeconds: 30, maxRetries: 1}}"
    ).replace(&format!("{LOCAL}\n"), "registry: {local: {path: /models}}\n"));
    for (name, value) in [
        ("chat-system-prompt", "Be brief."),
        ("chat-max-tokens", "128"),
        ("chat-temperature", "0.2"),
        ("guard-mode", "flag"),
        ("guard-max-prompt-chars", "4000"),
        ("cache-exact", "off"),
        ("cache-semantic", "on"),
        ("cache-similarity-threshold", "0.9"),
        ("cache-max-entries", "10"),
        ("cache-ttl-seconds", "60"),
        ("chat-memory-store", "redis"),
        ("chat-memory-max-turns", "5"),
        ("chat-memory-ttl-secs", "600"),
        ("chat-redis-prefix", "team-a:"),
        ("chat-first-token-timeout-secs", "30"),
        ("chat-retries", "1"),
    ] {
        assert_eq!(flag(&c, name).as_deref(), Some(value), "--{name}");
    }
    assert_eq!(
        env(&c, children::REDIS_URL_ENV).unwrap().value.as_deref(),
        Some("redis://r:6379")
    );
}

#[test]
fn secrets_stay_in_their_secrets() {
    let c = build_for(
        "backend: {kind: openai, url: 'http://vllm:8000/v1', model: qwen, apiKeySecretRef: {name: openai, key: key}}\nmemory: {store: redis, redis: {urlSecretRef: {name: redis, key: url}}}\nreplicas: 2",
    );
    for (var, secret, key) in [
        (children::BACKEND_API_KEY_ENV, "openai", "key"),
        (children::REDIS_URL_ENV, "redis", "url"),
    ] {
        let e = env(&c, var).unwrap();
        assert_eq!(e.value, None, "{var} is not copied into the Deployment");
        let r = e.value_from.unwrap().secret_key_ref.unwrap();
        assert_eq!((r.name.as_str(), r.key.as_str()), (secret, key));
    }
    assert_eq!(flag(&c, "chat-backend").as_deref(), Some("openai"));
    assert_eq!(flag(&c, "chat-url").as_deref(), Some("http://vllm:8000/v1"));
    assert_eq!(flag(&c, "chat-model").as_deref(), Some("qwen"));
    assert_eq!(flag(&c, "registry"), None);
    assert!(
        c.disruption_budget.is_some(),
        "two pods: one disruption at a time"
    );
}

#[test]
fn api_keys_are_a_mounted_file_that_rotates_without_a_restart() {
    let c = build_for(&format!(
        "{LOCAL}\nauth: {{apiKeysSecretRef: {{name: chat-keys}}, rateLimitPerSecond: 2.5, rateLimitBurst: 5}}"
    ));
    assert_eq!(
        flag(&c, "api-keys-file").as_deref(),
        Some("/etc/mooring/api-keys/keys")
    );
    assert_eq!(flag(&c, "rate-limit-per-second").as_deref(), Some("2.5"));
    assert_eq!(flag(&c, "rate-limit-burst").as_deref(), Some("5"));
    let volume = pod(&c)
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "api-keys")
        .unwrap();
    let secret = volume.secret.as_ref().unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("chat-keys"));
    assert_eq!(secret.items.as_ref().unwrap()[0].key, "keys");
    let mount = container(&c)
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "api-keys")
        .unwrap();
    // A directory mount: the kubelet swaps the file when the Secret changes (a subPath
    // mount would freeze it).
    assert_eq!(mount.sub_path, None);
    assert_eq!(mount.mount_path, children::API_KEYS_DIR);
}

#[test]
fn threads_follow_the_cpu_limit_unless_set() {
    let c = build_for(&format!("{LOCAL}\nresources: {{limits: {{cpu: 1500m}}}}"));
    assert_eq!(
        env(&c, children::THREADS_ENV).unwrap().value.as_deref(),
        Some("2")
    );
    let c = build_for(&format!(
        "{LOCAL}\nresources: {{limits: {{cpu: '4'}}}}\ngeneration: {{threads: 1}}"
    ));
    assert_eq!(
        env(&c, children::THREADS_ENV).unwrap().value.as_deref(),
        Some("1")
    );
    assert_eq!(env(&build_for(LOCAL), children::THREADS_ENV), None);
}

#[test]
fn probes_and_drain() {
    let c = build_for(LOCAL);
    let k = container(&c);
    let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .clone()
            .unwrap()
    };
    assert_eq!(path(&k.readiness_probe), "/readyz");
    assert_eq!(path(&k.liveness_probe), "/healthz");
    let startup = k.startup_probe.as_ref().unwrap();
    assert!(
        startup.failure_threshold.unwrap() * startup.period_seconds.unwrap() >= 600,
        "ten minutes to fetch and load a GGUF"
    );
    assert!(k.lifecycle.as_ref().unwrap().pre_stop.is_some());
    assert!(pod(&c).termination_grace_period_seconds.unwrap() > 30);
    assert_eq!(
        k.security_context
            .as_ref()
            .unwrap()
            .read_only_root_filesystem,
        Some(true)
    );
}

#[test]
fn pod_options_and_autoscaling_are_shared_with_model_deployments() {
    let c = build_for(&format!(
        "{LOCAL}\nmemory: {{store: redis, redis: {{url: 'redis://r'}}}}\nserviceAccountName: chat\nimagePullSecrets: [{{name: regcred}}]\nnodeSelector: {{pool: cpu}}\ntolerations: [{{key: spot, operator: Exists}}]\nenv: [{{name: RUST_LOG, value: debug}}]\nautoscaling: {{minReplicas: 2, maxReplicas: 5, targetCpuUtilizationPercentage: 70}}"
    ).replace(&format!("{LOCAL}\n"), "backend: {kind: local, model: smollm2@production}\nregistry: {local: {path: /models}}\n"));
    let p = pod(&c);
    assert_eq!(p.service_account_name.as_deref(), Some("chat"));
    assert_eq!(p.image_pull_secrets.as_ref().unwrap()[0].name, "regcred");
    assert_eq!(p.node_selector.as_ref().unwrap()["pool"], "cpu");
    assert_eq!(
        p.tolerations.as_ref().unwrap()[0].key.as_deref(),
        Some("spot")
    );
    assert_eq!(env(&c, "RUST_LOG").unwrap().value.as_deref(), Some("debug"));
    assert_eq!(
        c.deployment.spec.as_ref().unwrap().replicas,
        None,
        "the HPA sets the replicas"
    );
    let hpa = c.autoscaler.as_ref().unwrap().spec.as_ref().unwrap();
    assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(2), 5));
    assert_eq!(
        hpa.metrics.as_ref().unwrap()[0]
            .resource
            .as_ref()
            .unwrap()
            .target
            .average_utilization,
        Some(70)
    );
}

#[test]
fn service_and_url() {
    let c = build_for(LOCAL);
    let ports: Vec<i32> = c
        .service
        .spec
        .as_ref()
        .unwrap()
        .ports
        .iter()
        .flatten()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, [8080, 8081]);
    assert_eq!(
        children::url("assistant", "ml"),
        "http://assistant.ml.svc:8080/v1"
    );
}

#[test]
fn template_hash_ignores_the_model_and_the_replicas() {
    let base = chat(LOCAL).spec;
    let mut moved = base.clone();
    moved.backend.model = Some("smollm2@staging".into());
    moved.replicas = 0;
    assert_eq!(template_hash(&base), template_hash(&moved));
    let mut more_memory = base.clone();
    more_memory.system_prompt = Some("Be brief.".into());
    assert_ne!(template_hash(&base), template_hash(&more_memory));
}

#[test]
fn postgres_memory_and_jwt_sign_in_reach_the_server() {
    let c = build_for(&format!(
        "{LOCAL}\nmemory: {{store: postgres, postgres: {{urlSecretRef: {{name: pg, key: url}}}}}}\nauth: {{apiKeysSecretRef: {{name: keys}}, jwt: {{issuer: 'https://login.example.com/realms/org', audience: chat, jwksUrl: 'https://login.example.com/realms/org/certs'}}}}"
    ));
    assert_eq!(flag(&c, "chat-memory-store").as_deref(), Some("postgres"));
    let url = env(&c, children::POSTGRES_URL_ENV).expect("the URL from its Secret");
    assert_eq!(url.value, None, "never copied into the Deployment");
    let key = url.value_from.unwrap().secret_key_ref.unwrap();
    assert_eq!((key.name.as_str(), key.key.as_str()), ("pg", "url"));
    assert_eq!(
        flag(&c, "auth-jwt-issuer").as_deref(),
        Some("https://login.example.com/realms/org")
    );
    assert_eq!(flag(&c, "auth-jwt-audience").as_deref(), Some("chat"));
    assert_eq!(
        flag(&c, "auth-jwt-jwks-url").as_deref(),
        Some("https://login.example.com/realms/org/certs")
    );
}
