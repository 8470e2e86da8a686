//! What every pod the operator creates shares (pure): the user's [`PodOptions`] passed
//! through, the token rule, and the drain on termination.

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, HTTPGetAction, Lifecycle, LifecycleHandler,
    PodSecurityContext, PodSpec, Probe, SeccompProfile, SecretKeySelector, SecurityContext,
    SleepAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mooring_crds::PodOptions;

/// Seconds a terminating serving pod keeps answering before it gets SIGTERM, so that the
/// endpoints controller and every kube-proxy drop it from the Service first (otherwise
/// clients see refused connections during a rollout).
pub const PRE_STOP_SLEEP_SECONDS: i64 = 5;
/// Seconds the server then has to finish in-flight requests (streamed answers included)
/// before SIGKILL.
pub const DRAIN_SECONDS: i64 = 30;

/// Pass `opts` through to `pod` and its main `container`.
///
/// The ServiceAccount token is mounted only when the spec names a ServiceAccount: none of
/// the operator's pods calls the Kubernetes API, and a token nobody needs is a token that can
/// leak. Lists are appended to what the builder already put there (the builder's volumes,
/// mounts and labels come first, and selector labels are never overridden: the caller adds
/// them after this).
pub fn apply_pod_options(opts: &PodOptions, pod: &mut PodSpec, container: &mut Container) {
    pod.service_account_name = opts.service_account_name.clone();
    pod.automount_service_account_token = Some(opts.service_account_name.is_some());
    extend(&mut pod.image_pull_secrets, &opts.image_pull_secrets);
    if !opts.node_selector.is_empty() {
        pod.node_selector
            .get_or_insert_with(Default::default)
            .extend(opts.node_selector.clone());
    }
    extend(&mut pod.tolerations, &opts.tolerations);
    if let Some(affinity) = &opts.affinity {
        pod.affinity = Some(affinity.clone());
    }
    extend(
        &mut pod.topology_spread_constraints,
        &opts.topology_spread_constraints,
    );
    extend(&mut pod.volumes, &opts.volumes);
    extend(&mut container.volume_mounts, &opts.volume_mounts);
    extend(&mut container.env_from, &opts.env_from);
}

fn extend<T: Clone>(target: &mut Option<Vec<T>>, extra: &[T]) {
    if !extra.is_empty() {
        target.get_or_insert_with(Vec::new).extend_from_slice(extra);
    }
}

/// A serving pod drains before it stops: a `preStop` sleep (no shell needed in the image)
/// while it is taken out of the Service, then the server's own graceful shutdown.
pub fn drain_on_termination(pod: &mut PodSpec, container: &mut Container) {
    container.lifecycle = Some(Lifecycle {
        pre_stop: Some(LifecycleHandler {
            sleep: Some(SleepAction {
                seconds: PRE_STOP_SLEEP_SECONDS,
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    });
    pod.termination_grace_period_seconds = Some(PRE_STOP_SLEEP_SECONDS + DRAIN_SECONDS);
}

/// An HTTP probe of `path` on the container's `http` port every `period` seconds.
pub fn http_probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// The main container's security context: non-root, read-only root filesystem, no
/// capabilities, no privilege escalation (the `restricted` Pod Security Standard).
pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

/// The pod's security context under the `restricted` Pod Security Standard.
pub fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// Environment variable `name` from key `key` of Secret `secret`: the value stays in the
/// Secret, the pod reads it itself, nothing is copied into the workload's spec.
pub fn env_from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Volume, VolumeMount};

    fn opts(yaml: &str) -> PodOptions {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn no_token_without_a_service_account() {
        let (mut pod, mut c) = (PodSpec::default(), Container::default());
        apply_pod_options(&PodOptions::default(), &mut pod, &mut c);
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.service_account_name, None);
        apply_pod_options(&opts("serviceAccountName: drift-reader"), &mut pod, &mut c);
        assert_eq!(pod.automount_service_account_token, Some(true));
        assert_eq!(pod.service_account_name.as_deref(), Some("drift-reader"));
    }

    #[test]
    fn every_option_is_passed_through() {
        let o = opts(
            "imagePullSecrets: [{name: regcred}]\nnodeSelector: {pool: ml}\ntolerations: [{key: gpu, operator: Exists}]\naffinity: {nodeAffinity: {}}\ntopologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]\nvolumes: [{name: logs, persistentVolumeClaim: {claimName: logs}}]\nvolumeMounts: [{name: logs, mountPath: /var/log/mooring}]\nenvFrom: [{secretRef: {name: s3}}]",
        );
        let mut pod = PodSpec {
            volumes: Some(vec![Volume {
                name: "tmp".into(),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        };
        let mut c = Container {
            volume_mounts: Some(vec![VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..VolumeMount::default()
            }]),
            ..Container::default()
        };
        apply_pod_options(&o, &mut pod, &mut c);
        assert_eq!(pod.image_pull_secrets.as_ref().unwrap()[0].name, "regcred");
        assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "ml");
        assert_eq!(
            pod.tolerations.as_ref().unwrap()[0].key.as_deref(),
            Some("gpu")
        );
        assert!(pod.affinity.is_some());
        assert_eq!(pod.topology_spread_constraints.as_ref().unwrap().len(), 1);
        let volumes: Vec<_> = pod.volumes.unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(volumes, ["tmp", "logs"], "the builder's volumes first");
        let mounts: Vec<_> = c
            .volume_mounts
            .unwrap()
            .into_iter()
            .map(|m| m.mount_path)
            .collect();
        assert_eq!(mounts, ["/tmp", "/var/log/mooring"]);
        assert_eq!(
            c.env_from.unwrap()[0].secret_ref.as_ref().unwrap().name,
            "s3"
        );
    }

    #[test]
    fn drain_outlasts_the_pre_stop_sleep() {
        let (mut pod, mut c) = (PodSpec::default(), Container::default());
        drain_on_termination(&mut pod, &mut c);
        let sleep = c.lifecycle.unwrap().pre_stop.unwrap().sleep.unwrap();
        assert_eq!(sleep.seconds, PRE_STOP_SLEEP_SECONDS);
        assert!(pod.termination_grace_period_seconds.unwrap() > PRE_STOP_SLEEP_SECONDS);
    }
}
