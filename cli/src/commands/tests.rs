//! Every command against a copy of the bundled local registry, in process.

use std::path::{Path, PathBuf};

use clap::Parser;

use crate::{Cli, run};

const BUNDLED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models");

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

fn registry_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(
        &Path::new(BUNDLED).join("iris-classifier"),
        &tmp.path().join("iris-classifier"),
    );
    let root = tmp.path().to_path_buf();
    (tmp, root)
}

async fn mooring(registry: &Path, args: &[&str]) -> Result<String, String> {
    let mut argv = vec!["mooring", "--registry", registry.to_str().unwrap()];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    run(&cli, &mut out).await.map_err(|e| e.to_string())?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn list_prints_a_table_and_json() {
    let out = mooring(Path::new(BUNDLED), &["models", "list"])
        .await
        .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("MODEL") && lines[0].contains("ALIASES"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("iris-classifier  1")
            && lines[1].contains("READY")
            && lines[1].contains("production"),
        "{out}"
    );
    assert!(
        lines[2].contains("challenger") && lines[2].contains("Random forest"),
        "{out}"
    );

    let out = mooring(Path::new(BUNDLED), &["models", "list", "--output", "json"])
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["name"], "iris-classifier");
    assert_eq!(json[0]["aliases"]["production"], "1");
    assert_eq!(json[0]["versions"][1]["metrics"]["test_accuracy"], 0.9);
}

#[tokio::test]
async fn show_a_version_with_lineage_and_signature() {
    let out = mooring(
        Path::new(BUNDLED),
        &[
            "models",
            "show",
            "iris-classifier",
            "--version",
            "production",
        ],
    )
    .await
    .unwrap();
    for expected in [
        "version        1",
        "aliases        production",
        "param algorithm  LogisticRegression",
        "inputs         input FP32[-1,4]",
        "outputs        label INT64[-1]; probabilities FP32[-1,3]",
        "class labels   setosa,versicolor,virginica",
        "digest         sha256:",
    ] {
        let collapsed = out.split_whitespace().collect::<Vec<_>>().join(" ");
        let want = expected.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(collapsed.contains(&want), "missing {expected:?} in\n{out}");
    }
    let out = mooring(Path::new(BUNDLED), &["models", "show", "iris-classifier"])
        .await
        .unwrap();
    assert!(
        out.contains("aliases:  challenger -> 2, production -> 1"),
        "{out}"
    );
    let err = mooring(Path::new(BUNDLED), &["models", "show", "nope"])
        .await
        .unwrap_err();
    assert_eq!(err, "model \"nope\" not found in the registry");
}

