//! The pod options every workload of the operator shares ([`PodOptions`]), applied to a pod
//! spec once, here, for ModelDeployment and ChatService pods and drift Jobs alike.

use k8s_openapi::api::core::v1::{Container, PodSpec};
use mooring_crds::PodOptions;

/// Apply `opts` to `pod` and its main `container`: lists the operator already filled
/// (volumes, mounts, `envFrom`) are extended, never replaced, so its own emptyDirs and
/// registry mounts stay; the rest is set as given. Pod labels and annotations belong to the
/// pod template's metadata and are left to the caller.
pub fn apply_pod_options(opts: &PodOptions, pod: &mut PodSpec, container: &mut Container) {
    if let Some(sa) = &opts.service_account_name {
        pod.service_account_name = Some(sa.clone());
    }
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

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Volume, VolumeMount};

    use super::*;

    fn options() -> PodOptions {
        serde_yaml::from_str(
            r#"
serviceAccountName: drift-reader
imagePullSecrets: [{name: regcred}]
nodeSelector: {pool: batch}
tolerations: [{key: batch, operator: Exists, effect: NoSchedule}]
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a]}]}]}}}
topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway}]
volumes: [{name: predictions, persistentVolumeClaim: {claimName: prediction-log}}]
volumeMounts: [{name: predictions, mountPath: /var/log/mooring}]
envFrom: [{secretRef: {name: aws}}]
podAnnotations: {a: b}
podLabels: {team: ml}
"#,
        )
        .unwrap()
    }

    #[test]
    fn every_option_lands_in_the_pod_and_operator_lists_are_kept() {
        let mut pod = PodSpec {
            volumes: Some(vec![Volume {
                name: "tmp".into(),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        };
        let mut container = Container {
            volume_mounts: Some(vec![VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..VolumeMount::default()
            }]),
            ..Container::default()
        };
        apply_pod_options(&options(), &mut pod, &mut container);
        assert_eq!(pod.service_account_name.as_deref(), Some("drift-reader"));
        assert_eq!(pod.image_pull_secrets.as_ref().unwrap()[0].name, "regcred");
        assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "batch");
        assert_eq!(
            pod.tolerations.as_ref().unwrap()[0].key.as_deref(),
            Some("batch")
        );
        assert!(pod.affinity.as_ref().unwrap().node_affinity.is_some());
        assert_eq!(pod.topology_spread_constraints.as_ref().unwrap().len(), 1);
        let volumes: Vec<_> = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(volumes, ["tmp", "predictions"]);
        let mounts: Vec<_> = container
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(mounts, ["/tmp", "/var/log/mooring"]);
        assert_eq!(
            container.env_from.as_ref().unwrap()[0]
                .secret_ref
                .as_ref()
                .unwrap()
                .name,
            "aws"
        );
    }

    #[test]
    fn empty_options_change_nothing() {
        let mut pod = PodSpec::default();
        let mut container = Container::default();
        apply_pod_options(&PodOptions::default(), &mut pod, &mut container);
        assert_eq!(pod, PodSpec::default());
        assert_eq!(container, Container::default());
    }
}
