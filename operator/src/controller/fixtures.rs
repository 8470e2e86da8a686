//! Small builders for the controller's tests.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mooring_crds::ModelDeployment;
use mooring_crds::model_deployment::{
    ModelDeploymentSpec, ModelDeploymentStatus, PinSource, RollbackPin,
};

/// A spec from a YAML fragment (defaults applied as the API server would).
pub fn spec_from_yaml(yaml: &str) -> ModelDeploymentSpec {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("bad spec fixture: {e}\n{yaml}"))
}

/// A ModelDeployment `iris` in namespace `ml` with the given spec.
pub fn md_from_yaml(spec_yaml: &str) -> ModelDeployment {
    let mut md = ModelDeployment::new("iris", spec_from_yaml(spec_yaml));
    md.metadata.namespace = Some("ml".into());
    md.metadata.uid = Some("uid-1".into());
    md.metadata.generation = Some(1);
    md
}

pub fn status_from_yaml(yaml: &str) -> ModelDeploymentStatus {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("bad status fixture: {e}\n{yaml}"))
}

pub fn at(secs: i64) -> Time {
    Time(jiff::Timestamp::from_second(secs).expect("valid test time"))
}

pub fn pin(version: &str, replaces: &str, alias: &str) -> RollbackPin {
    RollbackPin {
        version: version.into(),
        replaces_version: replaces.into(),
        alias: Some(alias.into()),
        set_by: PinSource::AutoRollback,
        reason: "RolloutFailed".into(),
        since: at(0),
        request_id: None,
        template_hash: None,
    }
}
