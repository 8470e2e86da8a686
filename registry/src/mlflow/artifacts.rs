//! Downloading a version's artifacts into the shared cache layout, digest checked.

use std::path::{Path, PathBuf};

use reqwest::Method;

use super::wire::{ArtifactListing, DownloadUriResponse, signature_from_mlmodel};
use super::{Failure, MlflowRegistry};
use crate::digest::Sha256Sums;
use crate::{
    Error, FetchedGguf, FetchedModel, GGUF_EXTENSION, MODEL_FILE, ModelVersion, Result,
    SHA256SUMS_FILE, SIGNATURE_FILE, cache,
};

/// MLflow's own model description; its `signature` is our fallback.
const MLMODEL_FILE: &str = "MLmodel";

/// Where a version's files are, as reachable from here.
#[derive(Debug, PartialEq)]
pub(crate) enum ArtifactLocation {
    /// A path under the tracking server's artifact proxy.
    Proxy(String),
    /// A directory on a volume shared with the server.
    LocalDir(PathBuf),
}

/// `mlflow-artifacts:/1/<run>/artifacts/model` (also `mlflow-artifacts://host:port/…`) or
/// `file:///…`. Other schemes (s3://, gs://, runs:/…) need the server's proxy: start
/// `mlflow server` with `--artifacts-destination` so it hands out `mlflow-artifacts:` URIs.
pub(crate) fn parse_artifact_uri(uri: &str) -> Result<ArtifactLocation> {
    if let Some(rest) = uri.strip_prefix("mlflow-artifacts:") {
        let path = match rest.strip_prefix("//") {
            Some(with_host) => with_host.split_once('/').map_or("", |(_, p)| p),
            None => rest,
        };
        return Ok(ArtifactLocation::Proxy(path.trim_matches('/').to_string()));
    }
    if let Some(path) = uri.strip_prefix("file://") {
        return Ok(ArtifactLocation::LocalDir(PathBuf::from(path)));
    }
    if uri.starts_with('/') {
        return Ok(ArtifactLocation::LocalDir(PathBuf::from(uri)));
    }
    Err(Error::Api {
        call: "GET model-versions/get-download-uri".into(),
        status: None,
        message: format!(
            "artifact URI {uri:?} is not served by the MLflow artifact proxy (mlflow-artifacts:/…) or a shared file:// volume"
        ),
    })
}

impl MlflowRegistry {
    fn proxy_err(&self, f: Failure, what: &str) -> Error {
        f.into_error(what, &self.client.base)
    }

    /// Top-level file names of the version's artifact directory (sub-directories, such as
    /// an MLflow flavour's environment files, are not part of what Mooring serves).
    async fn list_files(&self, loc: &ArtifactLocation) -> Result<Vec<String>> {
        match loc {
            ArtifactLocation::Proxy(path) => {
                let listing = self
                    .client
                    .list_artifacts(path)
                    .await
                    .map_err(|f| self.proxy_err(f, "GET mlflow-artifacts/artifacts (list)"))?;
                let listing: ArtifactListing =
                    serde_json::from_value(listing).map_err(|e| Error::Api {
                        call: "GET mlflow-artifacts/artifacts (list)".into(),
                        status: Some(200),
                        message: e.to_string(),
                    })?;
                Ok(listing
                    .files
                    .into_iter()
                    .filter(|f| !f.is_dir)
                    .map(|f| f.path.rsplit('/').next().unwrap_or_default().to_string())
                    .filter(|n| !n.is_empty())
                    .collect())
            }
            ArtifactLocation::LocalDir(dir) => {
                let rd = std::fs::read_dir(dir)
                    .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
                let mut out = Vec::new();
                for entry in rd.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_file())
                        && let Ok(n) = entry.file_name().into_string()
                    {
                        out.push(n);
                    }
                }
                Ok(out)
            }
        }
    }

    async fn read_file(&self, loc: &ArtifactLocation, file: &str) -> Result<Vec<u8>> {
        match loc {
            ArtifactLocation::Proxy(path) => self
                .client
                .download(&format!("{path}/{file}"))
                .await
                .map(|b| b.to_vec())
                .map_err(|f| {
                    self.proxy_err(f, &format!("GET mlflow-artifacts/artifacts/{path}/{file}"))
                }),
            ArtifactLocation::LocalDir(dir) => {
                let p = dir.join(file);
                tokio::fs::read(&p)
                    .await
                    .map_err(|e| Error::io(format!("reading {}", p.display()), e))
            }
        }
    }
}

