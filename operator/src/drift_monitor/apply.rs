//! The drift monitor's writes: its Jobs and status (field manager `mooring-operator`), the
//! rollback request on its target (field manager `mooring-drift-monitor`: the annotation is
//! that manager's only field, so the ModelDeployment controller's own applies of the target's
//! status never touch it, and the monitor never touches anything else), and the registry
//! alias move of a promotion.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use mooring_crds::drift_monitor::DriftMonitorStatus;
use mooring_crds::model_deployment::{ROLLBACK_REQUEST_ANNOTATION, RollbackRequest};
use mooring_crds::{DriftMonitor, ModelDeployment};
use mooring_registry::Registry;
use serde_json::json;

use super::job::{MONITOR_LABEL, monitor_label};
use crate::controller::apply::FIELD_MANAGER;

/// The field manager of the rollback-request annotation, and of nothing else.
pub const REQUEST_FIELD_MANAGER: &str = "mooring-drift-monitor";
/// The registry tag naming who promoted a version.
pub const PROMOTED_BY_TAG: &str = "mooring.dev/promoted-by";

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("registry: {0}")]
    Registry(#[from] mooring_registry::Error),
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "KubeError",
            Error::Registry(e) => e.reason(),
        }
    }
}

fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Kube { what, source }
}

fn params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// The Jobs of `monitor` (by label, then by owner, as labels are truncated).
pub async fn jobs_of(jobs: &Api<Job>, monitor: &DriftMonitor) -> Result<Vec<Job>> {
    let name = monitor.metadata.name.clone().unwrap_or_default();
    let uid = monitor.metadata.uid.clone();
    let list = jobs
        .list(&ListParams::default().labels(&format!("{MONITOR_LABEL}={}", monitor_label(&name))))
        .await
        .map_err(kube(format!("listing Jobs of {name}")))?;
    Ok(list
        .items
        .into_iter()
        .filter(|j| {
            uid.is_none()
                || j.metadata
                    .owner_references
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|o| Some(&o.uid) == uid.as_ref()))
        })
        .collect())
}

/// The pods of a Job (the Job controller labels them `job-name=<job>`).
pub async fn pods_of(pods: &Api<Pod>, job_name: &str) -> Result<Vec<Pod>> {
    Ok(pods
        .list(&ListParams::default().labels(&format!("job-name={job_name}")))
        .await
        .map_err(kube(format!("listing pods of Job {job_name}")))?
        .items)
}

/// Create (apply) a Job.
pub async fn job(jobs: &Api<Job>, job: &Job) -> Result<()> {
    let name = job.metadata.name.clone().unwrap_or_default();
    jobs.patch(&name, &params(), &Patch::Apply(job))
        .await
        .map_err(kube(format!("applying Job {name}")))?;
    Ok(())
}

/// Delete a Job and its pods.
pub async fn delete_job(jobs: &Api<Job>, name: &str) -> Result<()> {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match jobs.delete(name, &dp).await {
        Ok(_) => Ok(()),
        // Gone already: what we wanted.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(kube(format!("deleting Job {name}"))(e)),
    }
}

/// Apply the monitor's status.
pub async fn status(
    api: &Api<DriftMonitor>,
    name: &str,
    status: &DriftMonitorStatus,
) -> Result<()> {
    let body = json!({
        "apiVersion": "mooring.dev/v1alpha1",
        "kind": "DriftMonitor",
        "status": status,
    });
    api.patch_status(name, &params(), &Patch::Apply(&body))
        .await
        .map_err(kube(format!("writing status of {name}")))?;
    Ok(())
}

/// The apply body of the rollback request: only the annotation, so this field manager owns
/// nothing else of the target.
pub fn request_body(target: &str, request: Option<&RollbackRequest>) -> serde_json::Value {
    let mut metadata = json!({"name": target});
    if let Some(request) = request {
        let value = serde_json::to_string(request).expect("a request serialises");
        metadata["annotations"] = json!({ ROLLBACK_REQUEST_ANNOTATION: value });
    }
    json!({
        "apiVersion": "mooring.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": metadata,
    })
}

/// Put the request on the target, or (with `None`) take it away: applying without the
/// annotation removes it, as this manager then owns no value for it.
pub async fn rollback_request(
    mds: &Api<ModelDeployment>,
    target: &str,
    request: Option<&RollbackRequest>,
) -> Result<()> {
    let body = request_body(target, request);
    mds.patch(
        target,
        &PatchParams::apply(REQUEST_FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(kube(format!("applying the rollback request on {target}")))?;
    Ok(())
}

/// What a promotion did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Promotion {
    /// The alias moved (and the version was tagged, where the registry has tags).
    Moved { tagged: bool },
    /// Not done, for this reason.
    Skipped(String),
}

/// Move `alias` of `model` to `version`, if `from_alias` still names it; tag the version.
pub async fn promote(
    registry: &dyn Registry,
    model: &str,
    alias: &str,
    from_alias: &str,
    version: &str,
    promoted_by: &str,
) -> Result<Promotion> {
    let now = registry
        .resolve(&mooring_registry::ModelRef::alias(model, from_alias))
        .await?;
    if now.version != version {
        return Ok(Promotion::Skipped(format!(
            "alias {from_alias:?} moved from version {version} to {} since the check: not promoted",
            now.version
        )));
    }
    match registry.set_alias(model, alias, version).await {
        Ok(()) => {}
        Err(mooring_registry::Error::Io { source, context })
            if source.kind() == std::io::ErrorKind::ReadOnlyFilesystem
                || source.raw_os_error() == Some(30)
                || source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            return Ok(Promotion::Skipped(format!(
                "the registry is read-only ({context}: {source}): alias {alias:?} not moved"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    // The alias moved: a failed tag is logged, not a failed promotion.
    let tagged = match registry
        .set_version_tag(model, version, PROMOTED_BY_TAG, promoted_by)
        .await
    {
        Ok(tagged) => tagged,
        Err(e) => {
            tracing::warn!(model, version, error = %e, "could not tag the promoted version");
            false
        }
    };
    Ok(Promotion::Moved { tagged })
}
