//! Where the reference dataset comes from: a local path, a `file://` URL, an `s3://` object,
//! or the artifacts of a version in the model registry.

use std::path::PathBuf;

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use super::{DriftArgs, DriftError};
use crate::check::Dataset;
use crate::log::{S3Options, SinkUrl};

/// The reference dataset: `--reference` (a path, `file://…` or `s3://bucket/key`), else the
/// `reference.csv` of `--version` in `--registry`.
pub(super) async fn load(args: &DriftArgs) -> Result<Dataset, DriftError> {
    let (bytes, name) = match (&args.reference, &args.registry) {
        (Some(uri), _) => (read_uri(uri, &args.s3()).await?, uri.clone()),
        (None, Some(registry)) => {
            let version = args
                .version
                .as_deref()
                .ok_or_else(|| DriftError::InvalidArg {
                    flag: "version",
                    reason: "needed to fetch reference.csv from the registry".into(),
                })?;
            let path = from_registry(
                &args.registry_config(registry),
                &args.model,
                version,
                &args.cache_dir,
            )
            .await?;
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| DriftError::Reference(format!("{}: {e}", path.display())))?;
            (bytes, path.display().to_string())
        }
        (None, None) => {
            return Err(DriftError::InvalidArg {
                flag: "reference",
                reason: "give --reference or --registry (with --version)".into(),
            });
        }
    };
    Ok(Dataset::from_csv(&bytes, &name)?)
}

/// The path of `reference.csv` of `model@version`, fetched into the cache.
async fn from_registry(
    config: &mooring_registry::RegistryConfig,
    model: &str,
    version: &str,
    cache: &std::path::Path,
) -> Result<PathBuf, DriftError> {
    use mooring_registry::ModelRef;
    let location = &config.location;
    let err =
        |e: mooring_registry::Error| DriftError::Reference(format!("registry {location}: {e}"));
    let registry = mooring_registry::connect(config).map_err(err)?;
    let model_ref: ModelRef =
        format!("{model}@{version}")
            .parse()
            .map_err(|e: mooring_registry::Error| DriftError::InvalidArg {
                flag: "version",
                reason: e.to_string(),
            })?;
    let resolved = registry.resolve(&model_ref).await.map_err(err)?;
    let fetched = registry.fetch(&resolved, cache).await.map_err(err)?;
    fetched.reference_path().ok_or_else(|| {
        DriftError::Reference(format!(
            "{model} version {} in {location} has no {}",
            resolved.version,
            mooring_registry::REFERENCE_FILE
        ))
    })
}

/// Read a local path, `file://` URL or `s3://bucket/key` object.
async fn read_uri(uri: &str, s3: &S3Options) -> Result<Vec<u8>, DriftError> {
    if let Some(rest) = uri.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').ok_or_else(|| DriftError::InvalidArg {
            flag: "reference",
            reason: format!("{uri:?} has no object key"),
        })?;
        let store = SinkUrl::object_store(bucket, s3)?;
        let got = store
            .get(&ObjectPath::from(key))
            .await
            .map_err(|e| DriftError::Reference(format!("{uri}: {e}")))?;
        return Ok(got
            .bytes()
            .await
            .map_err(|e| DriftError::Reference(format!("{uri}: {e}")))?
            .to_vec());
    }
    let path = uri.strip_prefix("file://").unwrap_or(uri);
    tokio::fs::read(path)
        .await
        .map_err(|e| DriftError::Reference(format!("{path}: {e}")))
}
