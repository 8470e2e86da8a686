//! The ModelDeployment scenarios of `md_scenarios.rs` against a real cluster, `#[ignore]`d:
//! run them with a kubeconfig (kind, k3d, any cluster you may create namespaces in):
//!
//! ```sh
//! kind create cluster            # or: k3d cluster create
//! scripts/check-chart.sh         # fetches helm into .cache/bin (or put helm on PATH, or set HELM)
//! cargo test -p mooring-operator --test cluster -- --ignored --test-threads 1
//! ```
//!
//! Each test installs the CRDs, makes a namespace of its own, installs the chart's RBAC for it
//! (`helm template --set watchNamespace=…`, so a Role, as a namespaced install gets) and runs
//! the operator in this process **as the chart's ServiceAccount** (the kubeconfig user only
//! impersonates it): a call the chart's RBAC does not grant fails the test as it would fail in
//! the cluster. The operator reads a copy of the bundled registry, so the test can move its
//! alias. The cluster has no Mooring images: the tests check the operator's decisions (the
//! Deployment's template, status, Events, garbage collection, leader election), not the pods.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use mooring_crds::ModelDeployment;
use mooring_operator::controller::fetch::RegistryConnector;
use mooring_operator::leader::LeaseLock;
use mooring_operator::metrics::Metrics;
use mooring_operator::process::{self, Controllers, Exit, Health, Images};
use tokio::sync::watch;

use common::{copy_dir, repo};

/// Every wait is bounded.
const WAIT: Duration = Duration::from_secs(120);
const RELEASE: &str = "mooring";
const APPLY_AS: &str = "mooring-e2e";

fn helm() -> PathBuf {
    if let Ok(helm) = std::env::var("HELM") {
        return helm.into();
    }
    let cached = repo().join(".cache/bin/helm");
    if cached.exists() {
        cached
    } else {
        "helm".into()
    }
}

/// One test's namespace, registry copy and the operator's client (as the chart's
/// ServiceAccount).
struct Cluster {
    admin: Client,
    operator: Client,
    namespace: String,
    registry: tempfile::TempDir,
}

