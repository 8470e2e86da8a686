//! Build the drift-check Job of one scheduled run (pure).
//!
//! The Job runs `inference-server drift` with the target's image, registry and credentials
//! (the same Secrets under the same variable names as the ModelDeployment's pods), its
//! prediction-log sink and the version it serves; the compact report comes back through
//! the container's termination message.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    SeccompProfile, SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use mooring_crds::DriftMonitor;
use mooring_crds::common::{BASIC_AUTH_PASSWORD_KEY, BASIC_AUTH_USERNAME_KEY};
use mooring_crds::drift_monitor::OnDrift;

use super::validate::{Target, ValidMonitor};
use crate::controller::children::{LOG_FORMAT_ENV, PASSWORD_ENV, TOKEN_ENV, USERNAME_ENV};
use crate::controller::validate::{MlflowAuth, RegistryTarget};
use crate::pod::apply_pod_options;

pub const CONTAINER_NAME: &str = "drift";
/// Label on each Job (and its pod) naming its monitor.
pub const MONITOR_LABEL: &str = "mooring.dev/drift-monitor";
/// Annotations on each Job: the version checked and the scheduled time it runs for.
pub const VERSION_ANNOTATION: &str = "mooring.dev/model-version";
pub const SCHEDULED_ANNOTATION: &str = "mooring.dev/scheduled-time";
/// Where the container writes its compact report: the kubelet turns it into the
/// termination message.
pub const RESULT_FILE: &str = "/dev/termination-log";
const CACHE_DIR: &str = "/var/cache/mooring";

/// The Job name of the run scheduled at `at`: deterministic, so a retried reconcile applies
/// the same Job instead of creating a second one.
pub fn job_name(monitor: &str, at: Timestamp) -> String {
    let stamp = at.as_second().to_string();
    // Job names become a label value of their pods: at most 63 characters.
    let keep = 63 - stamp.len() - 1;
    let base: String = monitor.chars().take(keep).collect();
    format!("{}-{stamp}", base.trim_end_matches('-'))
}

/// Label value naming a monitor (label values are at most 63 characters).
pub fn monitor_label(monitor: &str) -> String {
    monitor.chars().take(63).collect()
}

/// The labels of a monitor's Jobs.
pub fn labels(monitor: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_string(),
            "mooring-operator".to_string(),
        ),
        (
            "app.kubernetes.io/component".to_string(),
            "drift-check".to_string(),
        ),
        (MONITOR_LABEL.to_string(), monitor_label(monitor)),
    ])
}

/// Everything one Job is built from.
pub struct Inputs<'a> {
    pub monitor: &'a DriftMonitor,
    pub owner: OwnerReference,
    pub valid: &'a ValidMonitor,
    pub target: &'a Target,
    pub scheduled: Timestamp,
    pub default_image: &'a str,
}

/// The `inference-server drift` arguments.
pub fn args(valid: &ValidMonitor, target: &Target, dm: &DriftMonitor) -> Vec<String> {
    let w = &dm.spec.window;
    let mut args = vec![
        "drift".to_string(),
        "--sink".into(),
        target.sink.clone(),
        "--model".into(),
        target.model.clone(),
        "--version".into(),
        target.version.clone(),
        "--registry".into(),
        target.registry.location().to_string(),
        "--min-samples".into(),
        w.min_samples.to_string(),
        "--max-samples".into(),
        w.max_samples.to_string(),
    ];
    if let Some(since) = &w.since {
        args.extend(["--since".into(), since.clone()]);
    }
    if let Some(uri) = &valid.reference_uri {
        args.extend(["--reference".into(), uri.clone()]);
    }
    args.extend(valid.test_args.iter().cloned());
    // The challenger gate runs in the same Job, over the same window.
    if valid.on_drift == OnDrift::Promote
        && let Some(promote) = &valid.promote
    {
        args.extend(["--challenger-alias".into(), promote.from_alias.clone()]);
    }
    args.extend([
        "--cache-dir".into(),
        CACHE_DIR.into(),
        "--result-file".into(),
        RESULT_FILE.into(),
    ]);
    args
}

