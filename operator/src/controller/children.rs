//! Build the desired Deployment and Service of a ModelDeployment (pure).
//!
//! The selector labels never mention the version: a selector change would orphan the old
//! pods, and a version change must be an ordinary rolling update of the pod template.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
    MetricIdentifier, MetricSpec, MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, PersistentVolumeClaimVolumeSource,
    PodSpec, PodTemplateSpec, Probe, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mooring_crds::ModelDeployment;
use mooring_crds::common::{BASIC_AUTH_PASSWORD_KEY, BASIC_AUTH_USERNAME_KEY};

use super::resolve::VersionInfo;
use super::validate::{MlflowAuth, RegistryTarget, ValidSpec};

pub const REST_PORT: i32 = 8080;
pub const GRPC_PORT: i32 = 8081;

/// The ports of an `inference-server serve` container: `http` (REST, probes, metrics) and
/// `grpc`, both TCP.
pub fn server_ports() -> Vec<ContainerPort> {
    let port = |name: &str, container_port| ContainerPort {
        name: Some(name.into()),
        container_port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    };
    vec![port("http", REST_PORT), port("grpc", GRPC_PORT)]
}
pub const CONTAINER_NAME: &str = "inference-server";
/// Pod-template annotations carrying what is served.
pub const VERSION_ANNOTATION: &str = "mooring.dev/model-version";
pub const DIGEST_ANNOTATION: &str = "mooring.dev/model-digest";
pub const URI_ANNOTATION: &str = "mooring.dev/model-uri";
/// Pod-template label naming the version, so the pods of one version can be listed.
pub const VERSION_LABEL: &str = "mooring.dev/model-version";
/// Environment variable the inference server reads its MLflow token from.
pub const TOKEN_ENV: &str = "MOORING_REGISTRY_TOKEN";
/// Environment variables the inference server reads MLflow basic-auth credentials from.
pub const USERNAME_ENV: &str = "MOORING_REGISTRY_USERNAME";
pub const PASSWORD_ENV: &str = "MOORING_REGISTRY_PASSWORD";
/// Environment variables carrying `spec.predictionLog` to the server.
pub const PREDICTION_LOG_ENV: &str = "MOORING_PREDICTION_LOG";
/// The server's log format (`json` unless `spec.env` sets it).
pub const LOG_FORMAT_ENV: &str = "MOORING_LOG_FORMAT";
pub const PREDICTION_LOG_SAMPLE_RATE_ENV: &str = "MOORING_PREDICTION_LOG_SAMPLE_RATE";
/// Where the server caches fetched artifacts: an emptyDir, as the root filesystem is read-only.
pub const CACHE_DIR: &str = "/var/cache/mooring";

/// The children of one ModelDeployment.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredChildren {
    pub deployment: Deployment,
    pub service: Service,
    /// With `spec.autoscaling`.
    pub autoscaler: Option<HorizontalPodAutoscaler>,
    /// When more than one pod serves: voluntary disruptions (node drains) take one at a time.
    pub disruption_budget: Option<PodDisruptionBudget>,
}

/// Digest of what the pods run apart from the model version: the image, resources, env,
/// prediction log and pod options. A rollback pin records it, so that a spec change of any
/// of these (say, more memory for a version that was OOM-killed) retries the alias's version.
pub fn template_hash(spec: &mooring_crds::ModelDeploymentSpec) -> String {
    use sha2::Digest;
    let parts = serde_json::json!([
        spec.image,
        spec.resources,
        spec.env,
        spec.prediction_log,
        spec.pod
    ]);
    let digest = sha2::Sha256::digest(parts.to_string().as_bytes());
    hex::encode(&digest[..8])
}

/// Labels that select the pods: fixed for the life of the ModelDeployment.
pub fn selector_labels(md_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "inference-server".to_string(),
        ),
        (
            "app.kubernetes.io/instance".to_string(),
            md_name.to_string(),
        ),
    ])
}

fn common_labels(md_name: &str, model: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(md_name);
    labels.insert(
        "app.kubernetes.io/managed-by".into(),
        "mooring-operator".into(),
    );
    labels.insert("app.kubernetes.io/component".into(), "model-server".into());
    if is_label_value(model) {
        labels.insert("mooring.dev/model".into(), model.into());
    }
    labels
}

/// Kubernetes label values: ≤ 63 characters of `[A-Za-z0-9._-]`, alphanumeric at both ends.
pub fn is_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && v.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && v.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

