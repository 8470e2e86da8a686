//! Server-side apply of the children and the status, under one field manager.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use mooring_crds::ModelDeployment;
use mooring_crds::model_deployment::ModelDeploymentStatus;

use super::children::{DesiredChildren, VERSION_LABEL, selector_labels};

/// The one field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = "mooring-operator";

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("applying Deployment {name}: {source}")]
    Deployment {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("applying Service {name}: {source}")]
    Service {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("listing pods of {name}: {source}")]
    Pods {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing status of {name}: {source}")]
    Status {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Deployment { .. } => "ApplyDeploymentFailed",
            Error::Service { .. } => "ApplyServiceFailed",
            Error::Pods { .. } => "ListPodsFailed",
            Error::Status { .. } => "StatusWriteFailed",
        }
    }
}

fn params() -> PatchParams {
    // force: the operator owns these fields; a conflicting manager (kubectl edit) is overridden.
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Apply the Deployment and Service; returns the Deployment as the API server now has it.
pub async fn children(
    deployments: &Api<Deployment>,
    services: &Api<Service>,
    desired: &DesiredChildren,
) -> Result<Deployment> {
    let name = desired.deployment.metadata.name.clone().unwrap_or_default();
    let deployment = deployments
        .patch(&name, &params(), &Patch::Apply(&desired.deployment))
        .await
        .map_err(|source| Error::Deployment {
            name: name.clone(),
            source,
        })?;
    services
        .patch(&name, &params(), &Patch::Apply(&desired.service))
        .await
        .map_err(|source| Error::Service {
            name: name.clone(),
            source,
        })?;
    Ok(deployment)
}

/// The pods of one version of a ModelDeployment.
pub async fn pods_of_version(pods: &Api<Pod>, md_name: &str, version: &str) -> Result<Vec<Pod>> {
    let mut selector: Vec<String> = selector_labels(md_name)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    selector.push(format!("{VERSION_LABEL}={version}"));
    let list = pods
        .list(&ListParams::default().labels(&selector.join(",")))
        .await
        .map_err(|source| Error::Pods {
            name: md_name.into(),
            source,
        })?;
    Ok(list.items)
}

/// Apply the status subresource.
pub async fn status(
    api: &Api<ModelDeployment>,
    name: &str,
    status: &ModelDeploymentStatus,
) -> Result<()> {
    let body = serde_json::json!({
        "apiVersion": "mooring.dev/v1alpha1",
        "kind": "ModelDeployment",
        "status": status,
    });
    api.patch_status(name, &params(), &Patch::Apply(&body))
        .await
        .map_err(|source| Error::Status {
            name: name.into(),
            source,
        })?;
    Ok(())
}