impl Cluster {
    async fn new(test: &str) -> Self {
        mooring_operator::install_crypto_provider();
        let admin = Client::try_default()
            .await
            .expect("a kubeconfig or in-cluster config");
        let apply = PatchParams::apply(APPLY_AS).force();
        let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
        for (file, _) in mooring_crds::crd_manifests() {
            let crd: CustomResourceDefinition = serde_yaml::from_str(
                &std::fs::read_to_string(repo().join("crds").join(file)).unwrap(),
            )
            .unwrap();
            let name = crd.metadata.name.clone().unwrap();
            crds.patch(&name, &apply, &Patch::Apply(&crd))
                .await
                .expect("install CRD");
        }
        let namespace = format!("mooring-e2e-{test}");
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}
        }))
        .unwrap();
        Api::<Namespace>::all(admin.clone())
            .patch(&namespace, &apply, &Patch::Apply(&ns))
            .await
            .expect("namespace");
        install_rbac(&admin, &namespace).await;
        tokio::time::sleep(Duration::from_secs(2)).await; // new types and roles take effect

        let mut config = kube::Config::infer().await.expect("kubeconfig");
        config.auth_info.impersonate = Some(format!("system:serviceaccount:{namespace}:{RELEASE}"));
        let operator = Client::try_from(config).expect("impersonating client");

        let registry = tempfile::tempdir().unwrap();
        copy_dir(&repo().join("models"), registry.path());
        let cluster = Cluster {
            admin,
            operator,
            namespace,
            registry,
        };
        cluster.set_alias("1");
        cluster
    }

    fn set_alias(&self, version: &str) {
        std::fs::write(
            self.registry.path().join("iris-classifier/aliases.json"),
            format!(r#"{{"production": "{version}"}}"#),
        )
        .unwrap();
    }

    /// The operator process, as the chart runs it, with leader election when `identity`
    /// names a candidate.
    fn start_operator(
        &self,
        identity: Option<&str>,
    ) -> (watch::Sender<bool>, tokio::task::JoinHandle<Exit>) {
        let controllers = Controllers::new(
            self.operator.clone(),
            Arc::new(RegistryConnector),
            Metrics::new().unwrap(),
            Images {
                model: "mooring/inference-server:0.1.0".into(),
                chat: "mooring/inference-server-chat:0.1.0".into(),
            },
        );
        let election = identity.map(|id| {
            LeaseLock::new(
                Api::<Lease>::namespaced(self.operator.clone(), &self.namespace),
                RELEASE,
                id,
                Duration::from_secs(15),
            )
        });
        let health = Arc::new(Health::default());
        health.set_api_reachable();
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(process::operate(
            controllers,
            Some(self.namespace.clone()),
            election,
            health,
            rx,
        ));
        (tx, task)
    }

    fn mds(&self) -> Api<ModelDeployment> {
        Api::namespaced(self.admin.clone(), &self.namespace)
    }

    fn iris(&self, name: &str) -> ModelDeployment {
        let mut md: ModelDeployment = serde_yaml::from_str(
            &std::fs::read_to_string(repo().join("examples/iris-modeldeployment.yaml")).unwrap(),
        )
        .unwrap();
        md.metadata.name = Some(name.into());
        md.spec.registry.local.as_mut().unwrap().path = self.registry.path().display().to_string();
        md
    }

    async fn apply(&self, md: &ModelDeployment) {
        let name = md.metadata.name.clone().unwrap();
        self.mds()
            .patch(
                &name,
                &PatchParams::apply(APPLY_AS).force(),
                &Patch::Apply(md),
            )
            .await
            .expect("apply the ModelDeployment");
    }

    /// Wait until `f` holds for ModelDeployment `name`.
    async fn until(&self, name: &str, what: &str, f: impl Fn(&ModelDeployment) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(md) = self.mds().get(name).await
                && f(&md)
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never: {what}: {:#?}",
                self.mds().get(name).await.ok().and_then(|m| m.status)
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn template_version(&self, name: &str) -> Option<String> {
        let d = Api::<Deployment>::namespaced(self.admin.clone(), &self.namespace)
            .get_opt(name)
            .await
            .ok()??;
        d.spec?
            .template
            .metadata?
            .annotations?
            .get("mooring.dev/model-version")
            .cloned()
    }

    async fn cleanup(self) {
        let _ = Api::<Namespace>::all(self.admin.clone())
            .delete(&self.namespace, &DeleteParams::default())
            .await;
    }
}

/// The chart's ServiceAccount and RBAC for a namespaced install watching `namespace`,
/// rendered by helm and applied as they are.
async fn install_rbac(admin: &Client, namespace: &str) {
    let out = std::process::Command::new(helm())
        .args(["template", RELEASE])
        .arg(repo().join("charts/mooring"))
        .args(["--namespace", namespace, "--set"])
        .arg(format!("watchNamespace={namespace}"))
        .output()
        .expect("helm (run scripts/check-chart.sh once, or set HELM)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let apply = PatchParams::apply(APPLY_AS).force();
    for doc in serde_yaml::Deserializer::from_slice(&out.stdout) {
        let value = serde_yaml::Value::deserialize(doc).unwrap();
        let json = serde_json::to_value(&value).unwrap();
        let kind = json["kind"].as_str().unwrap_or_default().to_string();
        let name = json["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        macro_rules! put {
            ($k:ty, $api:expr) => {{
                let object: $k = serde_json::from_value(json.clone()).unwrap();
                $api.patch(&name, &apply, &Patch::Apply(&object))
                    .await
                    .unwrap_or_else(|e| panic!("{kind} {name}: {e}"));
            }};
        }
        match kind.as_str() {
            "ServiceAccount" => put!(
                ServiceAccount,
                Api::<ServiceAccount>::namespaced(admin.clone(), namespace)
            ),
            "Role" => put!(Role, Api::<Role>::namespaced(admin.clone(), namespace)),
            "RoleBinding" => put!(
                RoleBinding,
                Api::<RoleBinding>::namespaced(admin.clone(), namespace)
            ),
            "ClusterRole" => put!(ClusterRole, Api::<ClusterRole>::all(admin.clone())),
            "ClusterRoleBinding" => put!(
                ClusterRoleBinding,
                Api::<ClusterRoleBinding>::all(admin.clone())
            ),
            _ => {}
        }
    }
}

use serde::Deserialize as _;

fn condition_is(md: &ModelDeployment, type_: &str, status: &str, reason: &str) -> bool {
    md.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == status && c.reason == reason)
    })
}

/// Scenarios 1 and 2: children created with owner references, then an alias move rolls the
/// template to the new version.
#[tokio::test]
#[ignore = "needs a Kubernetes cluster (kubeconfig); run with -- --ignored"]
async fn alias_move_rolls_out_the_new_version() {
    let cluster = Cluster::new("rollout").await;
    let (stop, operator) = cluster.start_operator(None);
    cluster.apply(&cluster.iris("iris")).await;
    cluster
        .until("iris", "version 1 applied", |md| {
            md.status
                .as_ref()
                .is_some_and(|s| s.version.as_deref() == Some("1"))
        })
        .await;
    assert_eq!(cluster.template_version("iris").await.as_deref(), Some("1"));
    let service = Api::<Service>::namespaced(cluster.admin.clone(), &cluster.namespace)
        .get("iris")
        .await
        .expect("the Service");
    assert_eq!(
        service.metadata.owner_references.unwrap()[0].kind,
        "ModelDeployment"
    );

    cluster.set_alias("2");
    // resolveIntervalSeconds is 30 in the example; the wait allows for it.
    cluster
        .until("iris", "version 2 applied", |md| {
            md.status.as_ref().is_some_and(|s| {
                s.version.as_deref() == Some("2") && s.target_version.as_deref() == Some("2")
            })
        })
        .await;
    assert_eq!(cluster.template_version("iris").await.as_deref(), Some("2"));
    let _ = stop.send(true);
    assert_eq!(operator.await.unwrap(), Exit::Shutdown);
    cluster.cleanup().await;
}

