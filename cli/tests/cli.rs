//! The `mooring` binary end to end: exit codes and output against a local registry, and
//! the promotion workflow against a real MLflow server (`MOORING_TEST_MLFLOW_URL`).

use std::path::Path;
use std::process::Command;

use mooring_registry::{ModelRef, RegistryConfig, connect};

const BUNDLED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models");

fn mooring(registry: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mooring"))
        .args(["--registry", registry])
        .args(args)
        .env_remove("MOORING_OUTPUT")
        .output()
        .expect("run mooring");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn mlflow_url() -> String {
    std::env::var("MOORING_TEST_MLFLOW_URL").expect(
        "MOORING_TEST_MLFLOW_URL is not set: this test needs a real MLflow server; run `make test`",
    )
}

#[test]
fn errors_go_to_stderr_with_a_failure_exit_code() {
    let (ok, stdout, stderr) = mooring(
        BUNDLED,
        &["models", "show", "iris-classifier", "--version", "staging"],
    );
    assert!(!ok);
    assert!(stdout.is_empty());
    assert_eq!(
        stderr.trim(),
        "error: model \"iris-classifier\" has no alias \"staging\" (known aliases: challenger, production)"
    );
    let (ok, _, stderr) = mooring(BUNDLED, &["alias", "set", "iris-classifier", "latest", "1"]);
    assert!(!ok);
    assert!(
        stderr.contains("invalid alias: \"latest\" is reserved"),
        "{stderr}"
    );
}

#[test]
fn registry_comes_from_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_mooring"))
        .args(["models", "list", "--output", "json"])
        .env("MOORING_REGISTRY", format!("file://{BUNDLED}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["name"], "iris-classifier");
}

#[tokio::test]
async fn promotion_workflow_against_mlflow() {
    let url = mlflow_url();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!("iris-classifier-cli-{}-{nanos}", std::process::id());
    let iris = Path::new(BUNDLED).join("iris-classifier");

    for v in ["1", "2"] {
        let (ok, out, err) = mooring(
            &url,
            &[
                "models",
                "register",
                &name,
                "--from",
                iris.join(v).to_str().unwrap(),
            ],
        );
        assert!(ok, "{err}");
        assert_eq!(
            out.trim(),
            format!("registered {name} version {v} in {url}/")
        );
    }
    for (alias, v) in [("production", "1"), ("challenger", "2")] {
        let (ok, out, err) = mooring(&url, &["alias", "set", &name, alias, v]);
        assert!(ok, "{err}");
        assert_eq!(
            out.trim(),
            format!("{name}@{alias} -> version {v} (new alias)")
        );
    }

    let (ok, out, err) = mooring(&url, &["models", "list", "-o", "json"]);
    assert!(ok, "{err}");
    let models: serde_json::Value = serde_json::from_str(&out).unwrap();
    let m = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name.as_str())
        .expect("model listed");
    assert_eq!(m["aliases"]["production"], "1");
    assert_eq!(m["versions"].as_array().unwrap().len(), 2);

    let (ok, out, err) = mooring(&url, &["models", "list"]);
    assert!(ok, "{err}");
    // Other tests' models share the server, so columns may be wider than our name.
    let row = out
        .lines()
        .find(|l| l.split_whitespace().take(2).eq([name.as_str(), "2"]))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("READY") && row.contains("challenger"), "{row}");

    let (ok, out, err) = mooring(&url, &["models", "show", &name, "--version", "production"]);
    assert!(ok, "{err}");
    let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("run id "), "{out}");
    assert!(flat.contains("source mlflow-artifacts:/"), "{out}");
    assert!(flat.contains("metric test_accuracy 0.9667"), "{out}");
    assert!(flat.contains("inputs input FP32[-1,4]"), "{out}");

    let (ok, out, err) = mooring(&url, &["models", "compare", &name, "1", "2"]);
    assert!(ok, "{err}");
    let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("param algorithm LogisticRegression RandomForestClassifier"),
        "{out}"
    );

    // Promote: production moves to 2, and the registry says so.
    let (ok, out, err) = mooring(&url, &["alias", "set", &name, "production", "2"]);
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        format!("{name}@production -> version 2 (was 1)")
    );
    let reg = connect(&RegistryConfig::new(&url)).unwrap();
    let prod = reg
        .resolve(&ModelRef::alias(&name, "production"))
        .await
        .unwrap();
    assert_eq!(prod.version, "2");

    let (ok, _, err) = mooring(&url, &["alias", "delete", &name, "challenger"]);
    assert!(ok, "{err}");
    let err = reg
        .resolve(&ModelRef::alias(&name, "challenger"))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "AliasNotFound");
    let (ok, _, err) = mooring(&url, &["alias", "delete", &name, "challenger"]);
    assert!(!ok);
    assert!(err.contains("has no alias \"challenger\""), "{err}");
}
