//! Small builders for the drift monitor's tests.

use mooring_crds::drift_monitor::DriftMonitorSpec;
use mooring_crds::{DriftMonitor, ModelDeployment};

/// A spec from a YAML fragment (defaults applied as the API server would).
pub fn spec(yaml: &str) -> DriftMonitorSpec {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("bad spec fixture: {e}\n{yaml}"))
}

/// A DriftMonitor `iris-drift` in namespace `ml` with the given spec.
pub fn dm_yaml(spec_yaml: &str) -> DriftMonitor {
    let mut dm = DriftMonitor::new("iris-drift", spec(spec_yaml));
    dm.metadata.namespace = Some("ml".into());
    dm.metadata.uid = Some("dm-uid".into());
    dm.metadata.generation = Some(1);
    dm
}

/// A ModelDeployment `iris` in namespace `ml` from `{spec, status}` YAML.
pub fn md_yaml(yaml: &str) -> ModelDeployment {
    let mut value: serde_json::Value =
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("bad md fixture: {e}\n{yaml}"));
    value["apiVersion"] = "mooring.dev/v1alpha1".into();
    value["kind"] = "ModelDeployment".into();
    value["metadata"] = serde_json::json!({"name": "iris", "namespace": "ml", "uid": "md-uid"});
    serde_json::from_value(value).unwrap_or_else(|e| panic!("bad md fixture: {e}\n{yaml}"))
}

/// A ModelDeployment serving version 3 since t=10060 (ready), after 1 (ready) and 2
/// (failed, never ready).
pub const SERVING_MD: &str = "spec:
  model: {name: iris-classifier, alias: production}
  registry: {local: {path: /models}}
  predictionLog: {sink: 'file:///var/log/mooring', volume: {persistentVolumeClaim: prediction-log}}
status:
  version: '3'
  targetVersion: '3'
  history:
  - {version: '1', startedAt: '1970-01-01T00:00:00Z', readyAt: '1970-01-01T00:01:00Z', outcome: Superseded}
  - {version: '2', startedAt: '1970-01-01T02:00:00Z', outcome: Failed}
  - {version: '3', startedAt: '1970-01-01T02:46:40Z', readyAt: '1970-01-01T02:47:40Z', outcome: Ready}
";
