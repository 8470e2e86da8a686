//! `register`: upload a model directory as a new MLflow model version.
//!
//! MLflow only accepts a version whose `source` lies inside a run's artifacts, so each
//! registration is a run of the experiment [`EXPERIMENT`]: the files (plus our
//! `sha256sums`) go to `<run artifacts>/model/` through the artifact proxy, the metrics and
//! params of `version.json` are logged on the run and copied to version tags, and the
//! version is created from that directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::artifacts::{ArtifactLocation, parse_artifact_uri};
use super::wire::{
    METRIC_TAG_PREFIX, ModelVersionResponse, PARAM_TAG_PREFIX, SearchVersionsResponse,
};
use super::{Failure, MlflowRegistry};
use crate::digest::Sha256Sums;
use crate::{Error, ModelVersion, Result, SHA256SUMS_FILE, VERSION_META_FILE};

/// The MLflow experiment holding one run per `mooring models register`.
pub const EXPERIMENT: &str = "mooring-registrations";
/// Sub-directory of the run's artifacts that becomes the version's source.
const MODEL_SUBDIR: &str = "model";
/// How long to wait for MLflow to finish a registration (`PENDING_REGISTRATION` → `READY`).
const READY_POLLS: u32 = 60;
const READY_POLL_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Default, Deserialize)]
struct VersionMeta {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    metrics: BTreeMap<String, f64>,
    #[serde(default)]
    params: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct ExperimentResponse {
    experiment: Experiment,
}
#[derive(Deserialize)]
struct Experiment {
    experiment_id: String,
}
#[derive(Deserialize)]
struct CreateExperimentResponse {
    experiment_id: String,
}
#[derive(Deserialize)]
struct RunResponse {
    run: Run,
}
#[derive(Deserialize)]
struct SearchRunsResponse {
    #[serde(default)]
    runs: Vec<Run>,
}
/// Tag of a registration's run holding a token unique to that registration, so a retried
/// `runs/create` can find the run an earlier attempt created.
const REGISTRATION_TAG: &str = "mooring.registration";
#[derive(Deserialize)]
struct Run {
    info: RunInfo,
}
#[derive(Deserialize)]
struct RunInfo {
    run_id: String,
    artifact_uri: String,
}

/// A token no other registration uses: the time, the process and a counter.
fn registration_token(name: &str) -> String {
    use sha2::{Digest, Sha256};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let digest = Sha256::digest(format!("{name}/{nanos}/{}/{n}", std::process::id()));
    hex::encode(&digest[..12])
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) async fn register(reg: &MlflowRegistry, name: &str, dir: &Path) -> Result<ModelVersion> {
    let dir_owned = dir.to_path_buf();
    let (files, sums, meta) = tokio::task::spawn_blocking(move || -> Result<_> {
        let files = crate::local::model_files(&dir_owned)?;
        let listed: Vec<&str> = files
            .iter()
            .map(String::as_str)
            .filter(|f| *f != SHA256SUMS_FILE)
            .collect();
        let sums = Sha256Sums::compute(&dir_owned, listed.iter().copied())?;
        let meta = match std::fs::read(dir_owned.join(VERSION_META_FILE)) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::corrupt(dir_owned.join(VERSION_META_FILE).display(), e.to_string())
            })?,
            Err(_) => VersionMeta::default(),
        };
        Ok((files, sums, meta))
    })
    .await
    .map_err(|e| Error::io("register task", std::io::Error::other(e.to_string())))??;

    ensure_registered_model(reg, name).await?;
    let experiment_id = ensure_experiment(reg).await?;
    let token = registration_token(name);
    let run_body = json!({"experiment_id": experiment_id, "run_name": format!("register-{name}"), "start_time": now_ms(),
                   "tags": [{"key": "mooring.model", "value": name}, {"key": REGISTRATION_TAG, "value": token}]});
    let find_run = || async {
        let filter = format!("tags.`{REGISTRATION_TAG}` = '{token}'");
        let found: SearchRunsResponse = reg
            .client
            .call_idempotent(
                Method::POST,
                "runs/search",
                &json!({"experiment_ids": [experiment_id], "filter": filter, "max_results": 1}),
            )
            .await?;
        Ok(found.runs.into_iter().next().map(|run| RunResponse { run }))
    };
    let run: RunResponse = reg
        .create_once("runs/create", &run_body, find_run)
        .await
        .map_err(|f| reg.err(f, "POST", "runs/create"))?;
    let run = run.run.info;
    let ArtifactLocation::Proxy(run_path) = parse_artifact_uri(&run.artifact_uri)? else {
        return Err(Error::Api {
            call: "POST runs/create".into(),
            status: None,
            message: format!(
                "the run's artifact location {} is not behind the artifact proxy: start mlflow server with --artifacts-destination",
                run.artifact_uri
            ),
        });
    };

    // Upload the files with the digests they were hashed with: re-reading could race an edit.
    for file in sums.files() {
        let path = dir.join(file);
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if crate::digest::sha256_bytes(&bytes) != sums.get(file).unwrap_or_default() {
            return Err(Error::corrupt(
                path.display(),
                "changed while being registered",
            ));
        }
        upload(reg, &format!("{run_path}/{MODEL_SUBDIR}/{file}"), bytes).await?;
    }
    upload(
        reg,
        &format!("{run_path}/{MODEL_SUBDIR}/{SHA256SUMS_FILE}"),
        sums.to_string().into_bytes(),
    )
    .await?;
    tracing::debug!(files = files.len(), run = %run.run_id, "uploaded model files to MLflow");

    let ts = now_ms();
    let metrics: Vec<_> = meta
        .metrics
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v, "timestamp": ts, "step": 0}))
        .collect();
    let params: Vec<_> = meta
        .params
        .iter()
        .map(|(k, v)| json!({"key": k, "value": param_value(v)}))
        .collect();
    // Params are write-once with the same value and the metrics carry one timestamp: a
    // repeated batch changes nothing. So does a repeated status update.
    reg.post_idempotent::<serde_json::Value>(
        "runs/log-batch",
        json!({"run_id": run.run_id, "metrics": metrics, "params": params}),
    )
    .await?;
    reg.post_idempotent::<serde_json::Value>(
        "runs/update",
        json!({"run_id": run.run_id, "status": "FINISHED", "end_time": now_ms()}),
    )
    .await?;

    let mut tags = vec![
        json!({"key": "mooring.sha256.model.onnx", "value": sums.get(crate::MODEL_FILE).unwrap_or_default()}),
    ];
    // A chat model: its GGUF's digest is the version's identity (the operator's `modelDigest`).
    if let Some(gguf) = sums.files().find(|f| f.ends_with(crate::GGUF_EXTENSION)) {
        tags.push(json!({"key": "mooring.digest", "value": sums.get(gguf).unwrap_or_default()}));
    }
    tags.extend(
        meta.metrics.iter().map(
            |(k, v)| json!({"key": format!("{METRIC_TAG_PREFIX}{k}"), "value": v.to_string()}),
        ),
    );
    tags.extend(
        meta.params.iter().map(
            |(k, v)| json!({"key": format!("{PARAM_TAG_PREFIX}{k}"), "value": param_value(v)}),
        ),
    );
    let source = format!("{}/{MODEL_SUBDIR}", run.artifact_uri.trim_end_matches('/'));
    let version_body = json!({"name": name, "source": source, "run_id": run.run_id,
                   "description": meta.description.unwrap_or_default(), "tags": tags});
    // Each registration has its own run: a version of that run is the one created.
    let find_version = || async {
        let filter = format!(
            "name='{}' AND run_id='{}'",
            name.replace('\'', "\\'"),
            run.run_id
        );
        let q = [("filter", filter.as_str()), ("max_results", "1")];
        let found: SearchVersionsResponse = reg
            .client
            .call(Method::GET, "model-versions/search", &q, None)
            .await?;
        Ok(found
            .model_versions
            .into_iter()
            .next()
            .map(|model_version| ModelVersionResponse { model_version }))
    };
    let created: ModelVersionResponse = reg
        .create_once("model-versions/create", &version_body, find_version)
        .await
        .map_err(|f| reg.err(f, "POST", "model-versions/create"))?;
    let version = created.model_version.version;
    wait_until_ready(reg, name, &version).await
}

