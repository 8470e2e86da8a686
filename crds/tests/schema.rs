//! The generated schemas carry what users rely on: names, short names, the status
//! subresource, printer columns, defaults, enums, minimums and CEL rules.

use kube::CustomResourceExt;
use mooring_crds::{ChatService, DriftMonitor, ModelDeployment};
use serde_json::Value;

fn spec_schema(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
}

#[test]
fn model_deployment_crd_identity_and_columns() {
    let crd = serde_json::to_value(ModelDeployment::crd()).unwrap();
    assert_eq!(crd["metadata"]["name"], "modeldeployments.mooring.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(
        crd["spec"]["names"]["shortNames"],
        serde_json::json!(["md"])
    );
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for wanted in ["Model", "Alias", "Version", "Ready", "Age"] {
        assert!(
            columns.contains(&wanted),
            "missing printer column {wanted} in {columns:?}"
        );
    }
}

#[test]
fn model_deployment_schema_validates_and_defaults() {
    let crd = serde_json::to_value(ModelDeployment::crd()).unwrap();
    let spec = spec_schema(&crd);
    let model = &spec["properties"]["model"];
    let rules = model["x-kubernetes-validations"].to_string();
    assert!(
        rules.contains("has(self.alias) != has(self.version)"),
        "{rules}"
    );
    let registry_rules = spec["properties"]["registry"]["x-kubernetes-validations"].to_string();
    assert!(
        registry_rules.contains("has(self.mlflow) != has(self.local)"),
        "{registry_rules}"
    );
    assert_eq!(spec["properties"]["replicas"]["default"], 1);
    assert_eq!(spec["properties"]["replicas"]["minimum"], 0.0);
    let rollout = &spec["properties"]["rollout"]["properties"];
    assert_eq!(rollout["autoRollback"]["default"], true);
    assert_eq!(rollout["resolveIntervalSeconds"]["default"], 30);
    assert!(
        spec["properties"]["model"]["properties"]["name"]["description"]
            .as_str()
            .unwrap()
            .contains("model name"),
        "doc comments must become descriptions"
    );
    let required: Vec<&str> = spec["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        required.contains(&"model") && required.contains(&"registry"),
        "{required:?}"
    );
}

#[test]
fn mlflow_auth_is_a_token_or_basic_auth_not_both() {
    let crd = serde_json::to_value(ModelDeployment::crd()).unwrap();
    let mlflow = &spec_schema(&crd)["properties"]["registry"]["properties"]["mlflow"];
    let rules = mlflow["x-kubernetes-validations"].to_string();
    assert!(
        rules.contains("!(has(self.tokenSecretRef) && has(self.basicAuthSecretRef))"),
        "{rules}"
    );
    let basic = &mlflow["properties"]["basicAuthSecretRef"];
    assert_eq!(basic["required"], serde_json::json!(["name"]));
    let description = basic["description"].as_str().unwrap();
    assert!(
        description.contains("`username`") && description.contains("`password`"),
        "{description}"
    );
}

#[test]
fn drift_monitor_and_chat_service_crds() {
    let dm = serde_json::to_value(DriftMonitor::crd()).unwrap();
    assert_eq!(dm["spec"]["names"]["shortNames"], serde_json::json!(["dm"]));
    let action = &spec_schema(&dm)["properties"]["action"];
    assert_eq!(
        action["properties"]["onDrift"]["enum"],
        serde_json::json!(["Notify", "Rollback", "Promote"])
    );
    assert!(
        action["x-kubernetes-validations"]
            .to_string()
            .contains("has(self.promote)")
    );

    let chat = serde_json::to_value(ChatService::crd()).unwrap();
    assert_eq!(
        chat["spec"]["names"]["shortNames"],
        serde_json::json!(["chat"])
    );
    let backend = &spec_schema(&chat)["properties"]["backend"];
    assert_eq!(
        backend["properties"]["kind"]["enum"],
        serde_json::json!(["local", "ollama", "openai"])
    );
}

#[test]
fn model_deployment_yaml_fixture_parses_with_defaults() {
    let md: ModelDeployment = serde_yaml::from_str(
        r#"
apiVersion: mooring.dev/v1alpha1
kind: ModelDeployment
metadata: {name: iris, namespace: ml}
spec:
  model: {name: iris-classifier, alias: production}
  registry: {local: {path: /models}}
"#,
    )
    .unwrap();
    assert_eq!(md.spec.replicas, 1);
    assert!(md.spec.rollout.auto_rollback);
    assert_eq!(md.spec.rollout.resolve_interval_seconds, 30);
}

#[test]
fn chat_service_takes_jwt_auth_and_a_postgres_store() {
    let chat = serde_json::to_value(ChatService::crd()).unwrap();
    let spec = spec_schema(&chat);
    let memory = &spec["properties"]["memory"];
    assert!(
        memory["properties"]["store"]["enum"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("postgres"))
    );
    assert!(
        memory["x-kubernetes-validations"]
            .to_string()
            .contains("has(self.postgres)")
    );
    let jwt = &spec["properties"]["auth"]["properties"]["jwt"];
    assert_eq!(
        jwt["required"],
        serde_json::json!(["audience", "issuer", "jwksUrl"])
    );

    let parsed: mooring_crds::chat_service::ChatServiceSpec = serde_yaml::from_str(
        "backend: {kind: local}\n\
         memory: {store: postgres, postgres: {urlSecretRef: {name: chat-db, key: url}}}\n\
         auth:\n  apiKeysSecretRef: {name: keys}\n  jwt: {issuer: https://idp, audience: chat, jwksUrl: https://idp/jwks}\n",
    )
    .unwrap();
    assert_eq!(
        parsed.memory.store,
        mooring_crds::chat_service::MemoryStore::Postgres
    );
    assert_eq!(
        parsed.auth.unwrap().jwt.unwrap().jwks_url,
        "https://idp/jwks"
    );
}
