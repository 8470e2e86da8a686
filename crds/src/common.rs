//! Types shared by more than one custom resource.

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

/// An MLflow model registry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MlflowRegistrySpec {
    /// Base URL of the MLflow server, e.g. `http://mlflow.mlops:5000`.
    #[schemars(length(min = 1))]
    pub url: String,
    /// Secret key holding a bearer token for MLflow, when the server requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
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