/// Where a ready version's artifacts are (MLflow's artifact URI, parsed) and their names.
async fn listing(
    reg: &MlflowRegistry,
    version: &ModelVersion,
) -> Result<(String, ArtifactLocation, Vec<String>)> {
    if !version.is_ready() {
        return Err(version.not_ready_error());
    }
    let q = [
        ("name", version.name.as_str()),
        ("version", version.version.as_str()),
    ];
    let uri: DownloadUriResponse = reg
        .client
        .call(Method::GET, "model-versions/get-download-uri", &q, None)
        .await
        .map_err(|f| reg.err(f, "GET", "model-versions/get-download-uri"))?;
    let loc = parse_artifact_uri(&uri.artifact_uri)?;
    let files = reg.list_files(&loc).await?;
    Ok((uri.artifact_uri, loc, files))
}

/// The version's recorded digests (its `sha256sums` artifact).
async fn read_sums(reg: &MlflowRegistry, loc: &ArtifactLocation, uri: &str) -> Result<Sha256Sums> {
    let text = reg.read_file(loc, SHA256SUMS_FILE).await?;
    let origin = format!("{uri}/{SHA256SUMS_FILE}");
    Sha256Sums::parse(&String::from_utf8_lossy(&text), &origin)
}

pub(crate) async fn fetch(
    reg: &MlflowRegistry,
    version: &ModelVersion,
    cache_dir: &Path,
) -> Result<FetchedModel> {
    let (uri, loc, files) = listing(reg, version).await?;
    let label = format!("{}/{}/", version.name, version.version);
    let target = cache::version_dir(cache_dir, &version.name, &version.version)?;

    let recorded = if files.iter().any(|f| f == SHA256SUMS_FILE) {
        Some(read_sums(reg, &loc, &uri).await?)
    } else if reg.require_digest {
        return Err(Error::corrupt(
            &uri,
            "no sha256sums artifact (the version was not registered by mooring) and digests are required",
        ));
    } else {
        None
    };
    if let Some(sums) = cache::reuse(&target, recorded.as_ref(), &label)? {
        return cache::fetched(version, target, &sums);
    }
    if !files.iter().any(|f| f == MODEL_FILE) {
        return Err(Error::corrupt(
            &uri,
            format!("no {MODEL_FILE} among the artifacts {files:?}"),
        ));
    }

    let staged = cache::staging(&target)?;
    let wanted: Vec<String> = match &recorded {
        Some(sums) => sums.files().map(str::to_string).collect(),
        None => files
            .iter()
            .filter(|f| *f != SHA256SUMS_FILE)
            .cloned()
            .collect(),
    };
    for file in wanted.iter().map(String::as_str).chain(
        // The MLmodel is needed for its signature when ours is missing, even if unlisted.
        (!files.iter().any(|f| f == SIGNATURE_FILE) && files.iter().any(|f| f == MLMODEL_FILE))
            .then_some(MLMODEL_FILE)
            .filter(|m| !wanted.iter().any(|w| w == m)),
    ) {
        let bytes = reg.read_file(&loc, file).await?;
        let dst = staged.path().join(file);
        tokio::fs::write(&dst, bytes)
            .await
            .map_err(|e| Error::io(format!("writing {}", dst.display()), e))?;
    }
    let sums = match recorded {
        Some(s) => s,
        None => {
            tracing::warn!(
                model = %version.name, version = %version.version,
                "no sha256sums artifact: digests computed from the download, not verified against a record"
            );
            Sha256Sums::compute(staged.path(), wanted.iter().map(String::as_str))?
        }
    };
    if !staged.path().join(SIGNATURE_FILE).exists() {
        write_signature_from_mlmodel(version, staged.path())?;
    }
    let staged_path = staged.path().to_path_buf();
    let target_for_commit = target.clone();
    let sums_for_commit = sums.clone();
    tokio::task::spawn_blocking(move || {
        cache::commit(staged, &sums_for_commit, &target_for_commit, &label)
    })
    .await
    .map_err(|e| Error::io("cache task", std::io::Error::other(e.to_string())))??;
    tracing::info!(model = %version.name, version = %version.version, from = %uri, staged = %staged_path.display(), "fetched model from MLflow");
    cache::fetched(version, target, &sums)
}

