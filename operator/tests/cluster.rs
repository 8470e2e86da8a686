//! End to end against a real cluster, `#[ignore]`d: run with a kubeconfig present,
//! `cargo test -p mooring-operator --test cluster -- --ignored`.
//!
//! Installs the CRDs, runs the controller in this process against a copy of the bundled
//! registry (so the test can move its alias), applies `examples/iris-modeldeployment.yaml`,
//! waits for the Deployment, moves `production` from 1 to 2 and waits for the Deployment's
//! pod template to carry version 2. It checks the operator's decisions, not the pods (which
//! need the inference-server image in the cluster).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use mooring_crds::ModelDeployment;
use mooring_operator::controller::{self, Context, apply::FIELD_MANAGER, fetch::RegistryConnector};
use mooring_operator::metrics::Metrics;

const NAMESPACE: &str = "default";
/// Every wait is bounded.
const WAIT: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

async fn template_version(deployments: &Api<Deployment>, name: &str) -> Option<String> {
    let d = deployments.get_opt(name).await.ok()??;
    d.spec?
        .template
        .metadata?
        .annotations?
        .get("mooring.dev/model-version")
        .cloned()
}

async fn wait_for_version(deployments: &Api<Deployment>, name: &str, version: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while template_version(deployments, name).await.as_deref() != Some(version) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Deployment {name} never rolled out version {version}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster (kubeconfig); run with -- --ignored"]
async fn alias_move_rolls_out_the_new_version() {
    mooring_operator::install_crypto_provider();
    let client = Client::try_default()
        .await
        .expect("a kubeconfig or in-cluster config");
    let apply = PatchParams::apply(FIELD_MANAGER).force();

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for file in [
        "modeldeployments.yaml",
        "driftmonitors.yaml",
        "chatservices.yaml",
    ] {
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&std::fs::read_to_string(repo().join("crds").join(file)).unwrap())
                .unwrap();
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(&name, &apply, &Patch::Apply(&crd))
            .await
            .expect("install CRD");
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // let the API server serve the new types

    let registry = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("models"), registry.path());
    let aliases = registry.path().join("iris-classifier/aliases.json");
    std::fs::write(&aliases, r#"{"production": "1"}"#).unwrap();

    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(RegistryConnector),
        Metrics::new().unwrap(),
        "mooring/inference-server:0.1.0".into(),
    ));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let controller = tokio::spawn(async move {
        controller::run(ctx, Some(NAMESPACE), async move {
            let _ = stop_rx.changed().await;
        })
        .await
    });

    let mut md: ModelDeployment = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("examples/iris-modeldeployment.yaml")).unwrap(),
    )
    .unwrap();
    md.metadata.name = Some("iris-e2e".into());
    md.spec.registry.local.as_mut().unwrap().path = registry.path().display().to_string();
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), NAMESPACE);
    mds.patch("iris-e2e", &apply, &Patch::Apply(&md))
        .await
        .expect("apply the example");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    wait_for_version(&deployments, "iris-e2e", "1").await;

    std::fs::write(&aliases, r#"{"production": "2"}"#).unwrap();
    // resolveIntervalSeconds is 30 in the example; the wait allows for it.
    wait_for_version(&deployments, "iris-e2e", "2").await;
    let status = mds.get_status("iris-e2e").await.unwrap().status.unwrap();
    assert_eq!(status.version.as_deref(), Some("2"));
    assert!(status.history.iter().any(|h| h.version == "1"));

    let _ = mds.delete("iris-e2e", &DeleteParams::default()).await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
}