/// The registry credentials as the ModelDeployment's pods get them: read from the Secret by
/// the pod itself, never copied into the Job; a local registry on a PVC is mounted read-only.
pub fn registry_access(registry: &RegistryTarget) -> (Vec<EnvVar>, Vec<Volume>, Vec<VolumeMount>) {
    let from_secret = |env_name: &str, secret: &str, key: &str| EnvVar {
        name: env_name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    match registry {
        RegistryTarget::Mlflow {
            auth: Some(MlflowAuth::Token(s)),
            ..
        } => (
            vec![from_secret(TOKEN_ENV, &s.name, &s.key)],
            vec![],
            vec![],
        ),
        RegistryTarget::Mlflow {
            auth: Some(MlflowAuth::Basic(s)),
            ..
        } => (
            vec![
                from_secret(USERNAME_ENV, &s.name, BASIC_AUTH_USERNAME_KEY),
                from_secret(PASSWORD_ENV, &s.name, BASIC_AUTH_PASSWORD_KEY),
            ],
            vec![],
            vec![],
        ),
        RegistryTarget::Local {
            path,
            persistent_volume_claim: Some(claim),
        } => (
            vec![],
            vec![Volume {
                name: "registry".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    read_only: Some(true),
                }),
                ..Volume::default()
            }],
            vec![VolumeMount {
                name: "registry".into(),
                mount_path: path.clone(),
                read_only: Some(true),
                ..VolumeMount::default()
            }],
        ),
        _ => (vec![], vec![], vec![]),
    }
}

