//! The contract between the operator and the server: every container the operator's builders
//! emit (args and environment variable names are plain strings there) must parse with the
//! server's own `Cli`, so a renamed flag or variable fails here, not in a rollout.

use clap::{CommandFactory, Parser};
use inference_server::config::{Cli, Command};
use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use mooring_crds::ModelDeployment;
use mooring_operator::controller::children::{self, DesiredChildren};
use mooring_operator::controller::resolve::VersionInfo;
use mooring_operator::controller::validate;

/// The flag that reads environment variable `name` in subcommand `sub` (or globally).
fn flag_for_env(sub: &str, name: &str) -> Option<String> {
    let cli = Cli::command();
    let global = cli.get_arguments();
    let sub = cli
        .find_subcommand(sub)
        .expect("subcommand")
        .get_arguments();
    global
        .chain(sub)
        .find(|a| a.get_env().is_some_and(|e| e == name))
        .and_then(|a| a.get_long().map(|l| format!("--{l}")))
}

/// Parse `container` as the server would see it: its args, with each environment variable
/// turned into the flag that reads it (values from Secrets get a placeholder). Environment
/// variables the server does not read fail the test, except `allowed_foreign`.
fn parse_container(container: &Container, allowed_foreign: &[&str]) -> Cli {
    let args = container.args.clone().unwrap_or_default();
    let sub = args.first().cloned().expect("a subcommand");
    let mut argv = vec!["inference-server".to_string()];
    argv.extend(args);
    for env in container.env.iter().flatten() {
        if allowed_foreign.contains(&env.name.as_str()) {
            continue;
        }
        let flag = flag_for_env(&sub, &env.name).unwrap_or_else(|| {
            panic!(
                "the operator sets {} but `inference-server {sub}` reads no such variable",
                env.name
            )
        });
        let value = env
            .value
            .clone()
            .unwrap_or_else(|| "from-a-secret".to_string());
        argv.push(format!("{flag}={value}"));
    }
    Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}:\n{e}"))
}

fn model_deployment(yaml: &str) -> DesiredChildren {
    let mut md: ModelDeployment = serde_yaml::from_str(yaml).expect("fixture");
    md.metadata.namespace = Some("ml".into());
    md.metadata.uid = Some("uid".into());
    let valid = validate::validate_resource(&md).expect("valid fixture");
    let version = VersionInfo {
        version: "2".into(),
        uri: Some("models:/iris/2".into()),
        digest: Some("sha256:abc".into()),
    };
    let owner = OwnerReference {
        name: "iris".into(),
        uid: "uid".into(),
        ..OwnerReference::default()
    };
    children::build(
        &md,
        owner,
        &valid,
        &version,
        "mooring/inference-server:test",
    )
}

fn main_container(c: &DesiredChildren) -> &Container {
    &c.deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
}

#[test]
fn model_deployment_pods_parse_with_the_servers_cli() {
    let specs = [
        // local registry, plain
        "apiVersion: mooring.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: iris}\nspec: {model: {name: iris-classifier, alias: production}, registry: {local: {path: /models}}}",
        // MLflow with a token and an S3 prediction log
        "apiVersion: mooring.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: iris}\nspec: {model: {name: iris-classifier, version: '3'}, registry: {mlflow: {url: 'http://mlflow:5000', tokenSecretRef: {name: t}}}, predictionLog: {sink: 's3://logs/iris', sampleRate: 0.5}}",
        // MLflow basic auth and a file sink on a volume
        "apiVersion: mooring.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: iris}\nspec: {model: {name: iris-classifier, alias: production}, registry: {mlflow: {url: 'http://mlflow:5000', basicAuthSecretRef: {name: b}}}, predictionLog: {sink: 'file:///var/log/mooring', volume: {persistentVolumeClaim: logs}}}",
    ];
    for yaml in specs {
        let children = model_deployment(yaml);
        let cli = parse_container(main_container(&children), &[]);
        let Command::Serve(serve) = cli.command else {
            panic!("serve expected")
        };
        assert_eq!(serve.models, ["iris-classifier@2"], "{yaml}");
    }
}

#[test]
fn a_renamed_variable_would_fail_the_contract() {
    // The check itself must be able to fail: an unknown variable is refused.
    let mut children = model_deployment(
        "apiVersion: mooring.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: iris}\nspec: {model: {name: iris-classifier, alias: production}, registry: {local: {path: /models}}}",
    );
    let container = &mut children
        .deployment
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0];
    container
        .env
        .get_or_insert_with(Vec::new)
        .push(k8s_openapi::api::core::v1::EnvVar {
            name: "MOORING_PREDICTON_LOG".into(),
            value: Some("s3://x".into()),
            ..Default::default()
        });
    let result = std::panic::catch_unwind(|| parse_container(container, &[]));
    assert!(result.is_err());
}

