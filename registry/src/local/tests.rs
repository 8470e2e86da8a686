use super::*;

const BUNDLED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models");

/// A throw-away copy of the bundled registry (tests mutate aliases and versions).
fn copy_of_bundled() -> (tempfile::TempDir, LocalRegistry) {
    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(BUNDLED).join("iris-classifier");
    let dst = tmp.path().join("iris-classifier");
    copy_tree(&src, &dst);
    let reg = LocalRegistry::open(tmp.path()).unwrap();
    (tmp, reg)
}

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

fn r(s: &str) -> ModelRef {
    s.parse().unwrap()
}

#[tokio::test]
async fn bundled_registry_resolves_aliases_and_versions() {
    let reg = LocalRegistry::open(BUNDLED).unwrap();
    let prod = reg.resolve(&r("iris-classifier@production")).await.unwrap();
    assert_eq!(prod.version, "1");
    assert!(prod.is_ready());
    assert_eq!(prod.aliases, ["production"]);
    assert!(prod.metrics["test_accuracy"] > 0.8);
    assert!(prod.created_at_ms.unwrap() > 1_700_000_000_000);
    assert_eq!(prod.tags["param.algorithm"], "LogisticRegression");
    let v2 = reg.resolve(&r("iris-classifier@2")).await.unwrap();
    assert_eq!(v2.aliases, ["challenger"]);
    assert!(v2.source.starts_with("file:///") && v2.source.ends_with("iris-classifier/2"));
}

#[tokio::test]
async fn fetch_copies_verifies_and_reuses_the_cache() {
    let reg = LocalRegistry::open(BUNDLED).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let v = reg.resolve(&r("iris-classifier@production")).await.unwrap();
    let fetched = reg.fetch(&v, cache.path()).await.unwrap();
    assert_eq!(fetched.dir, cache.path().join("iris-classifier/1"));
    assert!(fetched.model_path().is_file());
    assert!(fetched.reference_path().is_some());
    assert_eq!(fetched.signature.class_labels.len(), 3);
    let expected =
        digest::sha256_file(&Path::new(BUNDLED).join("iris-classifier/1/model.onnx")).unwrap();
    assert_eq!(fetched.digest, format!("sha256:{expected}"));
    // Only the finished directory is left: no staging leftovers.
    let entries: Vec<_> = std::fs::read_dir(cache.path().join("iris-classifier"))
        .unwrap()
        .collect();
    assert_eq!(entries.len(), 1);

    // A second fetch reuses the copy (a marker file we add survives) …
    std::fs::write(fetched.dir.join("marker"), b"x").unwrap();
    reg.fetch(&v, cache.path()).await.unwrap();
    assert!(fetched.dir.join("marker").exists());
    // … unless the cached copy was tampered with: then it is fetched again.
    std::fs::write(fetched.model_path(), b"garbage").unwrap();
    let again = reg.fetch(&v, cache.path()).await.unwrap();
    assert_eq!(again.digest, fetched.digest);
    assert!(!fetched.dir.join("marker").exists());
}

use crate::digest;

#[tokio::test]
async fn digest_mismatch_names_the_file() {
    let (tmp, reg) = copy_of_bundled();
    std::fs::write(
        tmp.path().join("iris-classifier/1/model.onnx"),
        b"not the model",
    )
    .unwrap();
    let v = reg.resolve(&r("iris-classifier@1")).await.unwrap();
    let cache = tempfile::tempdir().unwrap();
    let err = reg.fetch(&v, cache.path()).await.unwrap_err();
    match &err {
        Error::DigestMismatch {
            file,
            expected,
            actual,
        } => {
            assert_eq!(file, "iris-classifier/1/model.onnx");
            assert_ne!(expected, actual);
        }
        other => panic!("expected a digest mismatch, got {other}"),
    }
    assert!(!err.is_transient());
    // Nothing half-copied is left in the cache.
    assert!(!cache.path().join("iris-classifier/1").exists());
}

#[tokio::test]
async fn unknown_model_alias_and_version_are_clear_errors() {
    let reg = LocalRegistry::open(BUNDLED).unwrap();
    let err = reg.resolve(&r("nope@production")).await.unwrap_err();
    assert!(matches!(err, Error::ModelNotFound { .. }), "{err}");
    let err = reg
        .resolve(&r("iris-classifier@staging"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "model \"iris-classifier\" has no alias \"staging\" (known aliases: challenger, production)"
    );
    let err = reg.resolve(&r("iris-classifier@99")).await.unwrap_err();
    assert!(matches!(err, Error::VersionNotFound { .. }), "{err}");
    let err = reg.resolve(&r("..@1")).await.unwrap_err();
    assert!(err.to_string().starts_with("invalid model name"), "{err}");
}

#[tokio::test]
async fn missing_signature_and_sha256sums_are_errors() {
    let (tmp, reg) = copy_of_bundled();
    let v1 = reg.resolve(&r("iris-classifier@1")).await.unwrap();
    let cache = tempfile::tempdir().unwrap();

    std::fs::remove_file(tmp.path().join("iris-classifier/1/signature.json")).unwrap();
    let err = reg.fetch(&v1, cache.path()).await.unwrap_err();
    assert!(err.to_string().contains("signature.json"), "{err}");

    std::fs::remove_file(tmp.path().join("iris-classifier/1/sha256sums")).unwrap();
    let err = reg.fetch(&v1, cache.path()).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("sha256sums: missing"), "{err}");

    // A signature that is present but inconsistent, with matching digests.
    let v2dir = tmp.path().join("iris-classifier/2");
    std::fs::write(
        v2dir.join("signature.json"),
        br#"{"inputs":[],"outputs":[]}"#,
    )
    .unwrap();
    let sums = Sha256Sums::compute(&v2dir, ["model.onnx", "signature.json"]).unwrap();
    std::fs::write(v2dir.join("sha256sums"), sums.to_string()).unwrap();
    let v2 = reg.resolve(&r("iris-classifier@2")).await.unwrap();
    let err = reg.fetch(&v2, cache.path()).await.unwrap_err();
    assert!(matches!(err, Error::InvalidSignature { .. }), "{err}");
}

