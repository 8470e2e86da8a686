//! The Argo CD health check `charts/mooring/health/argocd-health.lua`, run the way Argo CD runs
//! it: the live object as the global table `obj`, the chunk returning `{status, message}`.
//! One sample per case per kind (ModelDeployment, DriftMonitor, ChatService), and the
//! argocd-cm snippet holding the script verbatim under each kind's key.

use std::path::{Path, PathBuf};

use mlua::{Lua, LuaSerdeExt, SerializeOptions, Table};
use serde_json::{Value, json};

const KINDS: &[&str] = &["ModelDeployment", "DriftMonitor", "ChatService"];

fn health_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/mooring/health")
}

fn script() -> String {
    let path = health_dir().join("argocd-health.lua");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// (status, message) of the script for `obj`.
fn health(obj: &Value) -> (String, String) {
    let lua = Lua::new();
    // JSON null becomes nil, as in the maps Argo CD hands over.
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false);
    let value = lua.to_value_with(obj, options).unwrap();
    lua.globals().set("obj", value).unwrap();
    let result: Table = lua
        .load(script())
        .set_name("argocd-health.lua")
        .eval()
        .unwrap_or_else(|e| panic!("the script failed on {obj}: {e}"));
    (
        result.get("status").unwrap(),
        result.get("message").unwrap(),
    )
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({
        "type": type_, "status": status, "reason": reason, "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 3,
    })
}

/// A `kind` object at generation 3 whose status observed `observed` and holds `conditions`.
fn object(kind: &str, observed: Option<i64>, conditions: Vec<Value>) -> Value {
    let mut status = json!({ "conditions": conditions });
    if let Some(g) = observed {
        status["observedGeneration"] = json!(g);
    }
    json!({
        "apiVersion": "mooring.dev/v1alpha1",
        "kind": kind,
        "metadata": { "name": "iris", "namespace": "ml", "generation": 3 },
        "spec": {},
        "status": status,
    })
}

fn ready() -> Value {
    condition("Ready", "True", "Available", "2/2 replicas ready")
}

/// Every case, for `kind`: (what, object, expected status, expected message).
fn cases(kind: &str) -> Vec<(&'static str, Value, &'static str, String)> {
    let mut no_status = object(kind, None, vec![]);
    no_status.as_object_mut().unwrap().remove("status");
    let mut null_status = object(kind, None, vec![]);
    null_status["status"] = Value::Null;
    vec![
        (
            "Ready=True at the current generation",
            object(kind, Some(3), vec![ready()]),
            "Healthy",
            "2/2 replicas ready".into(),
        ),
        (
            "no status yet",
            no_status,
            "Progressing",
            "Waiting for the operator to reconcile".into(),
        ),
        (
            "status: null",
            null_status,
            "Progressing",
            "Waiting for the operator to reconcile".into(),
        ),
        (
            "observedGeneration behind (Ready=True is stale)",
            object(kind, Some(2), vec![ready()]),
            "Progressing",
            "Waiting for the operator to observe generation 3".into(),
        ),
        (
            "no observedGeneration",
            object(kind, None, vec![ready()]),
            "Progressing",
            "Waiting for the operator to observe generation 3".into(),
        ),
        (
            "Reconciling=True",
            object(
                kind,
                Some(3),
                vec![
                    ready(),
                    condition("Reconciling", "True", "RollingOut", "1/2 updated"),
                ],
            ),
            "Progressing",
            "RollingOut: 1/2 updated".into(),
        ),
        (
            "no Ready condition",
            object(
                kind,
                Some(3),
                vec![condition("Reconciling", "False", "Done", "")],
            ),
            "Progressing",
            "Waiting for the Ready condition".into(),
        ),
        (
            "Ready=False, transient reason",
            object(
                kind,
                Some(3),
                vec![condition(
                    "Ready",
                    "False",
                    "ReplicasNotReady",
                    "1/2 replicas ready",
                )],
            ),
            "Progressing",
            "ReplicasNotReady: 1/2 replicas ready".into(),
        ),
        (
            "Ready=Unknown",
            object(
                kind,
                Some(3),
                vec![condition("Ready", "Unknown", "Checking", "")],
            ),
            "Progressing",
            "Checking".into(),
        ),
        (
            "Stalled=True",
            object(
                kind,
                Some(3),
                vec![
                    condition("Ready", "False", "ReplicasNotReady", "0/2"),
                    condition("Stalled", "True", "ProgressDeadlineExceeded", "gave up"),
                ],
            ),
            "Degraded",
            "ProgressDeadlineExceeded: gave up".into(),
        ),
        (
            "Degraded=True (rolled back) beats Reconciling=True and Ready=True",
            object(
                kind,
                Some(3),
                vec![
                    ready(),
                    condition("Reconciling", "True", "RollingOut", "back to 2"),
                    condition("Degraded", "True", "RolledBack", "version 3 failed"),
                ],
            ),
            "Degraded",
            "RolledBack: version 3 failed".into(),
        ),
        (
            "Ready=False, invalid spec",
            object(
                kind,
                Some(3),
                vec![condition(
                    "Ready",
                    "False",
                    "InvalidModel",
                    "spec.model: set alias or version",
                )],
            ),
            "Degraded",
            "InvalidModel: spec.model: set alias or version".into(),
        ),
        (
            "Ready=False, reconcile error",
            object(
                kind,
                Some(3),
                vec![condition(
                    "Ready",
                    "False",
                    "ReconcileError",
                    "403 Forbidden",
                )],
            ),
            "Degraded",
            "ReconcileError: 403 Forbidden".into(),
        ),
        (
            "Degraded=False and Stalled=False do not count",
            object(
                kind,
                Some(3),
                vec![
                    ready(),
                    condition("Degraded", "False", "AsExpected", ""),
                    condition("Stalled", "False", "AsExpected", ""),
                ],
            ),
            "Healthy",
            "2/2 replicas ready".into(),
        ),
    ]
}

#[test]
fn every_case_of_every_kind() {
    let mut failures = Vec::new();
    for kind in KINDS {
        for (what, obj, status, message) in cases(kind) {
            let got = health(&obj);
            if got != (status.to_string(), message.clone()) {
                failures.push(format!(
                    "{kind}, {what}: got {got:?}, want ({status:?}, {message:?})"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The argocd-cm snippet carries the tested script, verbatim, for each kind.
#[test]
fn argocd_cm_snippet_holds_the_script_for_each_kind() {
    let path = health_dir().join("argocd-cm.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let cm: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let data = cm["data"].as_mapping().expect("a data: map");
    assert_eq!(data.len(), KINDS.len(), "one key per kind");
    for kind in KINDS {
        let key = format!("resource.customizations.health.mooring.dev_{kind}");
        let lua = data
            .get(key.as_str())
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("{path:?} lacks {key}"));
        assert_eq!(lua, script(), "{key} differs from argocd-health.lua");
    }
}
