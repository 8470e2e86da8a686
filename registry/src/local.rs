//! A registry that is a directory: `<root>/<name>/<version>/…` and `<root>/<name>/aliases.json`.
//!
//! The bundled `models/` directory is one, so everything runs without a registry server.
//! Versions are immutable once registered; aliases are the only thing that moves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;

use crate::digest::Sha256Sums;
use crate::time::{now_rfc3339, parse_rfc3339_utc_ms};
use crate::{
    Error, FetchedGguf, FetchedModel, GGUF_EXTENSION, MODEL_FILE, ModelRef, ModelVersion,
    RegisteredModel, Registry, Result, SHA256SUMS_FILE, SIGNATURE_FILE, Selector, Signature,
    VERSION_META_FILE, cache, validate_alias,
};

/// The file mapping alias → version inside a model's directory.
pub const ALIASES_FILE: &str = "aliases.json";

/// How many times `register` tries the next free version number when another writer
/// takes it first.
const REGISTER_ATTEMPTS: u32 = 10;

/// A local-directory registry rooted at `root`.
#[derive(Clone, Debug)]
pub struct LocalRegistry {
    root: PathBuf,
}

/// `version.json`: optional metadata written by `models/train.py` and by `register`.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
struct VersionMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// RFC 3339 UTC, e.g. `2026-11-22T04:20:31Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(default)]
    metrics: BTreeMap<String, f64>,
    #[serde(default)]
    params: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