#[tokio::test]
async fn malformed_aliases_json_names_the_file() {
    let (tmp, reg) = copy_of_bundled();
    let path = tmp.path().join("iris-classifier/aliases.json");
    for bad in ["{", r#"["production"]"#, r#"{"production": "one"}"#] {
        std::fs::write(&path, bad).unwrap();
        let err = reg
            .resolve(&r("iris-classifier@production"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{bad}: {err}");
        assert!(err.to_string().contains("aliases.json"), "{err}");
    }
    // Numbers are accepted as versions.
    std::fs::write(&path, r#"{"production": 2}"#).unwrap();
    assert_eq!(
        reg.resolve(&r("iris-classifier@production"))
            .await
            .unwrap()
            .version,
        "2"
    );
}

#[tokio::test]
async fn set_and_delete_alias_rewrite_aliases_json() {
    let (tmp, reg) = copy_of_bundled();
    reg.set_alias("iris-classifier", "production", "2")
        .await
        .unwrap();
    assert_eq!(
        reg.resolve(&r("iris-classifier@production"))
            .await
            .unwrap()
            .version,
        "2"
    );
    reg.set_alias("iris-classifier", "canary", "1")
        .await
        .unwrap();
    let text = std::fs::read_to_string(tmp.path().join("iris-classifier/aliases.json")).unwrap();
    let map: BTreeMap<String, String> = serde_json::from_str(&text).unwrap();
    assert_eq!(map["canary"], "1");
    assert_eq!(map["production"], "2");

    reg.delete_alias("iris-classifier", "canary").await.unwrap();
    let err = reg.resolve(&r("iris-classifier@canary")).await.unwrap_err();
    assert!(matches!(err, Error::AliasNotFound { .. }));
    let err = reg
        .delete_alias("iris-classifier", "canary")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AliasNotFound { .. }));

    let err = reg
        .set_alias("iris-classifier", "production", "7")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::VersionNotFound { .. }), "{err}");
    let err = reg
        .set_alias("iris-classifier", "42", "1")
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("invalid alias"), "{err}");
    let err = reg.set_alias("nope", "production", "1").await.unwrap_err();
    assert!(matches!(err, Error::ModelNotFound { .. }));
    // No temporary files are left next to aliases.json.
    let names: Vec<String> = std::fs::read_dir(tmp.path().join("iris-classifier"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}

#[tokio::test]
async fn register_adds_the_next_version_with_digests() {
    let (tmp, reg) = copy_of_bundled();
    let src = tempfile::tempdir().unwrap();
    for f in ["model.onnx", "signature.json", "reference.csv"] {
        std::fs::copy(
            Path::new(BUNDLED).join("iris-classifier/2").join(f),
            src.path().join(f),
        )
        .unwrap();
    }
    let v = reg.register("iris-classifier", src.path()).await.unwrap();
    assert_eq!(v.version, "3");
    assert!(v.created_at_ms.is_some());
    let dir = tmp.path().join("iris-classifier/3");
    let sums = Sha256Sums::read(&dir).unwrap();
    assert_eq!(
        sums.files().collect::<Vec<_>>(),
        [
            "model.onnx",
            "reference.csv",
            "signature.json",
            "version.json"
        ]
    );
    sums.verify(&dir, "").unwrap();
    let cache = tempfile::tempdir().unwrap();
    reg.fetch(&v, cache.path()).await.unwrap();

    // A brand-new model starts at version 1.
    let v = reg.register("other-model", src.path()).await.unwrap();
    assert_eq!(v.version, "1");
    let names: Vec<_> = reg
        .list_models()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names.len(), 2);
}

#[tokio::test]
async fn register_rejects_incomplete_or_tampered_directories() {
    let (_tmp, reg) = copy_of_bundled();
    let src = tempfile::tempdir().unwrap();
    let err = reg
        .register("iris-classifier", src.path())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no model.onnx"), "{err}");

    copy_tree(&Path::new(BUNDLED).join("iris-classifier/1"), src.path());
    std::fs::write(src.path().join("reference.csv"), "changed").unwrap();
    let err = reg
        .register("iris-classifier", src.path())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");

    std::fs::write(src.path().join("signature.json"), "{}").unwrap();
    let err = reg
        .register("iris-classifier", src.path())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("signature.json"), "{err}");
    assert_eq!(reg.versions("iris-classifier").unwrap(), [1, 2]);
}

#[tokio::test]
async fn list_models_shows_versions_and_aliases() {
    let reg = LocalRegistry::open(BUNDLED).unwrap();
    let models = reg.list_models().await.unwrap();
    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        ["iris-classifier", "smollm2", "spam-classifier"],
        "listed by name"
    );
    let iris = models.iter().find(|m| m.name == "iris-classifier").unwrap();
    assert_eq!(
        iris.versions
            .iter()
            .map(|v| v.version.as_str())
            .collect::<Vec<_>>(),
        ["1", "2"]
    );
    assert_eq!(iris.aliases["production"], "1");
    assert_eq!(iris.aliases["challenger"], "2");
}
