//! Where prediction logs go: a directory (`file:///dir`) or an S3 bucket (`s3://bucket/prefix`).
//!
//! Both write JSON Lines in files named `predictions-<writer id>-<start ms>-<seq>.jsonl`:
//! every process has its own writer id, so replicas never write to the same file and a
//! shared volume or bucket needs no locking. Files rotate by size and by age; S3 objects are
//! immutable, so each flush uploads one object.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

use super::record::now_ms;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("invalid sink URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("object store {context}: {source}")]
    ObjectStore {
        context: String,
        #[source]
        source: object_store::Error,
    },
}

/// S3 connection settings; each `None` falls back to the usual AWS environment variables
/// (`AWS_ENDPOINT_URL`/`AWS_ENDPOINT_URL_S3`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_REGION`/`AWS_DEFAULT_REGION`).
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    /// An S3-compatible server, e.g. `http://minio:9000`; `http://` is allowed.
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub region: Option<String>,
}

/// A parsed sink URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkUrl {
    /// `file:///dir` (or a plain path).
    Dir(PathBuf),
    /// `s3://bucket/prefix`.
    S3 { bucket: String, prefix: String },
}

impl SinkUrl {
    pub fn parse(url: &str) -> Result<SinkUrl, SinkError> {
        let invalid = |reason: &str| SinkError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("no bucket name after s3://"));
            }
            return Ok(SinkUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        let path = match url.strip_prefix("file://") {
            Some(p) if p.starts_with('/') => p,
            Some(_) => return Err(invalid("a file URL needs an absolute path: file:///dir")),
            None if url.contains("://") => {
                return Err(invalid("expected file:///dir or s3://bucket/prefix"));
            }
            None => url,
        };
        if path.is_empty() {
            return Err(invalid("empty path"));
        }
        Ok(SinkUrl::Dir(PathBuf::from(path)))
    }

    /// The S3 client for this URL, configured from the usual AWS environment variables
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
    /// `AWS_ENDPOINT_URL`/`AWS_ENDPOINT_URL_S3` for S3-compatible servers; `http://`
    /// endpoints are allowed because such servers often run without TLS inside a cluster).
    /// Explicit `opts` win over the environment.
    pub fn object_store(bucket: &str, opts: &S3Options) -> Result<Arc<dyn ObjectStore>, SinkError> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let endpoint = opts
            .endpoint
            .clone()
            .or_else(|| env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env("AWS_ENDPOINT_URL"));
        if let Some(endpoint) = endpoint {
            if endpoint.starts_with("http://") {
                builder = builder.with_allow_http(true);
            }
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = opts.region.clone().or_else(|| env("AWS_REGION")) {
            builder = builder.with_region(region);
        }
        if let Some(key) = &opts.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &opts.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|source| SinkError::ObjectStore {
            context: format!("configuring bucket {bucket:?}"),
            source,
        })?;
        Ok(Arc::new(store))
    }
}

/// A process-unique writer id: the pod name (`HOSTNAME`) plus pid and a random suffix, so
/// two processes in one pod (or a restarted pod) never share a file.
pub fn default_writer_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_string());
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let raw = format!("{host}-{}-{:08x}", std::process::id(), random as u32);
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Rotation limits of the file sink.
#[derive(Clone, Copy, Debug)]
pub struct Rotation {
    pub max_bytes: u64,
    pub max_age: Duration,
}

/// An open sink, written by the logger's writer task only.
pub enum SinkWriter {
    Dir(DirWriter),
    Object(ObjectWriter),
}

