//! `ModelDeployment`: serve one registered model, following a registry alias or pinned to a
//! version.

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{PodOptions, RegistrySpec};

/// How many entries `status.history` keeps (oldest dropped first).
pub const HISTORY_LIMIT: usize = 10;

/// Annotation through which a DriftMonitor (field manager `mooring-drift-monitor`) asks the
/// ModelDeployment controller to roll back: a JSON [`RollbackRequest`]. The ModelDeployment
/// controller only reads it, honours it by setting `status.rollbackPin` (`setBy:
/// DriftMonitor`, `requestId`), and ignores a request whose `fromVersion` is not the version
/// serving. Each field keeps one writer: the monitor owns the annotation, the ModelDeployment
/// controller its status.
pub const ROLLBACK_REQUEST_ANNOTATION: &str = "mooring.dev/rollback-request";

/// Annotation a user sets to any new value to clear a rollback pin and retry the version
/// the alias names (`kubectl annotate md NAME mooring.dev/retry=$(date +%s) --overwrite`).
pub const RETRY_ANNOTATION: &str = "mooring.dev/retry";

/// A DriftMonitor's request to roll a ModelDeployment back, the value of
/// [`ROLLBACK_REQUEST_ANNOTATION`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackRequest {
    /// Unique per request, e.g. `<monitor>/<job name>`; copied into `rollbackPin.requestId`
    /// when honoured.
    pub id: String,
    /// The version found drifting: the request holds only while it is the version serving.
    pub from_version: String,
    /// The version to serve instead (the one served before `fromVersion`).
    pub to_version: String,
    /// Why, for people (e.g. the drift share and drifted features).
    pub reason: String,
}

