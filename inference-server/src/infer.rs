//! What both protocols share: the loaded models, the one inference path (validate → queue →
//! run → observe) and its metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mooring_registry::{FetchedModel, Signature};

use crate::backend::ort::OrtBackend;
use crate::backend::{Backend, BatchConfig, ExecutionHook, ModelHandle};
use crate::error::{Result, ServerError};
use crate::metrics::Metrics;
use crate::tensor::Tensor;
use crate::validate::{validate_inputs, validate_outputs};

/// Which front door a request came through (a metric label and part of an observation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Rest,
    Grpc,
    ApiV1,
    Batch,
}

impl Protocol {
    const COUNT: usize = 4;

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Rest => "rest",
            Protocol::Grpc => "grpc",
            Protocol::ApiV1 => "api_v1",
            Protocol::Batch => "batch",
        }
    }
}

/// One completed inference, handed to an [`InferenceObserver`].
#[derive(Clone, Debug)]
pub struct InferenceRecord {
    pub model: String,
    pub version: String,
    pub request_id: String,
    pub protocol: Protocol,
    pub inputs: Arc<Vec<Tensor>>,
    pub outputs: Arc<Vec<Tensor>>,
    /// The model that answered, for its signature (feature names, class labels).
    pub served: Arc<LoadedModel>,
}

/// Called once per successful inference, on the request's task after the reply is ready.
/// Implementations must not block (e.g. `try_send` into a bounded channel and count drops):
/// the prediction logger is the intended user.
pub trait InferenceObserver: Send + Sync {
    fn observe(&self, record: InferenceRecord);
}

/// Another component's readiness (chat: its backend and session store), reported by
/// `/readyz` under `name`. `Ok(details)` when ready, `Err(details)` when not.
pub trait ReadinessProbe: Send + Sync {
    fn name(&self) -> &'static str;
    fn check(&self)
    -> futures::future::BoxFuture<'_, Result<serde_json::Value, serde_json::Value>>;
}

/// A model version ready to serve.
pub struct LoadedModel {
    pub name: String,
    pub version: String,
    /// `sha256:<hex>` of the served model.onnx.
    pub digest: String,
    pub signature: Signature,
    pub platform: &'static str,
    handle: ModelHandle,
    /// The metric series of this version's successful requests, by protocol, looked up once
    /// (on first use, so a protocol never used shows no series).
    ok_series: [OnceLock<OkSeries>; Protocol::COUNT],
}

/// The series a successful request of one model version and protocol updates.
struct OkSeries {
    requests: prometheus::IntCounter,
    seconds: prometheus::Histogram,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl LoadedModel {
    /// Starts the ONNX Runtime workers for a fetched (digest-verified) model version.
    pub fn load_onnx(
        fetched: &FetchedModel,
        config: &BatchConfig,
        metrics: &Metrics,
    ) -> Result<Self> {
        let path = fetched.model_path();
        let signature = fetched.signature.clone();
        let sig = signature.clone();
        let make = move || OrtBackend::load(&path, &sig).map(|b| Box::new(b) as Box<dyn Backend>);
        Self::with_backend(
            &fetched.version.name,
            &fetched.version.version,
            &fetched.digest,
            signature,
            make,
            config,
            metrics,
        )
    }

    /// Starts workers around any backend (tests use small fakes).
    pub fn with_backend<F>(
        name: &str,
        version: &str,
        digest: &str,
        signature: Signature,
        make_backend: F,
        config: &BatchConfig,
        metrics: &Metrics,
    ) -> Result<Self>
    where
        F: Fn() -> Result<Box<dyn Backend>>,
    {
        let execution = metrics.execution_seconds.with_label_values(&[name]);
        let batch_size = metrics.batch_size.with_label_values(&[name]);
        let hook: ExecutionHook = Arc::new(move |rows: usize, took: Duration| {
            execution.observe(took.as_secs_f64());
            batch_size.observe(rows as f64);
        });
        let handle =
            ModelHandle::spawn(name, make_backend, signature.has_batch_dim(), config, hook)?;
        Ok(Self {
            name: name.to_string(),
            version: version.to_string(),
            digest: digest.to_string(),
            signature,
            platform: "onnxruntime_onnx",
            handle,
            ok_series: Default::default(),
        })
    }

    fn ok_series(&self, metrics: &Metrics, protocol: Protocol) -> &OkSeries {
        self.ok_series[protocol as usize].get_or_init(|| OkSeries {
            requests: metrics.requests.with_label_values(&[
                &self.name,
                &self.version,
                protocol.as_str(),
                "ok",
            ]),
            seconds: metrics
                .request_seconds
                .with_label_values(&[&self.name, protocol.as_str()]),
        })
    }
}

/// One request counted in the in-flight gauge until it is dropped: a request cancelled
/// mid-await (client disconnect, gRPC deadline) is dropped too, and must not leak its +1.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A request after protocol decoding.
pub struct InferRequest {
    pub model: String,
    pub version: Option<String>,
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    /// Output names wanted; empty means all.
    pub outputs: Vec<String>,
}

pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    pub id: String,
    pub outputs: Vec<Tensor>,
}