/// Fetch a version holding one `.gguf` chat model. Only versions registered by Mooring (with
/// their `sha256sums` artifact) are accepted: a language model is too large to trust unchecked.
pub(crate) async fn fetch_gguf(
    reg: &MlflowRegistry,
    version: &ModelVersion,
    cache_dir: &Path,
) -> Result<FetchedGguf> {
    let (uri, loc, files) = listing(reg, version).await?;
    if !files.iter().any(|f| f == SHA256SUMS_FILE) {
        return Err(Error::corrupt(
            &uri,
            "no sha256sums artifact: register GGUF versions with `mooring models register`",
        ));
    }
    let sums = read_sums(reg, &loc, &uri).await?;
    let ggufs: Vec<String> = sums
        .files()
        .filter(|f| f.ends_with(GGUF_EXTENSION))
        .map(str::to_string)
        .collect();
    let [gguf] = ggufs.as_slice() else {
        return Err(Error::corrupt(
            format!("{uri}/{SHA256SUMS_FILE}"),
            format!(
                "a GGUF version records the digest of exactly one .gguf file, not {}",
                ggufs.len()
            ),
        ));
    };
    let label = format!("{}/{}/", version.name, version.version);
    let target = cache::version_dir(cache_dir, &version.name, &version.version)?;
    if cache::reuse(&target, Some(&sums), &label)?.is_none() {
        let staged = cache::staging(&target)?;
        for file in sums.files() {
            let bytes = reg.read_file(&loc, file).await?;
            let dst = staged.path().join(file);
            tokio::fs::write(&dst, bytes)
                .await
                .map_err(|e| Error::io(format!("writing {}", dst.display()), e))?;
        }
        let (target, sums, label) = (target.clone(), sums.clone(), label.clone());
        tokio::task::spawn_blocking(move || cache::commit(staged, &sums, &target, &label))
            .await
            .map_err(|e| Error::io("cache task", std::io::Error::other(e.to_string())))??;
        tracing::info!(model = %version.name, version = %version.version, from = %uri, "fetched GGUF model from MLflow");
    }
    Ok(FetchedGguf {
        version: version.clone(),
        path: target.join(gguf),
        digest: format!("sha256:{}", sums.get(gguf).unwrap_or_default()),
    })
}

/// Versions logged by MLflow itself describe their tensors in `MLmodel`; convert it.
fn write_signature_from_mlmodel(version: &ModelVersion, dir: &Path) -> Result<()> {
    let invalid = |reason: String| Error::InvalidSignature {
        name: version.name.clone(),
        version: version.version.clone(),
        reason,
    };
    let text = std::fs::read_to_string(dir.join(MLMODEL_FILE)).map_err(|_| {
        invalid(format!(
            "neither {SIGNATURE_FILE} nor an {MLMODEL_FILE} with a signature among the artifacts"
        ))
    })?;
    let sig = signature_from_mlmodel(&text).map_err(invalid)?;
    let json = serde_json::to_string_pretty(&sig).expect("a signature serializes");
    std::fs::write(dir.join(SIGNATURE_FILE), json)
        .map_err(|e| Error::io("writing signature.json", e))
}
