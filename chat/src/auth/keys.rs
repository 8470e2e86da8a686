//! The API keys file: hashed keys, parsed into a [`KeySet`], and a watcher that reloads it
//! when it changes.
//!
//! Format: one key per line, `sha256:<64 hex digits>` optionally followed by whitespace and a
//! name (letters, digits, `-`, `_`, `.`); blank lines and `#` comments are ignored. Make a line
//! with `printf %s "$KEY" | sha256sum | awk '{print "sha256:" $1 " alice"}'`. The server only
//! ever holds hashes, so the file (a Kubernetes Secret) leaks no usable key.

use super::KeyId;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use subtle::ConstantTimeEq;

/// What is wrong with an API keys file.
#[derive(Debug, thiserror::Error)]
pub enum KeysFileError {
    #[error("api keys file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("api keys file {path} line {line}: {problem}")]
    Syntax {
        path: String,
        line: usize,
        problem: String,
    },
    #[error(
        "api keys file {path}: no keys (an empty file would lock every client out; remove --api-keys-file to run without keys)"
    )]
    Empty { path: String },
}

/// One accepted key: the SHA-256 of the secret and the id requests made with it get.
#[derive(Debug, Clone)]
struct HashedKey {
    digest: [u8; 32],
    id: KeyId,
}

/// An immutable set of accepted keys.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<HashedKey>,
}

impl KeySet {
    /// Parses the file text; `path` only labels errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, KeysFileError> {
        let syntax = |line: usize, problem: &str| KeysFileError::Syntax {
            path: path.to_owned(),
            line,
            problem: problem.to_owned(),
        };
        let mut keys: Vec<HashedKey> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut columns = line.split_whitespace();
            let hash = columns.next().unwrap_or_default();
            let hex_digest = hash
                .strip_prefix("sha256:")
                .ok_or_else(|| syntax(index + 1, "expected `sha256:<hex>` (never a plain key)"))?;
            let mut digest = [0u8; 32];
            hex::decode_to_slice(hex_digest, &mut digest)
                .map_err(|_| syntax(index + 1, "the sha256 digest must be 64 hex digits"))?;
            let name = columns.next();
            if columns.next().is_some() {
                return Err(syntax(
                    index + 1,
                    "expected at most two columns: hash and name",
                ));
            }
            let id = match name {
                Some(name) => {
                    let ok = name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                    if !ok {
                        return Err(syntax(
                            index + 1,
                            "the name may hold only letters, digits, `-`, `_`, `.`",
                        ));
                    }
                    KeyId::new(name)
                }
                // A hash prefix is stable and reveals nothing usable about the key.
                None => KeyId::new(format!("key-{}", &hex_digest[..12].to_ascii_lowercase())),
            };
            if keys.iter().any(|k| k.id == id) {
                return Err(syntax(index + 1, &format!("key name {id} is used twice")));
            }
            keys.push(HashedKey { digest, id });
        }
        if keys.is_empty() {
            return Err(KeysFileError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Self { keys })
    }

    /// Reads and parses a keys file.
    pub fn load(path: &Path) -> Result<Self, KeysFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeysFileError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    /// The id of the key whose hash matches `secret`, if any. Every stored hash is compared,
    /// each in constant time, so timing says nothing about which or how much matched.
    pub fn verify(&self, secret: &str) -> Option<KeyId> {
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.digest[..].ct_eq(&digest[..])) {
                found = Some(key.id.clone());
            }
        }
        found
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when there are no keys (never the case for a loaded file).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The keys in force, swapped in place when the file changes (cheap to clone: shared).
#[derive(Debug, Clone)]
pub struct ApiKeys {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    current: RwLock<Arc<KeySet>>,
    /// Modification time and length of the file when it was last read (successfully or not).
    seen: RwLock<Option<(SystemTime, u64)>>,
}