/// Build the Job.
pub fn build(inputs: &Inputs) -> Job {
    let dm = inputs.monitor;
    let spec = &dm.spec;
    let monitor = dm.metadata.name.clone().unwrap_or_default();
    let name = job_name(&monitor, inputs.scheduled);
    let labels = labels(&monitor);

    let (registry_env, registry_volumes, registry_mounts) =
        registry_access(&inputs.target.registry);
    let mut env = vec![EnvVar {
        name: LOG_FORMAT_ENV.into(),
        value: Some("json".into()),
        ..EnvVar::default()
    }];
    env.extend(registry_env);
    // The user's variables last: they may override the log format.
    env.retain(|e| !spec.env.iter().any(|u| u.name == e.name));
    env.extend(spec.env.iter().cloned());

    // The root filesystem is read-only: scratch space and the artifact cache are emptyDirs.
    let empty_dir = |name: &str| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    };
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..VolumeMount::default()
    };
    let mut volumes = vec![empty_dir("cache"), empty_dir("tmp")];
    volumes.extend(registry_volumes);
    let mut mounts = vec![mount("cache", CACHE_DIR), mount("tmp", "/tmp")];
    mounts.extend(registry_mounts);
    // A file:// sink: the target's log volume, where the log is read and the report written.
    if let (Some(claim), Some(path)) = (
        &inputs.target.log_claim,
        inputs.target.sink.strip_prefix("file://"),
    ) {
        volumes.push(Volume {
            name: "prediction-log".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(false),
            }),
            ..Volume::default()
        });
        mounts.push(mount("prediction-log", path));
    }

    let image = spec
        .image
        .clone()
        .or_else(|| inputs.target.image.clone())
        .unwrap_or_else(|| inputs.default_image.to_string());
    let mut container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(image),
        args: Some(args(inputs.valid, inputs.target, dm)),
        env: Some(env),
        resources: spec.resources.clone(),
        volume_mounts: Some(mounts),
        termination_message_path: Some(RESULT_FILE.into()),
        termination_message_policy: Some("File".into()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    let mut pod = PodSpec {
        restart_policy: Some("Never".into()),
        volumes: Some(volumes),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        }),
        ..PodSpec::default()
    };
    // No ServiceAccount token unless the user's ServiceAccount needs it (pod.rs).
    apply_pod_options(&spec.pod, &mut pod, &mut container);
    pod.containers = vec![container];

    let mut pod_labels = spec.pod.pod_labels.clone();
    pod_labels.extend(labels.clone());
    let pod_annotations = spec.pod.pod_annotations.clone();
    let annotations = BTreeMap::from([
        (
            VERSION_ANNOTATION.to_string(),
            inputs.target.version.clone(),
        ),
        (
            SCHEDULED_ANNOTATION.to_string(),
            inputs.scheduled.to_string(),
        ),
    ]);

    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: dm.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![inputs.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(spec.backoff_limit),
            active_deadline_seconds: Some(spec.active_deadline_seconds),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: (!pod_annotations.is_empty()).then_some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift_monitor::fixtures::{SERVING_MD, dm_yaml, md_yaml};
    use crate::drift_monitor::validate;

    fn build_for(dm_spec: &str, md: &str) -> Job {
        let dm = dm_yaml(dm_spec);
        let valid = validate::validate(&dm.spec).unwrap();
        let md = md_yaml(md);
        let target = validate::target("iris", Some(&md)).unwrap();
        build(&Inputs {
            monitor: &dm,
            owner: OwnerReference {
                name: "iris-drift".into(),
                uid: "dm-uid".into(),
                ..OwnerReference::default()
            },
            valid: &valid,
            target: &target,
            scheduled: Timestamp::from_second(1_800_000_000).unwrap(),
            default_image: "mooring/inference-server:default",
        })
    }

    fn pod(job: &Job) -> &PodSpec {
        job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    const MLFLOW_MD: &str = "spec:
  model: {name: iris-classifier, alias: production}
  registry: {mlflow: {url: 'http://mlflow:5000', tokenSecretRef: {name: mlflow-token, key: pat}}}
  image: mooring/inference-server:1.2
  predictionLog: {sink: 's3://logs/iris'}
status: {version: '7'}";

    #[test]
    fn job_runs_the_drift_check_of_the_served_version() {
        let job = build_for(
            "target: {modelDeployment: iris}\nwindow: {maxSamples: 2000, minSamples: 50, since: 24h}",
            MLFLOW_MD,
        );
        assert_eq!(job.metadata.name.as_deref(), Some("iris-drift-1800000000"));
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.uid, "dm-uid");
        assert_eq!(
            job.metadata.labels.as_ref().unwrap()[MONITOR_LABEL],
            "iris-drift"
        );
        let c = &pod(&job).containers[0];
        assert_eq!(c.image.as_deref(), Some("mooring/inference-server:1.2"));
        assert_eq!(
            c.args.as_ref().unwrap(),
            &[
                "drift",
                "--sink",
                "s3://logs/iris",
                "--model",
                "iris-classifier",
                "--version",
                "7",
                "--registry",
                "http://mlflow:5000",
                "--min-samples",
                "50",
                "--max-samples",
                "2000",
                "--since",
                "24h",
                "--drift-share",
                "0.5",
                "--threshold",
                "ks=0.05,wasserstein=0.1,chisquare=0.05,jensenshannon=0.1,psi=0.1",
                "--cache-dir",
                "/var/cache/mooring",
                "--result-file",
                "/dev/termination-log",
            ]
        );
        assert_eq!(c.termination_message_policy.as_deref(), Some("File"));
        assert_eq!(
            c.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
        // The token is read from the target's own Secret, under the server's variable name.
        let token = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == "MOORING_REGISTRY_TOKEN")
            .unwrap();
        let key = token
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (key.name.as_str(), key.key.as_str()),
            ("mlflow-token", "pat")
        );
        assert!(token.value.is_none());
    }

    #[test]
    fn pod_is_locked_down_and_bounded() {
        let job = build_for(
            "target: {modelDeployment: iris}\nactiveDeadlineSeconds: 300\nbackoffLimit: 2\nresources: {limits: {memory: 512Mi}}",
            MLFLOW_MD,
        );
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.active_deadline_seconds, Some(300));
        assert_eq!(spec.backoff_limit, Some(2));
        let p = pod(&job);
        assert_eq!(p.restart_policy.as_deref(), Some("Never"));
        assert_eq!(p.automount_service_account_token, Some(false));
        assert_eq!(
            p.security_context.as_ref().unwrap().run_as_non_root,
            Some(true)
        );
        let c = &p.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            c.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
            "512Mi"
        );
        let mounts: Vec<_> = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(mounts, ["/var/cache/mooring", "/tmp"]);
        assert!(
            p.volumes
                .as_ref()
                .unwrap()
                .iter()
                .all(|v| v.empty_dir.is_some())
        );
    }

    #[test]
    fn defaults_are_a_bounded_job() {
        let job = build_for("target: {modelDeployment: iris}", SERVING_MD);
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.active_deadline_seconds, Some(600));
        assert_eq!(spec.backoff_limit, Some(0));
        // No image anywhere: the operator's default.
        assert_eq!(
            pod(&job).containers[0].image.as_deref(),
            Some("mooring/inference-server:default")
        );
    }

    #[test]
    fn user_pod_options_reach_the_sink() {
        let job = build_for(
            r#"target: {modelDeployment: iris}
image: mooring/inference-server:drift
serviceAccountName: drift-reader
nodeSelector: {pool: batch}
tolerations: [{key: batch, operator: Exists}]
env: [{name: AWS_REGION, value: eu-west-1}, {name: MOORING_LOG_FORMAT, value: pretty}]
envFrom: [{secretRef: {name: aws}}]
volumes: [{name: predictions, persistentVolumeClaim: {claimName: prediction-log}}]
volumeMounts: [{name: predictions, mountPath: /var/log/mooring}]
podLabels: {team: ml}
podAnnotations: {sidecar.istio.io/inject: 'false'}
action: {onDrift: Promote, promote: {alias: production, fromAlias: challenger}}"#,
            SERVING_MD,
        );
        let p = pod(&job);
        assert_eq!(p.service_account_name.as_deref(), Some("drift-reader"));
        assert_eq!(p.automount_service_account_token, Some(true));
        assert_eq!(p.node_selector.as_ref().unwrap()["pool"], "batch");
        assert_eq!(p.tolerations.as_ref().unwrap().len(), 1);
        assert!(
            p.volumes
                .as_ref()
                .unwrap()
                .iter()
                .any(|v| v.name == "predictions")
        );
        let c = &p.containers[0];
        assert_eq!(c.image.as_deref(), Some("mooring/inference-server:drift"));
        let env = c.env.as_ref().unwrap();
        assert!(env.iter().any(|e| e.name == "AWS_REGION"));
        let formats: Vec<_> = env
            .iter()
            .filter(|e| e.name == "MOORING_LOG_FORMAT")
            .map(|e| e.value.as_deref().unwrap())
            .collect();
        assert_eq!(formats, ["pretty"]);
        assert_eq!(c.env_from.as_ref().unwrap().len(), 1);
        assert!(
            c.volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .any(|m| m.mount_path == "/var/log/mooring")
        );
        let args = c.args.as_ref().unwrap();
        let gate = args.iter().position(|a| a == "--challenger-alias").unwrap();
        assert_eq!(args[gate + 1], "challenger");
        let meta = job
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap();
        assert_eq!(meta.labels.as_ref().unwrap()["team"], "ml");
        assert_eq!(meta.labels.as_ref().unwrap()[MONITOR_LABEL], "iris-drift");
        assert_eq!(
            meta.annotations.as_ref().unwrap()["sidecar.istio.io/inject"],
            "false"
        );
    }

    #[test]
    fn local_registry_on_a_claim_is_mounted_read_only() {
        let job = build_for(
            "target: {modelDeployment: iris}\nreference: {uri: 's3://refs/iris.csv'}",
            "spec:
  model: {name: iris-classifier, alias: production}
  registry: {local: {path: /models, persistentVolumeClaim: models}}
  predictionLog: {sink: 'file:///var/log/mooring', volume: {persistentVolumeClaim: prediction-log}}
status: {version: '3'}",
        );
        let c = &pod(&job).containers[0];
        let m = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "registry")
            .unwrap();
        assert_eq!(
            (m.mount_path.as_str(), m.read_only),
            ("/models", Some(true))
        );
        let args = c.args.as_ref().unwrap();
        let r = args.iter().position(|a| a == "--reference").unwrap();
        assert_eq!(args[r + 1], "s3://refs/iris.csv");
    }

    #[test]
    fn long_monitor_names_still_give_valid_job_names() {
        let name = job_name(
            &"m".repeat(100),
            Timestamp::from_second(1_800_000_000).unwrap(),
        );
        assert!(name.len() <= 63, "{name}");
        assert!(name.ends_with("-1800000000"));
    }
}
