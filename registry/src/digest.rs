//! `sha256sums`: the digests recorded for every file of a model version, in the format of
//! coreutils' `sha256sum` (so `sha256sum -c sha256sums` checks a version by hand).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::{Error, Result, SHA256SUMS_FILE};

/// file name → lowercase hex sha256, for the files directly inside a version directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sha256Sums {
    entries: BTreeMap<String, String>,
}

impl Sha256Sums {
    /// Parse `sha256sum` output: `<64 hex>  <file>` (text mode) or `<64 hex> *<file>`
    /// (binary mode). `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let mut entries = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |why: &str| Error::corrupt(origin, format!("line {}: {why}", i + 1));
            let (hex_digest, rest) = line.split_at_checked(64).ok_or_else(|| bad("too short"))?;
            if !hex_digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("the digest is not 64 hex digits"));
            }
            let file = rest
                .strip_prefix("  ")
                .or_else(|| rest.strip_prefix(" *"))
                .ok_or_else(|| bad("expected two spaces (or ' *') between digest and file name"))?;
            check_file_name(file).map_err(|why| bad(&why))?;
            if entries
                .insert(file.to_string(), hex_digest.to_ascii_lowercase())
                .is_some()
            {
                return Err(bad(&format!("{file:?} is listed twice")));
            }
        }
        if entries.is_empty() {
            return Err(Error::corrupt(origin, "no digests recorded"));
        }
        Ok(Self { entries })
    }

    /// Read `dir/sha256sums`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(SHA256SUMS_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::corrupt(
                path.display(),
                "missing: no digests recorded for this version",
            ),
            _ => Error::io(format!("reading {}", path.display()), e),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Hash the given files of `dir`.
    pub fn compute<'a>(dir: &Path, files: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut entries = BTreeMap::new();
        for f in files {
            entries.insert(f.to_string(), sha256_file(&dir.join(f))?);
        }
        Ok(Self { entries })
    }

    pub fn insert(&mut self, file: impl Into<String>, hex_digest: impl Into<String>) {
        self.entries.insert(file.into(), hex_digest.into());
    }

    pub fn get(&self, file: &str) -> Option<&str> {
        self.entries.get(file).map(String::as_str)
    }

    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Check every listed file of `dir`; `label` prefixes file names in errors
    /// (e.g. `iris-classifier/1/`), so a mismatch names the file precisely.
    pub fn verify(&self, dir: &Path, label: &str) -> Result<()> {
        for (file, expected) in &self.entries {
            let actual = sha256_file(&dir.join(file))?;
            if &actual != expected {
                return Err(Error::DigestMismatch {
                    file: format!("{label}{file}"),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }
}

impl fmt::Display for Sha256Sums {
    /// The `sha256sum` text-mode format, one line per file, sorted by name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (file, digest) in &self.entries {
            writeln!(f, "{digest}  {file}")?;
        }
        Ok(())
    }
}

/// Only plain file names directly inside the version directory: a digest list must never
/// make us read or write outside it.
fn check_file_name(file: &str) -> std::result::Result<(), String> {
    if file.is_empty() || file == "." || file == ".." || file.contains(['/', '\\', '\0']) {
        return Err(format!("{file:?} is not a plain file name"));
    }
    Ok(())
}

/// Lowercase hex sha256 of bytes in memory.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lowercase hex sha256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "08bc7f0bc545ec7b3c7f8417c3095a6798b34d5ed246f9cd14897baed8ba9f6e";

    #[test]
    fn parses_text_and_binary_mode_and_round_trips() {
        let sums =
            Sha256Sums::parse(&format!("{A}  model.onnx\n{A} *signature.json\n"), "x").unwrap();
        assert_eq!(sums.get("model.onnx"), Some(A));
        assert_eq!(sums.get("signature.json"), Some(A));
        assert_eq!(Sha256Sums::parse(&sums.to_string(), "x").unwrap(), sums);
    }

    #[test]
    fn rejects_malformed_lines_naming_the_line() {
        for bad in [
            "abc  model.onnx",
            &format!("{}  model.onnx", "z".repeat(64)),
            &format!("{A} model.onnx"),
            &format!("{A}  ../etc/passwd"),
            &format!("{A}  a\n{A}  a"),
            "",
        ] {
            let err = Sha256Sums::parse(bad, "models/x/1/sha256sums").unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{bad:?}: {err}");
            assert!(err.to_string().contains("models/x/1/sha256sums"), "{err}");
        }
    }

    #[test]
    fn verify_names_the_mismatching_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"hello").unwrap();
        let sums = Sha256Sums::compute(dir.path(), ["a"]).unwrap();
        sums.verify(dir.path(), "m/1/").unwrap();
        std::fs::write(dir.path().join("a"), b"hellO").unwrap();
        let err = sums.verify(dir.path(), "m/1/").unwrap_err();
        match err {
            Error::DigestMismatch { file, .. } => assert_eq!(file, "m/1/a"),
            other => panic!("unexpected {other}"),
        }
    }
}