fn param_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn upload(reg: &MlflowRegistry, path: &str, bytes: Vec<u8>) -> Result<()> {
    reg.client.upload(path, bytes).await.map_err(|f| {
        f.into_error(
            &format!("PUT mlflow-artifacts/artifacts/{path}"),
            &reg.client.base,
        )
    })
}

async fn ensure_registered_model(reg: &MlflowRegistry, name: &str) -> Result<()> {
    let body = json!({"name": name});
    match reg
        .client
        // A repeat answers RESOURCE_ALREADY_EXISTS, taken as success: safe to retry.
        .call_idempotent::<serde_json::Value>(Method::POST, "registered-models/create", &body)
        .await
    {
        Ok(_) => {
            tracing::info!(model = name, "created registered model in MLflow");
            Ok(())
        }
        Err(Failure::Http { code, .. }) if code == "RESOURCE_ALREADY_EXISTS" => Ok(()),
        Err(f) => Err(reg.err(f, "POST", "registered-models/create")),
    }
}

async fn ensure_experiment(reg: &MlflowRegistry) -> Result<String> {
    // Two registrations may race to create it: whoever loses reads the winner's id.
    for _ in 0..2 {
        let q = [("experiment_name", EXPERIMENT)];
        match reg
            .client
            .call::<ExperimentResponse>(Method::GET, "experiments/get-by-name", &q, None)
            .await
        {
            Ok(r) => return Ok(r.experiment.experiment_id),
            Err(Failure::Http { status: 404, .. }) => {}
            Err(f) => return Err(reg.err(f, "GET", "experiments/get-by-name")),
        }
        let body = json!({"name": EXPERIMENT});
        match reg
            .client
            // A repeat answers RESOURCE_ALREADY_EXISTS and the loop reads the id.
            .call_idempotent::<CreateExperimentResponse>(Method::POST, "experiments/create", &body)
            .await
        {
            Ok(r) => return Ok(r.experiment_id),
            Err(Failure::Http { code, .. }) if code == "RESOURCE_ALREADY_EXISTS" => continue,
            Err(f) => return Err(reg.err(f, "POST", "experiments/create")),
        }
    }
    Err(Error::Api {
        call: "experiments/create".into(),
        status: None,
        message: format!("could not create or find {EXPERIMENT}"),
    })
}

async fn wait_until_ready(reg: &MlflowRegistry, name: &str, version: &str) -> Result<ModelVersion> {
    for _ in 0..READY_POLLS {
        let v = reg.get_version(name, version).await?;
        match v.status.as_str() {
            "READY" => {
                tracing::info!(model = name, version, "registered model version in MLflow");
                return Ok(v);
            }
            "FAILED_REGISTRATION" => return Err(v.not_ready_error()),
            _ => tokio::time::sleep(READY_POLL_INTERVAL).await,
        }
    }
    Err(Error::VersionNotReady {
        name: name.into(),
        version: version.into(),
        status: format!(
            "still not READY after {}s",
            READY_POLLS as u64 * READY_POLL_INTERVAL.as_millis() as u64 / 1000
        ),
    })
}
