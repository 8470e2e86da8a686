//! The examples in `examples/` are valid resources: they parse into the CRD types without a
//! field being silently dropped (a typo would be), and ModelDeployments pass validation.

use std::path::{Path, PathBuf};

use mooring_crds::{ChatService, DriftMonitor, ModelDeployment};
use mooring_operator::controller::validate::validate;
use serde_json::Value;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every key of `input` is in `parsed` (which may add defaults), with equal leaves.
fn assert_kept(input: &Value, parsed: &Value, path: &str) {
    match (input, parsed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let child = format!("{path}.{k}");
                let other = b
                    .get(k)
                    .unwrap_or_else(|| panic!("{child} is not a field of the type (typo?)"));
                assert_kept(v, other, &child);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_kept(x, y, &format!("{path}[{i}]"));
            }
        }
        (Value::Number(a), Value::Number(b)) => assert_eq!(a.as_f64(), b.as_f64(), "{path}"),
        _ => assert_eq!(input, parsed, "{path}"),
    }
}

fn check<K: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value, file: &Path) -> K {
    let parsed: K =
        serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert_kept(
        doc,
        &serde_json::to_value(&parsed).unwrap(),
        &file.display().to_string(),
    );
    parsed
}

#[test]
fn examples_are_valid_resources() {
    let files = examples();
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("iris-modeldeployment.yaml"))
    );
    assert!(files.iter().any(|f| f.ends_with("iris-mlflow.yaml")));
    let mut model_deployments = 0;
    let mut drift_monitors = Vec::new();
    let mut chat_services = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc: Value = serde::Deserialize::deserialize(doc).unwrap();
            match doc["kind"].as_str() {
                Some("ModelDeployment") => {
                    let md: ModelDeployment = check(&doc, &file);
                    validate(&md.spec).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                    model_deployments += 1;
                }
                Some("DriftMonitor") => {
                    let dm: DriftMonitor = check(&doc, &file);
                    mooring_operator::drift_monitor::validate::validate(&dm.spec)
                        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                    drift_monitors.push(dm.spec.action.on_drift);
                }
                Some("ChatService") => {
                    let chat: ChatService = check(&doc, &file);
                    mooring_operator::chat_service::validate::validate(&chat.spec)
                        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                    chat_services += 1;
                }
                other => panic!("{}: unexpected kind {other:?}", file.display()),
            }
        }
    }
    assert!(model_deployments >= 2);
    // One monitor per action.
    use mooring_crds::drift_monitor::OnDrift;
    for action in [OnDrift::Notify, OnDrift::Rollback, OnDrift::Promote] {
        assert!(
            drift_monitors.contains(&action),
            "no example DriftMonitor for {action:?}"
        );
    }
    assert!(chat_services >= 3, "local, openai and ollama");
}