#[tokio::test]
async fn compare_two_versions_side_by_side() {
    let out = mooring(
        Path::new(BUNDLED),
        &["models", "compare", "iris-classifier", "1", "2"],
    )
    .await
    .unwrap();
    let row = |field: &str| {
        out.lines()
            .find(|l| l.starts_with(field))
            .unwrap_or_else(|| panic!("no {field} row in\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(out.starts_with("FIELD"), "{out}");
    assert!(
        out.lines().next().unwrap().contains("iris-classifier@1")
            && out.contains("iris-classifier@2")
    );
    assert_eq!(
        row("metric test_accuracy"),
        "metric test_accuracy 0.9667 0.9"
    );
    assert_eq!(
        row("param algorithm"),
        "param algorithm LogisticRegression RandomForestClassifier"
    );
    assert_eq!(row("param n_estimators"), "param n_estimators - 50");

    let out = mooring(
        Path::new(BUNDLED),
        &[
            "-o",
            "json",
            "models",
            "compare",
            "iris-classifier",
            "production",
            "challenger",
        ],
    )
    .await
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["versions"][0]["version"]["version"], "1");
    assert_eq!(json["versions"][1]["version"]["version"], "2");
    assert_ne!(json["versions"][0]["digest"], json["versions"][1]["digest"]);
}

#[tokio::test]
async fn promote_demote_and_register_change_the_registry() {
    let (_tmp, root) = registry_copy();
    let out = mooring(
        &root,
        &["alias", "set", "iris-classifier", "production", "2"],
    )
    .await
    .unwrap();
    assert_eq!(out, "iris-classifier@production -> version 2 (was 1)\n");
    let aliases: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("iris-classifier/aliases.json")).unwrap())
            .unwrap();
    assert_eq!(aliases["production"], "2");

    let out = mooring(&root, &["alias", "delete", "iris-classifier", "challenger"])
        .await
        .unwrap();
    assert_eq!(
        out,
        "deleted alias iris-classifier@challenger (was version 2)\n"
    );
    let err = mooring(&root, &["alias", "delete", "iris-classifier", "challenger"])
        .await
        .unwrap_err();
    assert!(err.contains("has no alias \"challenger\""), "{err}");
    let err = mooring(
        &root,
        &["alias", "set", "iris-classifier", "production", "9"],
    )
    .await
    .unwrap_err();
    assert_eq!(err, "model \"iris-classifier\" has no version \"9\"");

    let out = mooring(
        &root,
        &[
            "models",
            "register",
            "iris-classifier",
            "--from",
            &format!("{BUNDLED}/iris-classifier/1"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        format!(
            "registered iris-classifier version 3 in {}\n",
            std::fs::canonicalize(&root).unwrap().display()
        )
    );
    assert!(root.join("iris-classifier/3/sha256sums").is_file());
    let err = mooring(
        &root,
        &["models", "register", "x", "--from", "/nonexistent"],
    )
    .await
    .unwrap_err();
    assert!(err.contains("/nonexistent"), "{err}");
}

#[tokio::test]
async fn bad_registry_location_is_named() {
    let err = mooring(Path::new("/nonexistent/registry"), &["models", "list"])
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "invalid registry location: /nonexistent/registry is not a directory"
    );
}

/// A chat model is a registry citizen too: a directory holding one `.gguf` file registers as
/// a version (no signature needed), and the server's fetch digest-checks it.
#[tokio::test]
async fn register_a_gguf_chat_model() {
    let (_tmp, root) = registry_copy();
    let from = tempfile::tempdir().unwrap();
    // The register path copies and hashes the bytes; it does not parse them.
    std::fs::write(
        from.path().join("tiny.gguf"),
        b"GGUF\x03\x00\x00\x00 not a real model",
    )
    .unwrap();
    let out = mooring(
        &root,
        &[
            "models",
            "register",
            "smollm2",
            "--from",
            from.path().to_str().unwrap(),
        ],
    )
    .await
    .unwrap();
    assert!(out.starts_with("registered smollm2 version 1 in "), "{out}");
    let out = mooring(&root, &["alias", "set", "smollm2", "production", "1"])
        .await
        .unwrap();
    assert!(out.starts_with("smollm2@production -> version 1"), "{out}");

    use mooring_registry::Registry;
    let registry = mooring_registry::local::LocalRegistry::open(&root).unwrap();
    let version = registry
        .resolve(&"smollm2@production".parse().unwrap())
        .await
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let fetched = registry.fetch_gguf(&version, cache.path()).await.unwrap();
    assert_eq!(fetched.path, cache.path().join("smollm2/1/tiny.gguf"));
    assert!(fetched.digest.starts_with("sha256:"));
    // An ONNX version is not a chat model.
    let iris = registry
        .resolve(&"iris-classifier@production".parse().unwrap())
        .await
        .unwrap();
    let err = registry.fetch_gguf(&iris, cache.path()).await.unwrap_err();
    assert!(err.to_string().contains("exactly one .gguf"), "{err}");

    // Two GGUF files are refused at registration.
    std::fs::write(from.path().join("other.gguf"), b"GGUF").unwrap();
    let err = mooring(
        &root,
        &[
            "models",
            "register",
            "smollm2",
            "--from",
            from.path().to_str().unwrap(),
        ],
    )
    .await
    .unwrap_err();
    assert!(err.contains(".gguf files"), "{err}");
}
