//! Server-side apply of the children and the status, under one field manager.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use mooring_crds::ModelDeployment;
use mooring_crds::model_deployment::ModelDeploymentStatus;

use super::children::{DesiredChildren, VERSION_LABEL, selector_labels};
use super::rollout::{self, Observation, Rollout};

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
    #[error("applying {kind} {name}: {source}")]
    Other {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading {kind} {name}: {source}")]
    Read {
        kind: &'static str,
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
            Error::Other { .. } => "ApplyFailed",
            Error::Read { .. } => "ReadFailed",
            Error::Pods { .. } => "ListPodsFailed",
            Error::Status { .. } => "StatusWriteFailed",
        }
    }
}

fn params() -> PatchParams {
    // force: the operator owns these fields; a conflicting manager (kubectl edit) is overridden.
    PatchParams::apply(FIELD_MANAGER).force()
}

/// The APIs of a ModelDeployment's children, in its namespace.
pub struct ChildApis {
    pub deployments: Api<Deployment>,
    pub services: Api<Service>,
    pub autoscalers: Api<HorizontalPodAutoscaler>,
    pub budgets: Api<PodDisruptionBudget>,
}

impl ChildApis {
    pub fn namespaced(client: &Client, namespace: &str) -> Self {
        ChildApis {
            deployments: Api::namespaced(client.clone(), namespace),
            services: Api::namespaced(client.clone(), namespace),
            autoscalers: Api::namespaced(client.clone(), namespace),
            budgets: Api::namespaced(client.clone(), namespace),
        }
    }
}

/// Why the Deployment or Service named `name` is not ours to apply, if one exists that
/// another owner controls (or nobody does): server-side apply with `force` would take it over.
pub async fn foreign_children(apis: &ChildApis, name: &str, uid: &str) -> Result<Option<String>> {
    let describe =
        |kind: &str, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            let controller = meta
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true));
            match controller {
                Some(o) if o.uid == uid => None,
                Some(o) => Some(format!(
                    "{kind} {name} already exists, controlled by {} {}: not adopted; rename this ModelDeployment or remove that {kind}",
                    o.kind, o.name
                )),
                None => Some(format!(
                    "{kind} {name} already exists and is not owned by this ModelDeployment: not adopted; rename this ModelDeployment or delete that {kind}"
                )),
            }
        };
    let read = |kind: &'static str| {
        move |source| Error::Read {
            kind,
            name: name.to_string(),
            source,
        }
    };
    if let Some(d) = apis
        .deployments
        .get_opt(name)
        .await
        .map_err(read("Deployment"))?
        && let Some(message) = describe("Deployment", &d.metadata)
    {
        return Ok(Some(message));
    }
    if let Some(s) = apis.services.get_opt(name).await.map_err(read("Service"))?
        && let Some(message) = describe("Service", &s.metadata)
    {
        return Ok(Some(message));
    }
    Ok(None)
}

/// Apply the children; returns the Deployment as the API server now has it. The optional
/// children (autoscaler, disruption budget) that `desired` lacks are deleted when
/// `spec_changed` (they can only have become unwanted through a spec change).
pub async fn children(
    apis: &ChildApis,
    desired: &DesiredChildren,
    spec_changed: bool,
) -> Result<Deployment> {
    let name = desired.deployment.metadata.name.clone().unwrap_or_default();
    let deployment = apis
        .deployments
        .patch(&name, &params(), &Patch::Apply(&desired.deployment))
        .await
        .map_err(|source| Error::Deployment {
            name: name.clone(),
            source,
        })?;
    apis.services
        .patch(&name, &params(), &Patch::Apply(&desired.service))
        .await
        .map_err(|source| Error::Service {
            name: name.clone(),
            source,
        })?;
    let other = |kind: &'static str| {
        let name = name.clone();
        move |source| Error::Other { kind, name, source }
    };
    match &desired.autoscaler {
        Some(hpa) => {
            apis.autoscalers
                .patch(&name, &params(), &Patch::Apply(hpa))
                .await
                .map_err(other("HorizontalPodAutoscaler"))?;
        }
        None if spec_changed => gone_is_fine(
            apis.autoscalers
                .delete(&name, &DeleteParams::background())
                .await,
        )
        .map_err(other("HorizontalPodAutoscaler"))?,
        None => {}
    }
    match &desired.disruption_budget {
        Some(pdb) => {
            apis.budgets
                .patch(&name, &params(), &Patch::Apply(pdb))
                .await
                .map_err(other("PodDisruptionBudget"))?;
        }
        None if spec_changed => gone_is_fine(
            apis.budgets
                .delete(&name, &DeleteParams::background())
                .await,
        )
        .map_err(other("PodDisruptionBudget"))?,
        None => {}
    }
    Ok(deployment)
}

/// A delete of something already gone is done.
fn gone_is_fine<T>(result: kube::Result<T>) -> kube::Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(err),
    }
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

/// How the rollout of the Deployment `name` stands. While it progresses, once its controller
/// has seen the latest template and some pods run it, the pods of `version` are read too, so
/// that a crash loop or an image pull error shows before the progress deadline.
pub async fn observe_rollout(
    pods: &Api<Pod>,
    name: &str,
    deployment: &Deployment,
    version: &str,
) -> Result<Observation> {
    let observation = rollout::observe(deployment, &[]);
    let seen = deployment
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        >= deployment.metadata.generation;
    if observation.rollout == Rollout::Progressing && seen && observation.replicas.updated > 0 {
        let pods = pods_of_version(pods, name, version).await?;
        return Ok(rollout::observe(deployment, &pods));
    }
    Ok(observation)
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