impl ApiKeys {
    /// Loads the file; a broken file at start-up is an error (fail closed).
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, KeysFileError> {
        let path = path.into();
        let seen = file_stamp(&path);
        let set = KeySet::load(&path)?;
        let inner = Inner {
            path,
            current: RwLock::new(Arc::new(set)),
            seen: RwLock::new(seen),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The id of the key `secret` belongs to, if any.
    pub fn verify(&self, secret: &str) -> Option<KeyId> {
        self.snapshot().verify(secret)
    }

    /// The key set in force now.
    pub fn snapshot(&self) -> Arc<KeySet> {
        self.inner
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the file if its modification time or length changed. Returns whether new keys
    /// were installed. A file that no longer parses keeps the old keys (and the error is
    /// returned, once per change), so a half-written Secret update never opens or locks the
    /// server.
    pub fn reload_if_changed(&self) -> Result<bool, KeysFileError> {
        let inner = &self.inner;
        let stamp = file_stamp(&inner.path);
        {
            let mut seen = inner.seen.write().unwrap_or_else(|e| e.into_inner());
            if stamp == *seen {
                return Ok(false);
            }
            *seen = stamp;
        }
        let set = KeySet::load(&inner.path)?;
        tracing::info!(path = %inner.path.display(), keys = set.len(), "reloaded API keys");
        *inner.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        Ok(true)
    }

    /// Polls the file every `interval` on the current tokio runtime and reloads it on change.
    /// Polling (not inotify) because Kubernetes updates a mounted Secret by swapping a
    /// symlink, which file watchers easily miss; a stat every few seconds costs nothing. The
    /// task ends by itself once every clone of these keys is dropped.
    pub fn spawn_reloader(
        &self,
        runtime: &tokio::runtime::Handle,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let keys = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(inner) = keys.upgrade() else { return };
                if let Err(error) = (ApiKeys { inner }).reload_if_changed() {
                    tracing::error!(%error, "API keys file changed but cannot be used; keeping the previous keys");
                }
            }
        })
    }
}

/// Modification time and length, following symlinks (a Secret mount is a symlink chain).
fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "sha256:2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90"; // "alice"

    #[test]
    fn parses_names_defaults_comments_and_verifies() {
        let text = format!("# keys\n{ALICE} alice\n\nsha256:{} \n", "ab".repeat(32));
        let set = KeySet::parse(&text, "f").unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.verify("alice").unwrap().as_str(), "alice");
        assert_eq!(set.verify("bob"), None);
        assert_eq!(set.keys[1].id.as_str(), "key-abababababab");
    }

    #[test]
    fn rejects_bad_lines_with_line_numbers() {
        let cases = [
            ("plainkey alice", "line 1"),
            ("sha256:abc", "64 hex"),
            (&format!("{ALICE} al ice"), "two columns"),
            (&format!("{ALICE} al/ice"), "name"),
            (&format!("{ALICE} a\n{ALICE} a"), "line 2"),
            ("# only a comment", "no keys"),
        ];
        for (text, expected) in cases {
            let err = KeySet::parse(text, "keys.txt").unwrap_err().to_string();
            assert!(
                err.contains(expected) && err.contains("keys.txt"),
                "{text:?}: {err}"
            );
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn key_line() -> impl Strategy<Value = String> {
            prop_oneof![
                ".{0,80}",
                "[0-9a-fA-F]{64}".prop_map(|h| format!("sha256:{h}")),
                ("[0-9a-f]{64}", "[A-Za-z0-9._-]{1,12}")
                    .prop_map(|(h, n)| format!("sha256:{h} {n}")),
                ("[0-9a-f]{60,68}", "\\PC{0,12}").prop_map(|(h, n)| format!("  sha256:{h}\t{n} ")),
                Just("# a comment".to_string()),
                Just(String::new()),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_keys_file_parses_or_names_its_line(lines in prop::collection::vec(key_line(), 0..8)) {
                let text = lines.join("\n");
                match KeySet::parse(&text, "keys.txt") {
                    Ok(set) => prop_assert!(!set.is_empty()),
                    Err(KeysFileError::Syntax { line, .. }) => prop_assert!(line >= 1 && line <= lines.len()),
                    Err(KeysFileError::Empty { .. }) => {}
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }

            #[test]
            fn a_hashed_key_verifies(secret in "\\PC{1,40}", name in "[A-Za-z0-9._-]{1,12}") {
                let digest = hex::encode(Sha256::digest(secret.as_bytes()));
                let set = KeySet::parse(&format!("sha256:{digest} {name}\n"), "keys.txt").unwrap();
                prop_assert_eq!(set.verify(&secret).map(|id| id.as_str().to_string()), Some(name));
            }
        }
    }
}