/// Condition types written to `status.conditions`.
pub mod condition {
    /// The resolved version is rolled out and enough replicas are ready.
    pub const READY: &str = "Ready";
    /// A rollout of a new version (or a scale change) is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// The last rollout failed, or the deployment was rolled back.
    pub const DEGRADED: &str = "Degraded";
    /// The last call to the model registry succeeded.
    pub const REGISTRY_REACHABLE: &str = "RegistryReachable";
    /// kstatus: the controller is working towards the spec (a rollout, a retry after an
    /// error); `False` once it is done.
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: the controller cannot make progress without a change from the user (invalid
    /// spec, rolled back, failed rollout with nothing to roll back to).
    pub const STALLED: &str = "Stalled";
}

/// Serve one model from a model registry as a Deployment and a Service running the Mooring
/// inference server (Open Inference Protocol over REST and gRPC). The model follows a registry
/// alias (e.g. `production`) or is pinned to a version; moving the alias or the pin rolls the
/// pods out to the new version, and a failed rollout is rolled back automatically.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "mooring.dev",
    version = "v1alpha1",
    kind = "ModelDeployment",
    namespaced,
    status = "ModelDeploymentStatus",
    shortname = "md",
    category = "mooring",
    doc = "Serves one registered model, following a registry alias or pinned to a version.",
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.model.name"),
    printcolumn(name = "Alias", type_ = "string", json_path = ".spec.model.alias"),
    printcolumn(
        name = "Pinned",
        type_ = "string",
        json_path = ".spec.model.version",
        priority = "1"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        description = "The version in force",
        json_path = ".status.version"
    ),
    printcolumn(
        name = "Rollback-Pin",
        type_ = "string",
        json_path = ".status.rollbackPin.version"
    ),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Degraded",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Degraded\")].reason",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentSpec {
    /// The registered model to serve.
    pub model: ModelSelector,
    /// The model registry holding the model.
    pub registry: RegistrySpec,
    /// Number of inference-server pods.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Inference-server image. Defaults to the operator's `--default-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// CPU and memory requests and limits of the inference-server container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment variables of the inference-server container (e.g. `RUST_LOG`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// How new versions are rolled out and rolled back.
    #[serde(default)]
    pub rollout: RolloutSpec,
    /// Log a sample of requests and predictions for drift monitoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_log: Option<PredictionLogSpec>,
    /// Scale the pods with a HorizontalPodAutoscaler instead of `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Scheduling, identity and volumes of the pods.
    #[serde(flatten)]
    pub pod: PodOptions,
}

fn default_replicas() -> i32 {
    1
}

/// A model by name, and either the alias to follow or a pinned version (exactly one).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.alias) != has(self.version)").message("set exactly one of model.alias (follow it) or model.version (pin)"))]
pub struct ModelSelector {
    /// Registered model name, e.g. `iris-classifier`.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Registry alias to follow, e.g. `production`; re-resolved every
    /// `rollout.resolveIntervalSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Version to pin, e.g. `3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Rollout and rollback behaviour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Roll back to the last version that became ready when a rollout fails (its deadline
    /// passes, or its new pods keep crashing).
    #[serde(default = "default_true")]
    pub auto_rollback: bool,
    /// Seconds a rollout may take before it counts as failed (the Deployment's
    /// `progressDeadlineSeconds`).
    #[serde(default = "default_progress_deadline")]
    #[schemars(range(min = 10))]
    pub progress_deadline_seconds: i32,
    /// How often, in seconds, the alias is resolved again in the registry.
    #[serde(default = "default_resolve_interval")]
    #[schemars(range(min = 5))]
    pub resolve_interval_seconds: i32,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        RolloutSpec {
            auto_rollback: true,
            progress_deadline_seconds: default_progress_deadline(),
            resolve_interval_seconds: default_resolve_interval(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_progress_deadline() -> i32 {
    300
}
fn default_resolve_interval() -> i32 {
    30
}

/// Where the inference server logs requests and predictions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PredictionLogSpec {
    /// Sink URL: `file:///var/log/mooring` (a mounted volume) or `s3://bucket/prefix`.
    #[x_kube(validation = Rule::new("self.startsWith('file:///') || self.startsWith('s3://')").message("predictionLog.sink must start with file:/// or s3://"))]
    pub sink: String,
    /// Fraction of requests logged, from 0 to 1.
    #[serde(default = "default_sample_rate")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sample_rate: f64,
    /// The volume mounted at a `file://` sink's path (required for `file://`: the pods'
    /// root filesystem is read-only). ReadWriteMany when a DriftMonitor's Job reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<PredictionLogVolume>,
}

/// The volume holding a `file://` prediction log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PredictionLogVolume {
    /// Name of a PersistentVolumeClaim in the same namespace.
    #[schemars(length(min = 1))]
    pub persistent_volume_claim: String,
}

/// Horizontal autoscaling of the inference-server pods: with it, the operator creates a
/// HorizontalPodAutoscaler and no longer sets the Deployment's replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not exceed autoscaling.maxReplicas"))]
pub struct AutoscalingSpec {
    /// Fewest pods.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// Most pods.
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Average CPU utilisation (percent of the request) the autoscaler aims at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: Option<i32>,
    /// Average in-flight requests per pod the autoscaler aims at, read through the Prometheus
    /// adapter as the pods metric `mooring_inference_requests_in_flight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target_in_flight_requests: Option<i32>,
}

fn default_sample_rate() -> f64 {
    1.0
}

/// What the operator observed and decided.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The version the spec asks for now: `spec.model.version`, or the version the alias
    /// names in the registry. It differs from `version` while a rollout is under way, after
    /// a rollback, and while the registry is unreachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    /// The version in force: written into the pods' template (it is serving once `Ready` is
    /// `True`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Where the version's artifacts live in the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_uri: Option<String>,
    /// `sha256:<hex>` of the model artifact, when the registry records it; the server
    /// verifies it on load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_digest: Option<String>,
    /// The last versions rolled out, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// Set by an automatic rollback or a DriftMonitor: the version served instead of the one
    /// the alias names, until the alias or the spec moves past `replacesVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_pin: Option<RollbackPin>,
    /// Pods of the Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Pods that pass their readiness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Pods running the current template (the version in force).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i32>,
    /// In-cluster URLs of the model's endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
    /// The last value of the `mooring.dev/retry` annotation acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_retry: Option<String>,
    /// The `id` of the last DriftMonitor rollback request honoured (each is honoured once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_rollback_request: Option<String>,
    /// `Ready`, `Progressing`, `Degraded`, `RegistryReachable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One version that was rolled out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The registry version.
    pub version: String,
    /// Its artifact digest, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// When the operator started rolling it out.
    pub started_at: Time,
    /// When all its replicas first became ready; empty if they never did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<Time>,
    /// What became of the rollout.
    pub outcome: RolloutOutcome,
    /// Why, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The outcome of rolling out one version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RolloutOutcome {
    /// Being rolled out.
    Progressing,
    /// Rolled out; all replicas became ready.
    Ready,
    /// Did not become ready in time, or its pods kept crashing.
    Failed,
    /// Replaced by a later version.
    Superseded,
}

/// A version served instead of the one the alias names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackPin {
    /// The version served while the pin holds.
    pub version: String,
    /// The version it replaces (the one that failed or drifted). The pin is cleared once the
    /// alias names another version, or the spec names another alias or a version.
    pub replaces_version: String,
    /// The `spec.model` alias in force when the pin was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Who set it.
    pub set_by: PinSource,
    /// Why.
    pub reason: String,
    /// When.
    pub since: Time,
    /// The DriftMonitor request this pin honours (`setBy: DriftMonitor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Digest of the pod template (image, resources, env, pod options) the replaced version
    /// failed with: a spec change of any of these clears the pin and retries the alias's
    /// version with the new template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_hash: Option<String>,
}

/// Who set a rollback pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PinSource {
    /// The ModelDeployment controller, after a failed rollout.
    AutoRollback,
    /// A DriftMonitor with `action.onDrift: Rollback`.
    DriftMonitor,
}

/// In-cluster URLs of a model's endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// REST base URL (Open Inference Protocol `/v2/…` and `/api/v1/…`).
    pub rest: String,
    /// gRPC address (`inference.GRPCInferenceService`).
    pub grpc: String,
}
