//! The local artifact cache shared by every backend: `cache_dir/<name>/<version>/`.
//!
//! A version directory appears only by an atomic rename of a fully written and verified
//! staging directory, so a crash mid-download never leaves a half copy that a later run
//! would trust; stale `.tmp-*` staging directories are harmless.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::digest::{Sha256Sums, sha256_file};
use crate::{
    Error, FetchedModel, MODEL_FILE, ModelVersion, Result, SHA256SUMS_FILE, SIGNATURE_FILE,
    Signature,
};

/// Where a version lives in the cache. Name and version become path components, so
/// anything that could escape `cache_dir` is refused.
pub(crate) fn version_dir(cache_dir: &Path, name: &str, version: &str) -> Result<PathBuf> {
    for (field, value) in [("model name", name), ("model version", version)] {
        if value.is_empty() || value.starts_with('.') || value.contains(['/', '\\', '\0']) {
            return Err(Error::invalid_arg(
                field,
                format!("{value:?} cannot be used as a cache directory name"),
            ));
        }
    }
    Ok(cache_dir.join(name).join(version))
}

/// A verified cached copy whose digests equal `expected` (when given), or None when the
/// version must be (re)fetched. A copy that fails verification is removed.
pub(crate) fn reuse(
    target: &Path,
    expected: Option<&Sha256Sums>,
    label: &str,
) -> Result<Option<Sha256Sums>> {
    if !target.join(SHA256SUMS_FILE).is_file() {
        return Ok(None);
    }
    let cached = Sha256Sums::read(target).ok();
    let usable = match (&cached, expected) {
        (Some(c), Some(e)) => c == e && c.verify(target, label).is_ok(),
        (Some(c), None) => c.verify(target, label).is_ok(),
        (None, _) => false,
    };
    if usable {
        tracing::debug!(dir = %target.display(), "reusing verified cached model");
        return Ok(cached);
    }
    tracing::warn!(dir = %target.display(), "cached model is stale or corrupt; fetching again");
    remove_dir(target)?;
    Ok(None)
}

/// A fresh staging directory next to `target` (same filesystem, so the final rename is atomic).
pub(crate) fn staging(target: &Path) -> Result<TempDir> {
    let parent = target.parent().expect("version_dir always has a parent");
    std::fs::create_dir_all(parent)
        .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    tempfile::Builder::new()
        .prefix(".tmp-")
        .tempdir_in(parent)
        .map_err(|e| {
            Error::io(
                format!("creating a staging directory in {}", parent.display()),
                e,
            )
        })
}

/// Verify the staged files against `sums`, write `sha256sums` beside them and move the
/// directory into place. Losing a race to another process that installed the same version
/// is fine as long as its copy verifies.
pub(crate) fn commit(staged: TempDir, sums: &Sha256Sums, target: &Path, label: &str) -> Result<()> {
    sums.verify(staged.path(), label)?;
    let sums_path = staged.path().join(SHA256SUMS_FILE);
    std::fs::write(&sums_path, sums.to_string())
        .map_err(|e| Error::io(format!("writing {}", sums_path.display()), e))?;
    if target.exists() {
        remove_dir(target)?;
    }
    let staged_path = staged.keep();
    match std::fs::rename(&staged_path, target) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staged_path);
            match reuse(target, Some(sums), label)? {
                Some(_) => Ok(()),
                None => Err(Error::io(
                    format!("moving {} into place", target.display()),
                    e,
                )),
            }
        }
    }
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", dir.display()), e)),
    }
}

/// Describe a verified version directory: signature parsed, model digest taken.
pub(crate) fn fetched(
    version: &ModelVersion,
    dir: PathBuf,
    sums: &Sha256Sums,
) -> Result<FetchedModel> {
    let sig_path = dir.join(SIGNATURE_FILE);
    let invalid_sig = |reason: String| Error::InvalidSignature {
        name: version.name.clone(),
        version: version.version.clone(),
        reason,
    };
    let bytes = std::fs::read(&sig_path)
        .map_err(|e| invalid_sig(format!("cannot read {}: {e}", sig_path.display())))?;
    let signature = Signature::from_json(&bytes)
        .map_err(|e| invalid_sig(format!("{}: {e}", sig_path.display())))?;
    let model_hex = match sums.get(MODEL_FILE) {
        Some(h) => h.to_string(),
        None => sha256_file(&dir.join(MODEL_FILE))?,
    };
    Ok(FetchedModel {
        version: version.clone(),
        dir,
        digest: format!("sha256:{model_hex}"),
        signature,
    })
}