impl LocalRegistry {
    /// A registry at `root`, which must be an existing directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        if !root.is_dir() {
            return Err(Error::invalid_arg(
                "registry location",
                format!("{} is not a directory", root.display()),
            ));
        }
        let root = std::fs::canonicalize(&root)
            .map_err(|e| Error::io(format!("resolving {}", root.display()), e))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn model_dir(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        let dir = self.root.join(name);
        if !dir.is_dir() {
            return Err(Error::ModelNotFound {
                name: name.to_string(),
            });
        }
        Ok(dir)
    }

    fn read_aliases(&self, name: &str) -> Result<BTreeMap<String, String>> {
        let path = self.model_dir(name)?.join(ALIASES_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let aliases: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(&bytes).map_err(|e| {
                Error::corrupt(
                    path.display(),
                    format!("expected a JSON object alias → version: {e}"),
                )
            })?;
        // Versions may be written as "1" or 1; both mean the same directory.
        aliases
            .into_iter()
            .map(|(alias, v)| match v {
                serde_json::Value::String(s) if is_version(&s) => Ok((alias, s)),
                serde_json::Value::Number(n) if n.is_u64() => Ok((alias, n.to_string())),
                other => Err(Error::corrupt(
                    path.display(),
                    format!("alias {alias:?} maps to {other}, not a version number"),
                )),
            })
            .collect()
    }

    fn write_aliases(&self, name: &str, aliases: &BTreeMap<String, String>) -> Result<()> {
        let dir = self.model_dir(name)?;
        let path = dir.join(ALIASES_FILE);
        let mut text = serde_json::to_string_pretty(aliases).expect("a string map serializes");
        text.push('\n');
        // Write a temporary file and rename it over the old one: readers (a server
        // re-resolving its alias) see the old or the new mapping, never a torn file.
        let mut tmp = tempfile::Builder::new()
            .prefix(".aliases-")
            .tempfile_in(&dir)
            .map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))?;
        std::io::Write::write_all(&mut tmp, text.as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| Error::io(format!("writing {}", tmp.path().display()), e))?;
        tmp.persist(&path)
            .map_err(|e| Error::io(format!("replacing {}", path.display()), e.error))?;
        Ok(())
    }

    /// Version numbers present on disk, ascending.
    fn versions(&self, name: &str) -> Result<Vec<u64>> {
        let dir = self.model_dir(name)?;
        let mut out: Vec<u64> = read_dir(&dir)?
            .into_iter()
            .filter(|(_, is_dir)| *is_dir)
            .filter_map(|(n, _)| if is_version(&n) { n.parse().ok() } else { None })
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    fn describe(
        &self,
        name: &str,
        version: &str,
        aliases: &BTreeMap<String, String>,
    ) -> Result<ModelVersion> {
        let dir = self.model_dir(name)?.join(version);
        if !is_version(version) || !dir.is_dir() {
            return Err(Error::VersionNotFound {
                name: name.to_string(),
                version: version.to_string(),
            });
        }
        let meta = read_meta(&dir)?;
        let mut tags = meta.tags;
        for (k, v) in meta.params {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            tags.insert(format!("param.{k}"), v);
        }
        Ok(ModelVersion {
            name: name.to_string(),
            version: version.to_string(),
            source: format!("file://{}", dir.display()),
            // A local version exists only once its directory is complete (register renames
            // it into place), so every version on disk is ready.
            status: "READY".to_string(),
            run_id: None,
            created_at_ms: meta.created_at.as_deref().and_then(parse_rfc3339_utc_ms),
            description: meta.description,
            aliases: aliases
                .iter()
                .filter(|(_, v)| *v == version)
                .map(|(a, _)| a.clone())
                .collect(),
            tags,
            metrics: meta.metrics,
        })
    }

    fn resolve_sync(&self, model: &ModelRef) -> Result<ModelVersion> {
        let aliases = self.read_aliases(&model.name)?;
        let version = match &model.selector {
            Selector::Version(v) => v.clone(),
            Selector::Alias(a) => aliases
                .get(a)
                .cloned()
                .ok_or_else(|| Error::AliasNotFound {
                    name: model.name.clone(),
                    alias: a.clone(),
                    known: known_aliases(&aliases),
                })?,
        };
        self.describe(&model.name, &version, &aliases)
    }

    /// A ready version's directory, its label in the cache's messages and its recorded digests.
    fn version_source(&self, version: &ModelVersion) -> Result<(PathBuf, String, Sha256Sums)> {
        if !version.is_ready() {
            return Err(version.not_ready_error());
        }
        let src = self.model_dir(&version.name)?.join(&version.version);
        if !is_version(&version.version) || !src.is_dir() {
            return Err(Error::VersionNotFound {
                name: version.name.clone(),
                version: version.version.clone(),
            });
        }
        let label = format!("{}/{}/", version.name, version.version);
        let sums = Sha256Sums::read(&src)?;
        Ok((src, label, sums))
    }

    fn fetch_sync(&self, version: &ModelVersion, cache_dir: &Path) -> Result<FetchedModel> {
        let (src, label, sums) = self.version_source(version)?;
        for required in [MODEL_FILE, SIGNATURE_FILE] {
            if sums.get(required).is_none() {
                return Err(Error::corrupt(
                    src.join(SHA256SUMS_FILE).display(),
                    format!("no digest recorded for {required}"),
                ));
            }
        }
        let target = cache::version_dir(cache_dir, &version.name, &version.version)?;
        if cache::reuse(&target, Some(&sums), &label)?.is_some() {
            return cache::fetched(version, target, &sums);
        }
        let staged = cache::staging(&target)?;
        for file in sums.files() {
            let (from, to) = (src.join(file), staged.path().join(file));
            std::fs::copy(&from, &to)
                .map_err(|e| Error::io(format!("copying {}", from.display()), e))?;
        }
        cache::commit(staged, &sums, &target, &label)?;
        tracing::info!(model = %version.name, version = %version.version, dir = %target.display(), "fetched model from local registry");
        cache::fetched(version, target, &sums)
    }

    fn fetch_gguf_sync(&self, version: &ModelVersion, cache_dir: &Path) -> Result<FetchedGguf> {
        let (src, label, sums) = self.version_source(version)?;
        let ggufs: Vec<&str> = sums
            .files()
            .filter(|f| f.ends_with(GGUF_EXTENSION))
            .collect();
        let [gguf] = ggufs.as_slice() else {
            return Err(Error::corrupt(
                src.join(SHA256SUMS_FILE).display(),
                format!(
                    "a GGUF version records the digest of exactly one .gguf file, not {}",
                    ggufs.len()
                ),
            ));
        };
        let gguf = gguf.to_string();
        let target = cache::version_dir(cache_dir, &version.name, &version.version)?;
        if cache::reuse(&target, Some(&sums), &label)?.is_none() {
            let staged = cache::staging(&target)?;
            for file in sums.files() {
                let (from, to) = (src.join(file), staged.path().join(file));
                std::fs::copy(&from, &to)
                    .map_err(|e| Error::io(format!("copying {}", from.display()), e))?;
            }
            cache::commit(staged, &sums, &target, &label)?;
            tracing::info!(model = %version.name, version = %version.version, dir = %target.display(), "fetched GGUF model from local registry");
        }
        let digest = sums
            .get(&gguf)
            .map(|h| format!("sha256:{h}"))
            .unwrap_or_default();
        Ok(FetchedGguf {
            version: version.clone(),
            path: target.join(gguf),
            digest,
        })
    }

    fn register_sync(&self, name: &str, from: &Path) -> Result<ModelVersion> {
        check_name(name)?;
        let files = model_files(from)?;
        let model_dir = self.root.join(name);
        std::fs::create_dir_all(&model_dir)
            .map_err(|e| Error::io(format!("creating {}", model_dir.display()), e))?;
        for _ in 0..REGISTER_ATTEMPTS {
            let next = self.versions(name)?.last().map_or(1, |v| v + 1).to_string();
            let staged = tempfile::Builder::new()
                .prefix(".tmp-register-")
                .tempdir_in(&model_dir)
                .map_err(|e| {
                    Error::io(
                        format!("creating a staging directory in {}", model_dir.display()),
                        e,
                    )
                })?;
            for f in &files {
                let (src, dst) = (from.join(f), staged.path().join(f));
                std::fs::copy(&src, &dst)
                    .map_err(|e| Error::io(format!("copying {}", src.display()), e))?;
            }
            if !files.iter().any(|f| f == VERSION_META_FILE) {
                let meta = VersionMeta {
                    created_at: Some(now_rfc3339()),
                    ..Default::default()
                };
                let text = serde_json::to_string_pretty(&meta).expect("metadata serializes") + "\n";
                std::fs::write(staged.path().join(VERSION_META_FILE), text)
                    .map_err(|e| Error::io("writing version.json", e))?;
            }
            let mut names: Vec<&str> = files.iter().map(String::as_str).collect();
            names.push(VERSION_META_FILE);
            names.sort_unstable();
            names.dedup();
            let sums = Sha256Sums::compute(
                staged.path(),
                names.iter().copied().filter(|f| *f != SHA256SUMS_FILE),
            )?;
            std::fs::write(staged.path().join(SHA256SUMS_FILE), sums.to_string())
                .map_err(|e| Error::io("writing sha256sums", e))?;
            let target = model_dir.join(&next);
            // rename fails if `next` appeared meanwhile (another register): try the one after.
            if target.exists() {
                continue;
            }
            let staged_path = staged.keep();
            match std::fs::rename(&staged_path, &target) {
                Ok(()) => {
                    tracing::info!(model = name, version = %next, "registered model version");
                    return self.describe(name, &next, &self.read_aliases(name)?);
                }
                Err(_) if target.exists() => {
                    let _ = std::fs::remove_dir_all(&staged_path);
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&staged_path);
                    return Err(Error::io(
                        format!("moving the new version to {}", target.display()),
                        e,
                    ));
                }
            }
        }
        Err(Error::io(
            format!("registering {name}"),
            std::io::Error::other(format!(
                "{REGISTER_ATTEMPTS} concurrent registrations took every version number tried"
            )),
        ))
    }
}