#[test]
fn drift_jobs_parse_with_the_servers_cli() {
    use mooring_operator::drift_monitor::{job, validate as dm_validate};
    let md: ModelDeployment = serde_yaml::from_str(
        "apiVersion: mooring.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: iris, namespace: ml}\nspec: {model: {name: iris-classifier, alias: production}, registry: {mlflow: {url: 'http://mlflow:5000', basicAuthSecretRef: {name: b}}}, predictionLog: {sink: 'file:///var/log/mooring', volume: {persistentVolumeClaim: logs}}}\nstatus: {version: '3', history: [{version: '3', startedAt: '2026-01-01T00:00:00Z', readyAt: '2026-01-01T00:01:00Z', outcome: Ready}]}",
    )
    .unwrap();
    for action in [
        "{onDrift: Notify}",
        "{onDrift: Rollback}",
        "{onDrift: Promote, promote: {alias: production, fromAlias: challenger}}",
    ] {
        let dm: mooring_crds::DriftMonitor = serde_yaml::from_str(&format!(
            "apiVersion: mooring.dev/v1alpha1\nkind: DriftMonitor\nmetadata: {{name: iris-drift, namespace: ml, uid: u}}\nspec:\n  target: {{modelDeployment: iris}}\n  window: {{since: 24h, maxSamples: 1000}}\n  reference: {{uri: 's3://refs/iris.csv'}}\n  env: [{{name: AWS_REGION, value: eu-west-1}}]\n  action: {action}"
        ))
        .unwrap();
        let valid = dm_validate::validate(&dm.spec).expect("valid monitor");
        let target = dm_validate::target("iris", Some(&md)).expect("valid target");
        let owner = OwnerReference {
            name: "iris-drift".into(),
            uid: "u".into(),
            ..OwnerReference::default()
        };
        let built = job::build(&job::Inputs {
            monitor: &dm,
            owner,
            valid: &valid,
            target: &target,
            scheduled: "2026-01-01T01:00:00Z".parse().unwrap(),
            default_image: "mooring/inference-server:test",
        });
        let pod = built.spec.unwrap().template.spec.unwrap();
        // AWS_REGION is the user's, for the S3 client: not a server flag.
        let cli = parse_container(&pod.containers[0], &["AWS_REGION"]);
        let Command::Drift(args) = cli.command else {
            panic!("drift expected")
        };
        let debug = format!("{args:?}");
        assert!(debug.contains("iris-classifier"), "{debug}");
    }
}

fn chat_service(yaml: &str) -> DesiredChildren {
    let mut chat: mooring_crds::ChatService = serde_yaml::from_str(yaml).expect("fixture");
    chat.metadata.namespace = Some("ml".into());
    chat.metadata.uid = Some("uid".into());
    let valid =
        mooring_operator::chat_service::validate::validate_resource(&chat).expect("valid fixture");
    let version = VersionInfo {
        version: "2".into(),
        uri: Some("file:///models/smollm2/2".into()),
        digest: Some("sha256:abc".into()),
    };
    let owner = OwnerReference {
        name: "assistant".into(),
        uid: "uid".into(),
        ..OwnerReference::default()
    };
    let local = valid.target().is_some();
    mooring_operator::chat_service::children::build(
        &chat,
        owner,
        &valid,
        local.then_some(&version),
        "mooring/inference-server:test",
    )
}

/// Variables the operator sets for libraries in the server, not for its `Cli`.
const LIBRARY_ENV: [&str; 1] = [mooring_operator::chat_service::children::THREADS_ENV];

#[test]
fn chat_service_pods_parse_with_the_servers_cli() {
    let head = "apiVersion: mooring.dev/v1alpha1\nkind: ChatService\nmetadata: {name: assistant}\n";
    let specs = [
        // local GGUF from a local registry, everything the spec can say
        "spec: {backend: {kind: local, model: smollm2@production}, registry: {local: {path: /models}}, systemPrompt: Be brief., generation: {maxTokens: 128, temperature: 0, threads: 2}, guard: {promptInjection: flag, maxPromptChars: 4000}, cache: {exact: false, semantic: false, similarityThreshold: 0.9, maxEntries: 10, ttlSeconds: 60}, auth: {apiKeysSecretRef: {name: keys}, rateLimitPerSecond: 2.5, rateLimitBurst: 5}, memory: {store: redis, redis: {urlSecretRef: {name: redis, key: url}, keyPrefix: 'a:'}}, resources: {limits: {cpu: 1500m}}}",
        // local GGUF from MLflow with a token, threads from the CPU limit
        "spec: {backend: {kind: local, model: smollm2@3}, registry: {mlflow: {url: 'http://mlflow:5000', tokenSecretRef: {name: t}}}, resources: {limits: {cpu: '2'}}}",
        // OpenAI-compatible with an API key, inline Redis
        "spec: {backend: {kind: openai, url: 'http://vllm:8000/v1', model: qwen, apiKeySecretRef: {name: openai, key: key}}, memory: {store: redis, redis: {url: 'redis://redis:6379'}}, replicas: 3}",
        // Ollama
        "spec: {backend: {kind: ollama, url: 'http://ollama:11434', model: llama3.2}}",
        // PostgreSQL sessions and JWT sign-in beside the keys
        "spec: {backend: {kind: ollama, url: 'http://ollama:11434', model: llama3.2}, memory: {store: postgres, postgres: {urlSecretRef: {name: pg, key: url}}}, auth: {apiKeysSecretRef: {name: keys}, jwt: {issuer: 'https://login.example.com', audience: chat, jwksUrl: 'https://login.example.com/certs'}}, replicas: 2}",
    ];
    for spec in specs {
        let yaml = format!("{head}{spec}");
        let children = chat_service(&yaml);
        let cli = parse_container(main_container(&children), &LIBRARY_ENV);
        let Command::Serve(serve) = cli.command else {
            panic!("serve expected")
        };
        assert!(serve.chat, "{yaml}");
        assert!(serve.models.is_empty(), "chat only: {yaml}");
        if spec.contains("kind: local") {
            assert_eq!(
                serve.chat_gguf_model.as_deref(),
                Some("smollm2@2"),
                "{yaml}"
            );
            assert!(serve.source.registry.is_some(), "{yaml}");
        } else {
            assert!(serve.chat_args.chat_url.is_some(), "{yaml}");
        }
    }
}