/// The served versions of one model: requests naming no version get the default (the first
/// one given on the command line), `/versions/{v}` picks another (to compare or shadow).
struct ModelVersions {
    default: Arc<LoadedModel>,
    by_version: BTreeMap<String, Arc<LoadedModel>>,
}

impl ModelVersions {
    /// The default version first, then the others by version.
    fn in_order(&self) -> impl Iterator<Item = &Arc<LoadedModel>> {
        let others = self.by_version.values();
        std::iter::once(&self.default).chain(others.filter(|m| m.version != self.default.version))
    }
}

/// Shared by every handler of both servers.
pub struct ServerState {
    models: BTreeMap<String, ModelVersions>,
    default_model: Option<String>,
    pub metrics: Metrics,
    pub observer: Option<Arc<dyn InferenceObserver>>,
    /// Checked by `/readyz` besides the models (chat mode).
    pub probe: Option<Arc<dyn ReadinessProbe>>,
    /// Largest accepted request body (HTTP) or message (gRPC), in bytes.
    pub max_body_bytes: usize,
    ready: AtomicBool,
    next_id: AtomicU64,
}

impl ServerState {
    /// The first model is the default one of `/api/v1/classify`; of several versions of one
    /// model, the first is the default of requests that name no version. Two entries of the
    /// same version are served once.
    pub fn new(models: Vec<LoadedModel>, metrics: Metrics, max_body_bytes: usize) -> Self {
        let default_model = models.first().map(|m| m.name.clone());
        let mut served: BTreeMap<String, ModelVersions> = BTreeMap::new();
        for model in models.into_iter().map(Arc::new) {
            match served.get_mut(&model.name) {
                Some(versions) if versions.by_version.contains_key(&model.version) => {
                    // `m@production,m@1` with production at 1: one model, loaded once more.
                    tracing::info!(model = %model.name, version = %model.version, "version given twice; served once");
                }
                Some(versions) => {
                    versions.by_version.insert(model.version.clone(), model);
                }
                None => {
                    let by_version = BTreeMap::from([(model.version.clone(), model.clone())]);
                    let versions = ModelVersions {
                        default: model.clone(),
                        by_version,
                    };
                    served.insert(model.name.clone(), versions);
                }
            }
        }
        Self {
            models: served,
            default_model,
            metrics,
            observer: None,
            probe: None,
            max_body_bytes,
            ready: AtomicBool::new(true),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn with_observer(mut self, observer: Arc<dyn InferenceObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn with_probe(mut self, probe: Arc<dyn ReadinessProbe>) -> Self {
        self.probe = Some(probe);
        self
    }

    /// Ready to take traffic: not shutting down, and models loaded (or, in chat-only mode,
    /// something else to serve; `/readyz` then asks its probe too).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && (!self.models.is_empty() || self.probe.is_some())
    }

    /// Marks the server not ready (on shutdown), so probes take it out of rotation while
    /// in-flight requests drain.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Every served model version, each model's default version first.
    pub fn models(&self) -> impl Iterator<Item = &Arc<LoadedModel>> {
        self.models.values().flat_map(ModelVersions::in_order)
    }

    /// The versions of `name` served here, the default first (V2 metadata's `versions`).
    pub fn versions(&self, name: &str) -> Vec<String> {
        self.models
            .get(name)
            .map(|v| v.in_order().map(|m| m.version.clone()).collect())
            .unwrap_or_default()
    }

    pub fn default_model(&self) -> Option<&str> {
        self.default_model.as_deref()
    }

    /// The model named `name`: version `version` when one is given, else its default.
    pub fn model(&self, name: &str, version: Option<&str>) -> Result<&Arc<LoadedModel>> {
        let versions = self
            .models
            .get(name)
            .ok_or_else(|| ServerError::ModelNotFound(name.to_string()))?;
        match version {
            Some(v) if !v.is_empty() => {
                versions
                    .by_version
                    .get(v)
                    .ok_or_else(|| ServerError::VersionNotFound {
                        name: name.to_string(),
                        version: v.to_string(),
                        serving: self.versions(name).join(", "),
                    })
            }
            _ => Ok(&versions.default),
        }
    }

    /// The one inference path of every protocol.
    pub async fn infer(&self, request: InferRequest, protocol: Protocol) -> Result<InferResponse> {
        let started = Instant::now();
        let in_flight = InFlight::enter(&self.metrics.in_flight);
        let model = match self.model(&request.model, request.version.as_deref()) {
            Ok(m) => m,
            Err(e) => {
                drop(in_flight);
                // Unknown names and versions get fixed labels: a client cannot grow the series.
                let (name, version) = if self.models.contains_key(&request.model) {
                    (request.model.as_str(), "unknown")
                } else {
                    ("unknown", "")
                };
                self.count(name, version, protocol, &e, started);
                return Err(e);
            }
        };
        let result = self.infer_with(model, request, protocol).await;
        drop(in_flight);
        match &result {
            Ok(_) => {
                let series = model.ok_series(&self.metrics, protocol);
                series.requests.inc();
                series.seconds.observe(started.elapsed().as_secs_f64());
            }
            Err(e) => self.count(&model.name, &model.version, protocol, e, started),
        }
        result
    }

    /// Counts a failed request under its outcome.
    fn count(
        &self,
        model: &str,
        version: &str,
        protocol: Protocol,
        error: &ServerError,
        started: Instant,
    ) {
        self.metrics
            .requests
            .with_label_values(&[model, version, protocol.as_str(), error.reason()])
            .inc();
        self.metrics
            .request_seconds
            .with_label_values(&[model, protocol.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }

    async fn infer_with(
        &self,
        model: &Arc<LoadedModel>,
        request: InferRequest,
        protocol: Protocol,
    ) -> Result<InferResponse> {
        validate_outputs(&model.signature, &request.outputs)?;
        let inputs = validate_inputs(&model.signature, request.inputs)?;
        let id = request.id.filter(|s| !s.is_empty());
        // Only keep a copy of the inputs when someone will look at them.
        let kept_inputs = self.observer.as_ref().map(|_| Arc::new(inputs.clone()));
        let mut outputs = model.handle.infer(inputs).await?;
        if let (Some(observer), Some(inputs)) = (&self.observer, kept_inputs) {
            let request_id = id
                .clone()
                .unwrap_or_else(|| self.next_id.fetch_add(1, Ordering::Relaxed).to_string());
            observer.observe(InferenceRecord {
                model: model.name.clone(),
                version: model.version.clone(),
                request_id,
                protocol,
                inputs,
                outputs: Arc::new(outputs.clone()),
                served: model.clone(),
            });
        }
        if !request.outputs.is_empty() {
            outputs.retain(|o| request.outputs.contains(&o.name));
        }
        Ok(InferResponse {
            model_name: model.name.clone(),
            model_version: model.version.clone(),
            id: id.unwrap_or_default(),
            outputs,
        })
    }
}