#[async_trait]
impl Registry for LocalRegistry {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn resolve(&self, model: &ModelRef) -> Result<ModelVersion> {
        let (this, model) = (self.clone(), model.clone());
        blocking(move || this.resolve_sync(&model)).await
    }

    async fn fetch(&self, version: &ModelVersion, cache_dir: &Path) -> Result<FetchedModel> {
        let (this, version, cache_dir) = (self.clone(), version.clone(), cache_dir.to_path_buf());
        blocking(move || this.fetch_sync(&version, &cache_dir)).await
    }

    async fn fetch_gguf(&self, version: &ModelVersion, cache_dir: &Path) -> Result<FetchedGguf> {
        let (this, version, cache_dir) = (self.clone(), version.clone(), cache_dir.to_path_buf());
        blocking(move || this.fetch_gguf_sync(&version, &cache_dir)).await
    }

    async fn list_models(&self) -> Result<Vec<RegisteredModel>> {
        let this = self.clone();
        blocking(move || {
            let mut models = Vec::new();
            // By name: the directory's own order depends on the file system.
            let mut entries = read_dir(&this.root)?;
            entries.sort();
            for (name, is_dir) in entries {
                // Hidden entries are staging directories, caches or VCS metadata, not models.
                if !is_dir || name.starts_with('.') || check_name(&name).is_err() {
                    continue;
                }
                let aliases = this.read_aliases(&name)?;
                let versions = this
                    .versions(&name)?
                    .into_iter()
                    .map(|v| this.describe(&name, &v.to_string(), &aliases))
                    .collect::<Result<Vec<_>>>()?;
                if versions.is_empty() && aliases.is_empty() {
                    continue;
                }
                models.push(RegisteredModel {
                    name,
                    description: None,
                    aliases,
                    versions,
                });
            }
            // The directory's order is the file system's: list by name, like MLflow does.
            models.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(models)
        })
        .await
    }

