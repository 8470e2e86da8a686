//! Whole scenarios through the real controller loop against a simulated cluster
//! (`mooring-kube-sim`), in virtual time: hours of cluster time run in milliseconds.
//! Assertions are on the cluster's state and the user-visible status, not on call order.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{Patch, PatchParams};
use mooring_crds::ModelDeployment;
use mooring_kube_sim::Sim;
use mooring_operator::controller::{self, Context, apply::FIELD_MANAGER, fetch::RegistryConnector};
use mooring_operator::metrics::Metrics;

const NAMESPACE: &str = "default";

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

/// The operator's controller running against `sim`, as client `identity`; stops when the
/// returned sender is dropped or sent to.
fn start_operator(sim: &Sim, identity: &str) -> tokio::sync::watch::Sender<bool> {
    let mut ctx = Context::new(
        sim.client(identity),
        Arc::new(RegistryConnector),
        Metrics::new().unwrap(),
        "mooring/inference-server:0.1.0".into(),
    );
    let clock = sim.clone();
    ctx.clock = Arc::new(move || Time(clock.now()));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        controller::run(Arc::new(ctx), Some(NAMESPACE), async move {
            let _ = stop_rx.changed().await;
        })
        .await
    });
    stop_tx
}

/// Poll `f` every virtual second until it holds, for at most `within`.
async fn eventually(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn iris_example_becomes_ready() {
    mooring_operator::install_crypto_provider();
    let sim = Sim::new();
    let registry = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("models"), registry.path());
    std::fs::write(
        registry.path().join("iris-classifier/aliases.json"),
        r#"{"production": "1"}"#,
    )
    .unwrap();
    let _operator = start_operator(&sim, "operator");

    let mut md: ModelDeployment = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("examples/iris-modeldeployment.yaml")).unwrap(),
    )
    .unwrap();
    md.spec.registry.local.as_mut().unwrap().path = registry.path().display().to_string();
    let mds: Api<ModelDeployment> = Api::namespaced(sim.client("user"), NAMESPACE);
    mds.patch(
        "iris",
        &PatchParams::apply("kubectl").force(),
        &Patch::Apply(&md),
    )
    .await
    .expect("apply the example");

    eventually(
        Duration::from_secs(300),
        "iris Ready=True on version 1",
        || {
            sim.get::<ModelDeployment>(NAMESPACE, "iris")
                .and_then(|md| md.status)
                .is_some_and(|s| {
                    s.version.as_deref() == Some("1")
                        && s.conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                })
        },
    )
    .await;
    let deployment = sim
        .get::<Deployment>(NAMESPACE, "iris")
        .expect("the Deployment");
    assert_eq!(
        deployment.spec.unwrap().replicas,
        Some(2),
        "replicas from the example"
    );
    assert!(
        sim.get::<Service>(NAMESPACE, "iris").is_some(),
        "the Service"
    );
    let applies =
        sim.count(|r| r.client == "operator" && r.field_manager.as_deref() == Some(FIELD_MANAGER));
    assert!(applies > 0);
    assert!(
        !sim.events().is_empty(),
        "the transitions are reported as Events"
    );
}