/// In-cluster endpoints of the Service.
pub fn endpoints(md_name: &str, namespace: &str) -> mooring_crds::model_deployment::Endpoints {
    mooring_crds::model_deployment::Endpoints {
        rest: format!("http://{md_name}.{namespace}.svc:{REST_PORT}"),
        grpc: format!("{md_name}.{namespace}.svc:{GRPC_PORT}"),
    }
}

/// Build the Deployment and Service serving `version`.
pub fn build(
    md: &ModelDeployment,
    owner: OwnerReference,
    valid: &ValidSpec,
    version: &VersionInfo,
    default_image: &str,
) -> DesiredChildren {
    let name = md.metadata.name.clone().unwrap_or_default();
    let namespace = md.metadata.namespace.clone();
    let spec = &md.spec;
    let model = valid.target.name();
    let labels = common_labels(&name, model);
    let meta = ObjectMeta {
        name: Some(name.clone()),
        namespace: namespace.clone(),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    };

    let mut pod_labels = labels.clone();
    if is_label_value(&version.version) {
        pod_labels.insert(VERSION_LABEL.into(), version.version.clone());
    }
    let mut annotations =
        BTreeMap::from([(VERSION_ANNOTATION.to_string(), version.version.clone())]);
    if let Some(digest) = &version.digest {
        annotations.insert(DIGEST_ANNOTATION.into(), digest.clone());
    }
    if let Some(uri) = &version.uri {
        annotations.insert(URI_ANNOTATION.into(), uri.clone());
    }

    // The inference server's `serve` flags (inference-server/src/config.rs). The digest is not
    // an argument: the server verifies each artifact against the version's sha256sums itself.
    let args = vec![
        "serve".to_string(),
        "--registry".into(),
        valid.registry.location().to_string(),
        "--model".into(),
        format!("{model}@{}", version.version),
        "--http-port".into(),
        REST_PORT.to_string(),
        "--grpc-port".into(),
        GRPC_PORT.to_string(),
        "--cache-dir".into(),
        CACHE_DIR.into(),
    ];

    let mut env = spec.env.clone();
    // JSON logs for the cluster's log pipeline, unless the spec chose otherwise.
    if !env.iter().any(|e| e.name == LOG_FORMAT_ENV) {
        env.push(EnvVar {
            name: LOG_FORMAT_ENV.into(),
            value: Some("json".into()),
            ..EnvVar::default()
        });
    }
    let mut log_volume = None;
    if let Some(log) = &spec.prediction_log {
        if let (Some(volume), Some(path)) = (&log.volume, log.sink.strip_prefix("file://")) {
            log_volume = Some((volume.persistent_volume_claim.clone(), path.to_string()));
        }
        env.push(EnvVar {
            name: PREDICTION_LOG_ENV.into(),
            value: Some(log.sink.clone()),
            ..EnvVar::default()
        });
        env.push(EnvVar {
            name: PREDICTION_LOG_SAMPLE_RATE_ENV.into(),
            value: Some(log.sample_rate.to_string()),
            ..EnvVar::default()
        });
    }
    // The root filesystem is read-only: the artifact cache and temporary files get emptyDirs.
    let empty_dir = |name: &str| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    };
    let mut volumes = vec![empty_dir("cache"), empty_dir("tmp")];
    let mut mounts = vec![
        VolumeMount {
            name: "cache".into(),
            mount_path: CACHE_DIR.into(),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        },
    ];
    // Credentials stay in their Secret: the pod reads them itself; none is copied into the
    // Deployment.
    let from_secret = crate::pod::env_from_secret;
    match &valid.registry {
        RegistryTarget::Mlflow {
            auth: Some(MlflowAuth::Token(secret)),
            ..
        } => env.push(from_secret(TOKEN_ENV, &secret.name, &secret.key)),
        RegistryTarget::Mlflow {
            auth: Some(MlflowAuth::Basic(secret)),
            ..
        } => {
            env.push(from_secret(
                USERNAME_ENV,
                &secret.name,
                BASIC_AUTH_USERNAME_KEY,
            ));
            env.push(from_secret(
                PASSWORD_ENV,
                &secret.name,
                BASIC_AUTH_PASSWORD_KEY,
            ));
        }
        RegistryTarget::Local {
            path,
            persistent_volume_claim: Some(claim),
        } => {
            volumes.push(Volume {
                name: "registry".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    read_only: Some(true),
                }),
                ..Volume::default()
            });
            mounts.push(VolumeMount {
                name: "registry".into(),
                mount_path: path.clone(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
        }
        _ => {}
    }
    if let Some((claim, path)) = log_volume {
        volumes.push(Volume {
            name: "prediction-log".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim,
                read_only: Some(false),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "prediction-log".into(),
            mount_path: path,
            ..VolumeMount::default()
        });
    }

    let probe = crate::pod::http_probe;
    let mut container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(
            spec.image
                .clone()
                .unwrap_or_else(|| default_image.to_string()),
        ),
        args: Some(args),
        env: (!env.is_empty()).then_some(env),
        ports: Some(server_ports()),
        readiness_probe: Some(probe("/readyz", 5)),
        liveness_probe: Some(probe("/healthz", 10)),
        // Loading a model can take a while; liveness must not kill a pod that is still loading.
        startup_probe: Some(Probe {
            failure_threshold: Some(60),
            ..probe("/healthz", 2)
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
    crate::pod::drain_on_termination(&mut pod_spec, &mut container);
    pod_spec.containers = vec![container];
    // The user's pod labels and annotations first: the operator's own win on a clash.
    let mut template_labels = spec.pod.pod_labels.clone();
    template_labels.extend(pod_labels);
    let mut template_annotations = spec.pod.pod_annotations.clone();
    template_annotations.extend(annotations);

    let selector = LabelSelector {
        match_labels: Some(selector_labels(&name)),
        match_expressions: None,
    };
    let deployment = Deployment {
        metadata: meta.clone(),
        spec: Some(DeploymentSpec {
            // Under an autoscaler the replicas are its to set: not applying the field hands
            // it over.
            replicas: spec.autoscaling.is_none().then_some(spec.replicas),
            selector: selector.clone(),
            progress_deadline_seconds: Some(spec.rollout.progress_deadline_seconds),
            strategy: Some(surge_strategy()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(template_labels),
                    annotations: Some(template_annotations),
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

    let service = service(meta, &name);
    DesiredChildren {
        deployment,
        service,
        autoscaler,
        disruption_budget,
    }
}

/// The Service in front of an inference-server's pods (ModelDeployment or ChatService):
/// REST on `http` (8080), gRPC on `grpc` (8081).
pub fn service(meta: ObjectMeta, name: &str) -> Service {
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(name)),
            ports: Some(vec![
                ServicePort {
                    name: Some("http".into()),
                    port: REST_PORT,
                    target_port: Some(IntOrString::String("http".into())),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                },
                ServicePort {
                    name: Some("grpc".into()),
                    port: GRPC_PORT,
                    target_port: Some(IntOrString::String("grpc".into())),
                    protocol: Some("TCP".into()),
                    app_protocol: Some("grpc".into()),
                    ..ServicePort::default()
                },
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// A HorizontalPodAutoscaler of the Deployment on CPU and/or in-flight requests (CPU at 80 %
/// when the spec names no target).
/// The rolling update of a serving Deployment: surge, never remove a serving pod first (a
/// broken version must not take capacity).
pub fn surge_strategy() -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(1)),
            max_unavailable: Some(IntOrString::Int(0)),
        }),
    }
}

/// What a serving Deployment has beside it: the HorizontalPodAutoscaler `autoscaling` asks
/// for, and a PodDisruptionBudget over `selector` (one pod down at a time) when at least two
/// pods run at the least.
pub fn scaling_children(
    meta: &ObjectMeta,
    replicas: i32,
    autoscaling: Option<&mooring_crds::model_deployment::AutoscalingSpec>,
    selector: LabelSelector,
) -> (Option<HorizontalPodAutoscaler>, Option<PodDisruptionBudget>) {
    let autoscaler = autoscaling.map(|a| build_autoscaler(meta, a));
    let least_replicas = autoscaling.map_or(replicas, |a| a.min_replicas);
    let disruption_budget = (least_replicas > 1).then(|| PodDisruptionBudget {
        metadata: meta.clone(),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(selector),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    });
    (autoscaler, disruption_budget)
}

pub fn build_autoscaler(
    meta: &ObjectMeta,
    a: &mooring_crds::model_deployment::AutoscalingSpec,
) -> HorizontalPodAutoscaler {
    let mut metrics = Vec::new();
    let cpu = a
        .target_cpu_utilization_percentage
        .or(a.target_in_flight_requests.is_none().then_some(80));
    if let Some(cpu) = cpu {
        metrics.push(MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "cpu".into(),
                target: MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(cpu),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        });
    }
    if let Some(in_flight) = a.target_in_flight_requests {
        metrics.push(MetricSpec {
            type_: "Pods".into(),
            pods: Some(PodsMetricSource {
                metric: MetricIdentifier {
                    name: "mooring_inference_requests_in_flight".into(),
                    selector: None,
                },
                target: MetricTarget {
                    type_: "AverageValue".into(),
                    average_value: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                        in_flight.to_string(),
                    )),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        });
    }
    HorizontalPodAutoscaler {
        metadata: meta.clone(),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: meta.name.clone().unwrap_or_default(),
            },
            min_replicas: Some(a.min_replicas),
            max_replicas: a.max_replicas,
            metrics: Some(metrics),
            behavior: None,
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::md_from_yaml;
    use crate::controller::validate::validate;

    fn build_for(yaml: &str, version: &str) -> DesiredChildren {
        let md = md_from_yaml(yaml);
        let valid = validate(&md.spec).unwrap();
        let owner = OwnerReference {
            name: "iris".into(),
            uid: "uid-1".into(),
            ..OwnerReference::default()
        };
        let info = VersionInfo {
            version: version.into(),
            uri: Some(format!("file:///models/iris/{version}")),
            digest: Some(format!("sha256:{version}{version}")),
        };
        build(
            &md,
            owner,
            &valid,
            &info,
            "ghcr.io/mooring/inference-server:test",
        )
    }

    const BASIC: &str =
        "model: {name: iris, alias: production}\nregistry: {local: {path: /models}}";

    fn pod_spec(c: &DesiredChildren) -> &PodSpec {
        c.deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
    }

    #[test]
    fn pod_template_carries_version_and_digest() {
        let c = build_for(BASIC, "3");
        let template = &c.deployment.spec.as_ref().unwrap().template;
        let ann = template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap();
        assert_eq!(ann[VERSION_ANNOTATION], "3");
        assert_eq!(ann[DIGEST_ANNOTATION], "sha256:33");
        let args = pod_spec(&c).containers[0].args.clone().unwrap();
        let model_at = args.iter().position(|a| a == "--model").unwrap();
        assert_eq!(args[model_at + 1], "iris@3");
        let reg_at = args.iter().position(|a| a == "--registry").unwrap();
        assert_eq!(args[reg_at + 1], "/models");
        assert_eq!(args[0], "serve");
    }

    #[test]
    fn selectors_are_stable_across_versions() {
        let v1 = build_for(BASIC, "1");
        let v2 = build_for(BASIC, "2");
        let sel = |c: &DesiredChildren| c.deployment.spec.as_ref().unwrap().selector.clone();
        assert_eq!(sel(&v1), sel(&v2));
        assert_eq!(
            v1.service.spec.as_ref().unwrap().selector,
            v2.service.spec.as_ref().unwrap().selector
        );
        assert!(
            !sel(&v1).match_labels.unwrap().values().any(|v| v == "1"),
            "no version in the selector"
        );
        // The selector must still match the pods of every version.
        let pods = v2
            .deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        for (k, v) in sel(&v2).match_labels.unwrap() {
            assert_eq!(pods.get(&k), Some(&v));
        }
    }

    #[test]
    fn the_log_format_of_spec_env_wins() {
        let c = build_for(
            "model: {name: iris, alias: production}\nregistry: {local: {path: /models}}\nenv: [{name: MOORING_LOG_FORMAT, value: pretty}]",
            "1",
        );
        let env = pod_spec(&c).containers[0].env.as_ref().unwrap();
        let formats: Vec<_> = env.iter().filter(|e| e.name == LOG_FORMAT_ENV).collect();
        assert_eq!(formats.len(), 1);
        assert_eq!(formats[0].value.as_deref(), Some("pretty"));
    }

    #[test]
    fn resources_env_image_and_replicas_are_carried_through() {
        let c = build_for(
            "model: {name: iris, version: '2'}\nregistry: {mlflow: {url: 'http://mlflow:5000', tokenSecretRef: {name: mlflow-token}}}\nreplicas: 3\nimage: example.com/server:1\nresources: {requests: {cpu: 250m, memory: 256Mi}, limits: {memory: 512Mi}}\nenv: [{name: RUST_LOG, value: debug}]\nrollout: {progressDeadlineSeconds: 120}\npredictionLog: {sink: 's3://logs/iris', sampleRate: 0.25}",
            "2",
        );
        let d = c.deployment.spec.as_ref().unwrap();
        assert_eq!(d.replicas, Some(3));
        assert_eq!(d.progress_deadline_seconds, Some(120));
        let container = &pod_spec(&c).containers[0];
        assert_eq!(container.image.as_deref(), Some("example.com/server:1"));
        let res = container.resources.as_ref().unwrap();
        assert_eq!(res.requests.as_ref().unwrap()["cpu"].0, "250m");
        assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "512Mi");
        let env = container.env.as_ref().unwrap();
        assert_eq!(env[0].name, "RUST_LOG");
        assert_eq!(env[0].value.as_deref(), Some("debug"));
        let format = env.iter().find(|e| e.name == LOG_FORMAT_ENV).unwrap();
        assert_eq!(format.value.as_deref(), Some("json"));
        let sink = env.iter().find(|e| e.name == PREDICTION_LOG_ENV).unwrap();
        assert_eq!(sink.value.as_deref(), Some("s3://logs/iris"));
        let rate = env
            .iter()
            .find(|e| e.name == PREDICTION_LOG_SAMPLE_RATE_ENV)
            .unwrap();
        assert_eq!(rate.value.as_deref(), Some("0.25"));
        let token = env.iter().find(|e| e.name == TOKEN_ENV).unwrap();
        let secret = token
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (secret.name.as_str(), secret.key.as_str(), secret.optional),
            ("mlflow-token", "token", Some(false))
        );
        assert!(
            !env.iter()
                .any(|e| e.name == USERNAME_ENV || e.name == PASSWORD_ENV),
            "a token, not basic auth"
        );
    }

    #[test]
    fn mlflow_basic_auth_comes_from_the_secret() {
        let c = build_for(
            "model: {name: iris, alias: production}\nregistry: {mlflow: {url: 'http://mlflow:5000', basicAuthSecretRef: {name: mlflow-basic}}}\nenv: [{name: RUST_LOG, value: debug}]",
            "2",
        );
        let env = pod_spec(&c).containers[0].env.clone().unwrap();
        let from_secret = |name: &str| {
            let var = env
                .iter()
                .find(|e| e.name == name)
                .unwrap_or_else(|| panic!("no {name} in {env:?}"));
            assert_eq!(var.value, None, "{name}: never the value itself");
            let secret = var
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .clone()
                .unwrap();
            (secret.name, secret.key, secret.optional)
        };
        assert_eq!(
            from_secret(USERNAME_ENV),
            ("mlflow-basic".into(), "username".into(), Some(false))
        );
        assert_eq!(
            from_secret(PASSWORD_ENV),
            ("mlflow-basic".into(), "password".into(), Some(false))
        );
        assert!(env.iter().all(|e| e.name != TOKEN_ENV), "{env:?}");
        assert_eq!(env[0].name, "RUST_LOG", "the spec's env comes first");
    }

    #[test]
    fn probes_ports_and_security() {
        let c = build_for(BASIC, "1");
        let container = &pod_spec(&c).containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("ghcr.io/mooring/inference-server:test"),
            "default image"
        );
        let path = |p: &Option<Probe>| {
            p.as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .clone()
                .unwrap()
        };
        assert_eq!(path(&container.readiness_probe), "/readyz");
        assert_eq!(path(&container.liveness_probe), "/healthz");
        let ports: Vec<_> = container
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.name.clone().unwrap(), p.container_port))
            .collect();
        assert_eq!(
            ports,
            vec![("http".to_string(), 8080), ("grpc".to_string(), 8081)]
        );
        let writable: Vec<_> = container
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert!(
            writable.contains(&"/tmp") && writable.contains(&CACHE_DIR),
            "{writable:?}"
        );
        let sc = container.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.run_as_non_root, Some(true));
        let svc_ports: Vec<_> = c
            .service
            .spec
            .as_ref()
            .unwrap()
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| p.name.clone().unwrap())
            .collect();
        assert_eq!(svc_ports, vec!["http", "grpc"]);
        assert_eq!(
            c.deployment.metadata.owner_references.as_ref().unwrap()[0].uid,
            "uid-1"
        );
        assert_eq!(
            c.service.metadata.owner_references.as_ref().unwrap()[0].uid,
            "uid-1"
        );
    }

    #[test]
    fn local_registry_on_a_pvc_is_mounted_read_only() {
        let c = build_for(
            "model: {name: iris, alias: production}\nregistry: {local: {path: /models, persistentVolumeClaim: models}}",
            "1",
        );
        let pod = pod_spec(&c);
        let vol = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "registry")
            .unwrap();
        assert_eq!(
            vol.persistent_volume_claim.as_ref().unwrap().claim_name,
            "models"
        );
        let mount = pod.containers[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "registry")
            .unwrap();
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            ("/models", Some(true))
        );
    }

    #[test]
    fn pod_options_labels_and_a_file_sink_volume_reach_the_pod() {
        let c = build_for(
            &format!(
                "{BASIC}\nserviceAccountName: reader\nnodeSelector: {{pool: ml}}\npodLabels: {{team: fraud, app.kubernetes.io/component: other}}\npodAnnotations: {{sidecar.istio.io/inject: 'false'}}\npredictionLog: {{sink: 'file:///var/log/mooring', volume: {{persistentVolumeClaim: logs}}}}"
            ),
            "1",
        );
        let template = &c.deployment.spec.as_ref().unwrap().template;
        let meta = template.metadata.as_ref().unwrap();
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "fraud");
        assert_eq!(
            labels["app.kubernetes.io/component"], "model-server",
            "the operator's own labels win"
        );
        assert_eq!(labels["app.kubernetes.io/name"], "inference-server");
        assert_eq!(
            meta.annotations.as_ref().unwrap()["sidecar.istio.io/inject"],
            "false"
        );
        let pod = pod_spec(&c);
        assert_eq!(pod.service_account_name.as_deref(), Some("reader"));
        assert_eq!(pod.automount_service_account_token, Some(true));
        assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "ml");
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "prediction-log")
            .expect("the log volume");
        assert_eq!(
            volume.persistent_volume_claim.as_ref().unwrap().claim_name,
            "logs"
        );
        let mount = pod.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "prediction-log")
            .unwrap();
        assert_eq!(mount.mount_path, "/var/log/mooring");
        assert!(pod.containers[0].lifecycle.is_some(), "preStop drain");
    }

    #[test]
    fn no_token_and_fixed_replicas_without_autoscaling() {
        let c = build_for(&format!("{BASIC}\nreplicas: 1"), "1");
        assert_eq!(pod_spec(&c).automount_service_account_token, Some(false));
        assert_eq!(c.deployment.spec.as_ref().unwrap().replicas, Some(1));
        assert!(c.autoscaler.is_none() && c.disruption_budget.is_none());
        let c = build_for(&format!("{BASIC}\nreplicas: 3"), "1");
        assert!(c.disruption_budget.is_some(), "more than one replica");
        let c = build_for(
            &format!(
                "{BASIC}\nautoscaling: {{minReplicas: 1, maxReplicas: 4, targetInFlightRequests: 8}}"
            ),
            "1",
        );
        assert_eq!(c.deployment.spec.as_ref().unwrap().replicas, None);
        let metrics = c.autoscaler.unwrap().spec.unwrap().metrics.unwrap();
        assert_eq!(metrics.len(), 1, "only the in-flight metric was asked for");
        assert_eq!(
            metrics[0].pods.as_ref().unwrap().metric.name,
            "mooring_inference_requests_in_flight"
        );
    }

    #[test]
    fn the_template_hash_follows_what_runs_not_the_model() {
        let spec =
            |extra: &str| crate::controller::fixtures::spec_from_yaml(&format!("{BASIC}\n{extra}"));
        let base = template_hash(&spec("replicas: 1"));
        assert_eq!(
            base,
            template_hash(&spec("replicas: 5")),
            "scale is not what runs"
        );
        assert_eq!(
            base,
            template_hash(&crate::controller::fixtures::spec_from_yaml(
                "model: {name: iris, alias: staging}\nregistry: {local: {path: /models}}\nreplicas: 1"
            )),
            "nor is the model"
        );
        assert_ne!(
            base,
            template_hash(&spec("resources: {limits: {memory: 1Gi}}"))
        );
        assert_ne!(
            base,
            template_hash(&spec("env: [{name: RUST_LOG, value: debug}]"))
        );
        assert_ne!(base, template_hash(&spec("image: other:1")));
    }
}