    async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        validate_alias(alias)?;
        let (this, name, alias, version) = (
            self.clone(),
            name.to_string(),
            alias.to_string(),
            version.to_string(),
        );
        blocking(move || {
            let mut aliases = this.read_aliases(&name)?;
            this.describe(&name, &version, &aliases)?;
            aliases.insert(alias.clone(), version.clone());
            this.write_aliases(&name, &aliases)?;
            tracing::info!(model = %name, alias = %alias, version = %version, "alias set");
            Ok(())
        })
        .await
    }

    async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        let (this, name, alias) = (self.clone(), name.to_string(), alias.to_string());
        blocking(move || {
            let mut aliases = this.read_aliases(&name)?;
            if aliases.remove(&alias).is_none() {
                return Err(Error::AliasNotFound {
                    known: known_aliases(&aliases),
                    name,
                    alias,
                });
            }
            this.write_aliases(&name, &aliases)?;
            tracing::info!(model = %name, alias = %alias, "alias deleted");
            Ok(())
        })
        .await
    }

    async fn register(&self, name: &str, dir: &Path) -> Result<ModelVersion> {
        let (this, name, dir) = (self.clone(), name.to_string(), dir.to_path_buf());
        blocking(move || this.register_sync(&name, &dir)).await
    }
}

/// File system work runs on the blocking pool so it never stalls the server's executor.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("registry task", std::io::Error::other(e.to_string())))?
}

/// The files of a model directory to register: its regular top-level files. It must hold
/// `model.onnx` and a valid `signature.json`, or exactly one `.gguf` language model (a chat
/// model: no signature); a `sha256sums` it brings must match.
pub(crate) fn model_files(dir: &Path) -> Result<Vec<String>> {
    let entries = read_dir(dir)?;
    let mut files = Vec::new();
    for (name, is_dir) in entries {
        if name.starts_with('.') {
            continue;
        }
        if is_dir {
            return Err(Error::corrupt(
                dir.join(&name).display(),
                "model directories may only hold files, not sub-directories",
            ));
        }
        files.push(name);
    }
    let ggufs = files.iter().filter(|f| f.ends_with(GGUF_EXTENSION)).count();
    if ggufs > 1 {
        return Err(Error::corrupt(
            dir.display(),
            format!("{ggufs} .gguf files: a chat model version holds exactly one"),
        ));
    }
    if ggufs == 0 {
        for required in [MODEL_FILE, SIGNATURE_FILE] {
            if !files.iter().any(|f| f == required) {
                return Err(Error::corrupt(
                    dir.display(),
                    format!("no {required} (nor a .gguf chat model) in the model directory"),
                ));
            }
        }
        let sig_path = dir.join(SIGNATURE_FILE);
        let bytes = std::fs::read(&sig_path)
            .map_err(|e| Error::io(format!("reading {}", sig_path.display()), e))?;
        Signature::from_json(&bytes)
            .map_err(|reason| Error::corrupt(sig_path.display(), reason))?;
    }
    if files.iter().any(|f| f == SHA256SUMS_FILE) {
        Sha256Sums::read(dir)?.verify(dir, &format!("{}/", dir.display()))?;
    }
    files.sort();
    Ok(files)
}

fn read_meta(dir: &Path) -> Result<VersionMeta> {
    let path = dir.join(VERSION_META_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt(path.display(), e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(VersionMeta::default()),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// (file name, is a directory) of every entry of `dir` whose name is UTF-8.
fn read_dir(dir: &Path) -> Result<Vec<(String, bool)>> {
    let rd =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if let Ok(name) = entry.file_name().into_string() {
            out.push((name, is_dir));
        }
    }
    Ok(out)
}

/// Model names become directory names: nothing that could leave the registry root.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\', '\0']) {
        return Err(Error::invalid_arg(
            "model name",
            format!("{name:?} is not a valid model name (no '/', '\\', leading '.')"),
        ));
    }
    Ok(())
}

fn is_version(s: &str) -> bool {
    !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit())
}

fn known_aliases(aliases: &BTreeMap<String, String>) -> String {
    if aliases.is_empty() {
        "none".to_string()
    } else {
        aliases.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests;