/// Scenario 5: the API server's own 422 reaches the status; fixing the spec recovers.
#[tokio::test]
#[ignore = "needs a Kubernetes cluster (kubeconfig); run with -- --ignored"]
async fn a_rejected_apply_is_visible_and_a_fixed_spec_recovers() {
    let cluster = Cluster::new("rejected").await;
    let (stop, _operator) = cluster.start_operator(None);
    let mut md = cluster.iris("iris");
    let resources = md.spec.resources.as_mut().unwrap();
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    resources
        .requests
        .as_mut()
        .unwrap()
        .insert("cpu".into(), Quantity("2".into()));
    resources
        .limits
        .as_mut()
        .unwrap()
        .insert("cpu".into(), Quantity("1".into()));
    cluster.apply(&md).await;
    cluster
        .until("iris", "Ready=False ReconcileError", |md| {
            condition_is(md, "Ready", "False", "ReconcileError")
        })
        .await;
    md.spec
        .resources
        .as_mut()
        .unwrap()
        .requests
        .as_mut()
        .unwrap()
        .insert("cpu".into(), Quantity("100m".into()));
    cluster.apply(&md).await;
    cluster
        .until("iris", "applied after the fix", |md| {
            md.status
                .as_ref()
                .is_some_and(|s| s.observed_generation == md.metadata.generation)
                && !condition_is(md, "Ready", "False", "ReconcileError")
        })
        .await;
    let _ = stop.send(true);
    cluster.cleanup().await;
}

/// Scenarios 7 and 8: a foreign Deployment is not adopted; a deleted ModelDeployment's
/// children are garbage-collected by the cluster.
#[tokio::test]
#[ignore = "needs a Kubernetes cluster (kubeconfig); run with -- --ignored"]
async fn no_adoption_and_garbage_collection() {
    let cluster = Cluster::new("ownership").await;
    let deployments: Api<Deployment> = Api::namespaced(cluster.admin.clone(), &cluster.namespace);
    let foreign: Deployment = serde_yaml::from_str(
        "metadata: {name: taken}\nspec: {replicas: 0, selector: {matchLabels: {app: taken}}, template: {metadata: {labels: {app: taken}}, spec: {containers: [{name: web, image: nginx}]}}}",
    )
    .unwrap();
    deployments
        .patch(
            "taken",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(&foreign),
        )
        .await
        .unwrap();
    let (stop, _operator) = cluster.start_operator(None);
    cluster.apply(&cluster.iris("taken")).await;
    cluster
        .until("taken", "Ready=False NotOwned", |md| {
            condition_is(md, "Ready", "False", "NotOwned")
        })
        .await;
    let d = deployments.get("taken").await.unwrap();
    assert!(
        d.metadata.owner_references.is_none_or(|o| o.is_empty()),
        "not adopted"
    );

    cluster.apply(&cluster.iris("iris")).await;
    cluster
        .until("iris", "applied", |md| {
            md.status.as_ref().is_some_and(|s| s.version.is_some())
        })
        .await;
    cluster
        .mds()
        .delete("iris", &DeleteParams::background())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while deployments.get_opt("iris").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Deployment was not collected"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = stop.send(true);
    cluster.cleanup().await;
}

/// Scenario 6: of two candidates one leads; when it stops, it releases the Lease and the
/// other takes over.
#[tokio::test]
#[ignore = "needs a Kubernetes cluster (kubeconfig); run with -- --ignored"]
async fn one_leader_and_a_handover() {
    let cluster = Cluster::new("leader").await;
    let (stop_a, a) = cluster.start_operator(Some("candidate-a"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (stop_b, b) = cluster.start_operator(Some("candidate-b"));
    let leases: Api<Lease> = Api::namespaced(cluster.admin.clone(), &cluster.namespace);
    let holder = || async {
        leases
            .get_opt(RELEASE)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    assert_eq!(holder().await.as_deref(), Some("candidate-a"));
    let _ = stop_a.send(true);
    assert_eq!(a.await.unwrap(), Exit::Shutdown);
    let deadline = tokio::time::Instant::now() + WAIT;
    while holder().await.as_deref() != Some("candidate-b") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "candidate-b never took over"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    cluster.apply(&cluster.iris("iris")).await;
    cluster
        .until("iris", "reconciled by the new leader", |md| {
            md.status
                .as_ref()
                .is_some_and(|s| s.version.as_deref() == Some("1"))
        })
        .await;
    let _ = stop_b.send(true);
    assert_eq!(b.await.unwrap(), Exit::Shutdown);
    cluster.cleanup().await;
}
