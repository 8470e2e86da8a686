//! Types shared by more than one custom resource.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvFromSource, LocalObjectReference, Toleration, TopologySpreadConstraint, Volume,
    VolumeMount,
};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A key of a Secret in the resource's own namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret (same namespace as this resource).
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key inside the Secret whose value is used.
    #[serde(default = "default_token_key")]
    pub key: String,
}

fn default_token_key() -> String {
    "token".to_string()
}

/// Where the model registry is. Set exactly one of `mlflow` or `local`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.mlflow) != has(self.local)").message("set exactly one of registry.mlflow or registry.local"))]
pub struct RegistrySpec {
    /// An MLflow tracking server with its model registry (REST API `/api/2.0/mlflow/…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<MlflowRegistrySpec>,
    /// A directory laid out as `<name>/<version>/…` with `<name>/aliases.json`, inside the
    /// inference-server pod (baked into the image, or a mounted volume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalRegistrySpec>,
}

/// Key of the username in a `kubernetes.io/basic-auth` Secret.
pub const BASIC_AUTH_USERNAME_KEY: &str = "username";
/// Key of the password in a `kubernetes.io/basic-auth` Secret.
pub const BASIC_AUTH_PASSWORD_KEY: &str = "password";

/// An MLflow model registry, and how to authenticate to it: a bearer token
/// (`tokenSecretRef`), a username and password (`basicAuthSecretRef`), or neither.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.tokenSecretRef) && has(self.basicAuthSecretRef))").message("set at most one of mlflow.tokenSecretRef or mlflow.basicAuthSecretRef"))]
pub struct MlflowRegistrySpec {
    /// Base URL of the MLflow server, e.g. `http://mlflow.mlops:5000`.
    #[schemars(length(min = 1))]
    pub url: String,
    /// Secret key holding a bearer token for MLflow, when the server requires one (e.g. a
    /// Databricks personal access token). Not together with `basicAuthSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
    /// Secret holding a username and password for an MLflow server with HTTP basic
    /// authentication (`mlflow server --app-name basic-auth`), under the keys `username` and
    /// `password`: the layout of a `kubernetes.io/basic-auth` Secret. Not together with
    /// `tokenSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth_secret_ref: Option<SecretRef>,
}

/// A model registry in a local directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalRegistrySpec {
    /// Path of the registry directory as seen by the inference-server pod, e.g. `/models`.
    #[schemars(length(min = 1))]
    pub path: String,
    /// A PersistentVolumeClaim to mount at `path`; leave empty when the directory is baked into
    /// the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<String>,
}

/// A Secret (the whole of it) in the resource's own namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret (same namespace as this resource).
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Pod options shared by every workload the operator creates (ModelDeployment and
/// ChatService pods, drift Jobs): where the pods run, as whom, and what they mount. Each
/// field is passed through unchanged to the pod template (volume mounts and `envFrom` to the
/// main container).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOptions {
    /// ServiceAccount of the pods (e.g. for IRSA or workload identity to reach an S3 sink).
    /// Without one, the namespace's `default` is used and its token is not mounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Secrets for pulling the image from a private registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node and pod (anti-)affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// How the pods spread over zones and nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Extra volumes of the pods (e.g. a ReadWriteMany PVC holding a `file://` prediction log).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Where the main container mounts `volumes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Environment of the main container from whole ConfigMaps or Secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    /// Extra annotations of the pods (e.g. for a service mesh or a log shipper).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
    /// Extra labels of the pods (the operator's own selector labels cannot be overridden).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
}