impl SinkWriter {
    pub async fn open(
        url: &SinkUrl,
        writer_id: String,
        rotation: Rotation,
        s3: &S3Options,
    ) -> Result<SinkWriter, SinkError> {
        match url {
            SinkUrl::Dir(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|source| SinkError::Io {
                        context: format!("creating the prediction log directory {}", dir.display()),
                        source,
                    })?;
                Ok(SinkWriter::Dir(DirWriter {
                    dir: dir.clone(),
                    writer_id,
                    rotation,
                    seq: 0,
                    current: None,
                }))
            }
            SinkUrl::S3 { bucket, prefix } => Ok(SinkWriter::Object(ObjectWriter {
                store: SinkUrl::object_store(bucket, s3)?,
                prefix: prefix.clone(),
                writer_id,
                seq: 0,
            })),
        }
    }

    /// Append complete JSON lines (each ending in `\n`) and make them durable.
    pub async fn write(&mut self, lines: &[u8]) -> Result<(), SinkError> {
        if lines.is_empty() {
            return Ok(());
        }
        match self {
            SinkWriter::Dir(w) => w.write(lines).await,
            SinkWriter::Object(w) => w.write(lines).await,
        }
    }
}

fn file_name(writer_id: &str, seq: u64) -> String {
    format!("predictions-{writer_id}-{}-{seq:06}.jsonl", now_ms())
}

struct OpenFile {
    file: tokio::fs::File,
    path: PathBuf,
    bytes: u64,
    opened: Instant,
}

pub struct DirWriter {
    dir: PathBuf,
    writer_id: String,
    rotation: Rotation,
    seq: u64,
    current: Option<OpenFile>,
}

impl DirWriter {
    async fn write(&mut self, lines: &[u8]) -> Result<(), SinkError> {
        let rotate = match &self.current {
            Some(f) => {
                f.bytes >= self.rotation.max_bytes || f.opened.elapsed() >= self.rotation.max_age
            }
            None => true,
        };
        if rotate {
            self.current = None;
            let path = self.dir.join(file_name(&self.writer_id, self.seq));
            self.seq += 1;
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .await
                .map_err(|source| SinkError::Io {
                    context: format!("opening {}", path.display()),
                    source,
                })?;
            tracing::debug!(path = %path.display(), "prediction log file opened");
            self.current = Some(OpenFile {
                file,
                path,
                bytes: 0,
                opened: Instant::now(),
            });
        }
        let f = self.current.as_mut().expect("opened above");
        let io = |source| SinkError::Io {
            context: format!("writing {}", f_path(&f.path)),
            source,
        };
        f.file.write_all(lines).await.map_err(io)?;
        f.file.flush().await.map_err(|source| SinkError::Io {
            context: format!("flushing {}", f_path(&f.path)),
            source,
        })?;
        f.bytes += lines.len() as u64;
        Ok(())
    }
}

fn f_path(p: &Path) -> String {
    p.display().to_string()
}

pub struct ObjectWriter {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    writer_id: String,
    seq: u64,
}

impl ObjectWriter {
    async fn write(&mut self, lines: &[u8]) -> Result<(), SinkError> {
        let name = file_name(&self.writer_id, self.seq);
        self.seq += 1;
        let key = if self.prefix.is_empty() {
            name
        } else {
            format!("{}/{name}", self.prefix)
        };
        let path = ObjectPath::from(key.as_str());
        self.store
            .put(&path, bytes::Bytes::copy_from_slice(lines).into())
            .await
            .map_err(|source| SinkError::ObjectStore {
                context: format!("uploading {key}"),
                source,
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sink_urls() {
        assert_eq!(
            SinkUrl::parse("file:///var/log/p").unwrap(),
            SinkUrl::Dir("/var/log/p".into())
        );
        assert_eq!(
            SinkUrl::parse("s3://b/a/b/").unwrap(),
            SinkUrl::S3 {
                bucket: "b".into(),
                prefix: "a/b".into()
            }
        );
        assert!(SinkUrl::parse("s3:///x").is_err());
        assert!(SinkUrl::parse("file://relative").is_err());
        assert!(SinkUrl::parse("gs://b").is_err());
    }

    #[test]
    fn writer_ids_are_unique_and_file_safe() {
        let (a, b) = (default_writer_id(), default_writer_id());
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
