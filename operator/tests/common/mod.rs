//! What the simulated-cluster scenarios share: a world of one simulated cluster and one real
//! local registry (in a temp dir, wrapped to count its calls and to cut it off), and
//! operators started in it through the same `process::operate` as `main`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Api;
use kube::api::{Patch, PatchParams};
use mooring_crds::ModelDeployment;
use mooring_kube_sim::{Sim, Verb};
use mooring_operator::controller::Context;
use mooring_operator::controller::fetch::Connector;
use mooring_operator::leader::LeaseLock;
use mooring_operator::metrics::Metrics;
use mooring_operator::process::{self, Controllers, Exit, Health};
use mooring_registry::{
    Error as RegistryError, FetchedModel, ModelRef, ModelVersion, RegisteredModel, Registry,
    RegistryConfig,
};
use tokio::sync::watch;

pub const NS: &str = "default";
pub const IMAGE: &str = "mooring/inference-server:0.1.0";
pub const CHAT_IMAGE: &str = "mooring/inference-server-chat:0.1.0";
/// How long `until` waits for a condition, in virtual time.
pub const PATIENCE: Duration = Duration::from_secs(1800);

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if kind.is_symlink() {
            // The bundled smollm2 GGUF (fetched by the setup script): link it, never copy
            // 100 MB per scenario; absent, the entry is left out.
            if let Ok(real) = std::fs::canonicalize(entry.path()) {
                std::os::unix::fs::symlink(real, target).unwrap();
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The bundled local registry, copied into a temp dir (versions 1, 2 and a copy of 2 as 3),
/// behind a connector that counts calls and can be cut off.
pub struct TestRegistry {
    pub dir: tempfile::TempDir,
    calls: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl TestRegistry {
    pub fn new(production: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo().join("models"), dir.path());
        let model = dir.path().join("iris-classifier");
        copy_dir(&model.join("2"), &model.join("3"));
        let registry = TestRegistry {
            dir,
            calls: Arc::default(),
            down: Arc::default(),
        };
        registry.set_alias("production", production);
        registry
    }

    pub fn path(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// Move an alias, as `mooring alias set` does on a local registry.
    pub fn set_alias(&self, alias: &str, version: &str) {
        let file = self.dir.path().join("iris-classifier/aliases.json");
        let mut aliases: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap_or("{}".into())).unwrap();
        aliases.insert(alias.into(), version.into());
        std::fs::write(&file, serde_json::to_string(&aliases).unwrap()).unwrap();
    }

    /// Registry calls (resolves) so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Cut the registry off (every call fails as unreachable) or restore it.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn connector(&self) -> Arc<dyn Connector> {
        Arc::new(CountingConnector {
            calls: self.calls.clone(),
            down: self.down.clone(),
        })
    }
}

struct CountingConnector {
    calls: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl Connector for CountingConnector {
    fn connect(&self, config: &RegistryConfig) -> mooring_registry::Result<Arc<dyn Registry>> {
        Ok(Arc::new(Counted {
            inner: mooring_registry::connect(config)?,
            calls: self.calls.clone(),
            down: self.down.clone(),
        }))
    }
}

/// The real registry, counted, and unreachable while `down`.
struct Counted {
    inner: Arc<dyn Registry>,
    calls: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl Counted {
    fn check(&self) -> mooring_registry::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(RegistryError::Unreachable(
                "connection refused (the scenario cut the registry off)".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Registry for Counted {
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn resolve(&self, model: &ModelRef) -> mooring_registry::Result<ModelVersion> {
        self.check()?;
        self.inner.resolve(model).await
    }
    async fn fetch(&self, v: &ModelVersion, dir: &Path) -> mooring_registry::Result<FetchedModel> {
        self.check()?;
        self.inner.fetch(v, dir).await
    }
    async fn list_models(&self) -> mooring_registry::Result<Vec<RegisteredModel>> {
        self.check()?;
        self.inner.list_models().await
    }
    async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> mooring_registry::Result<()> {
        self.check()?;
        self.inner.set_alias(name, alias, version).await
    }
    async fn delete_alias(&self, name: &str, alias: &str) -> mooring_registry::Result<()> {
        self.check()?;
        self.inner.delete_alias(name, alias).await
    }
    async fn register(&self, name: &str, dir: &Path) -> mooring_registry::Result<ModelVersion> {
        self.check()?;
        self.inner.register(name, dir).await
    }
}

/// One simulated cluster and one registry.
pub struct World {
    pub sim: Sim,
    pub registry: TestRegistry,
}

/// An operator process started by [`World::start_operator`].
pub struct Operator {
    pub metrics: Metrics,
    pub health: Arc<Health>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Exit>,
}

impl Operator {
    /// Reconciles of ModelDeployments so far (successful or not).
    pub fn reconciles(&self) -> u64 {
        ["ok", "error"]
            .iter()
            .map(|r| {
                self.metrics
                    .reconciles
                    .with_label_values(&["modeldeployment", r])
                    .get()
            })
            .sum()
    }

    pub fn metrics(&self) -> String {
        self.metrics.render()
    }

    pub fn is_leading(&self) -> bool {
        self.metrics.leader.get() == 1
    }

    /// Wait (bounded) for the process to end by itself.
    pub async fn exit(self) -> Exit {
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the operator did not exit")
            .expect("the operator panicked")
    }

    /// SIGTERM.
    pub async fn stop(self) -> Exit {
        let _ = self.shutdown.send(true);
        self.exit().await
    }
}

impl World {
    pub fn new(sim: Sim, production: &str) -> Self {
        mooring_operator::install_crypto_provider();
        World {
            sim,
            registry: TestRegistry::new(production),
        }
    }

    /// Start an operator as client `identity`, with leader election when `lease` is given.
    pub fn start_operator(&self, identity: &str, lease: Option<Duration>) -> Operator {
        let client = self.sim.client(identity);
        let metrics = Metrics::new().unwrap();
        let mut md = Context::new(
            client.clone(),
            self.registry.connector(),
            metrics.clone(),
            IMAGE.into(),
        )
        .with_chat_image(CHAT_IMAGE.into());
        let mut dm = mooring_operator::drift_monitor::Context::new(
            client.clone(),
            self.registry.connector(),
            metrics.clone(),
            IMAGE.into(),
        );
        let clock = self.sim.clone();
        md.clock = Arc::new(move || Time(clock.now()));
        let clock = self.sim.clone();
        dm.clock = Arc::new(move || Time(clock.now()));
        let controllers = Controllers {
            model_deployments: Arc::new(md),
            drift_monitors: Arc::new(dm),
        };
        let health = Arc::new(Health::default());
        health.set_api_reachable();
        let election = lease.map(|duration| {
            LeaseLock::new(
                Api::<Lease>::namespaced(client, "mooring-system"),
                "mooring-operator",
                identity,
                duration,
            )
        });
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(process::operate(
            controllers,
            Some(NS.to_string()),
            election,
            health.clone(),
            rx,
        ));
        Operator {
            metrics,
            health,
            shutdown,
            task,
        }
    }

    /// The iris example, pointed at this world's registry.
    pub fn iris(&self) -> ModelDeployment {
        let mut md: ModelDeployment = serde_yaml::from_str(
            &std::fs::read_to_string(repo().join("examples/iris-modeldeployment.yaml")).unwrap(),
        )
        .unwrap();
        md.metadata.namespace = Some(NS.into());
        md.spec.registry.local.as_mut().unwrap().path = self.registry.path();
        md
    }

    /// `kubectl apply --server-side` of `md`.
    pub fn apply_md(&self, md: &ModelDeployment) {
        self.sim.put_as("kubectl", md);
    }

    pub fn user_api(&self) -> Api<ModelDeployment> {
        self.user_api_as("kubectl")
    }

    pub fn user_api_as(&self, identity: &str) -> Api<ModelDeployment> {
        Api::namespaced(self.sim.client(identity), NS)
    }

    /// `kubectl patch md iris --type merge -p …`.
    pub async fn patch_md(&self, patch: serde_json::Value) {
        self.user_api()
            .patch("iris", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("the user's patch");
    }

    pub fn md(&self) -> ModelDeployment {
        self.sim
            .get::<ModelDeployment>(NS, "iris")
            .expect("the ModelDeployment")
    }

    /// Wait (virtual time, polled every second) until `f` holds for the ModelDeployment.
    pub async fn until(&self, what: &str, f: impl Fn(&ModelDeployment) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(md) = self.sim.get::<ModelDeployment>(NS, "iris")
                && f(&md)
            {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "never: {what}\nlast status: {:#?}\nevents: {:#?}",
                    self.sim
                        .get::<ModelDeployment>(NS, "iris")
                        .and_then(|m| m.status),
                    self.events()
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The Events about the ModelDeployment, oldest first: (type, reason, note).
    pub fn events(&self) -> Vec<(String, String, String)> {
        let mut events: Vec<Event> = self
            .sim
            .list::<Event>(Some(NS))
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("ModelDeployment")
            })
            .collect();
        events.sort_by_key(|e| {
            e.metadata
                .resource_version
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok())
        });
        events
            .into_iter()
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Writes by any operator (clients named `op-…`).
    pub fn operator_writes(&self) -> usize {
        self.sim
            .count(|r| r.client.starts_with("op-") && r.is_write())
    }

    /// Server-side applies of the Deployment by any operator.
    pub fn operator_applies_of_deployment(&self) -> usize {
        self.sim.count(|r| {
            r.client.starts_with("op-") && r.verb == Verb::Apply && r.resource == "deployments"
        })
    }
}

pub fn condition<'a>(md: &'a ModelDeployment, type_: &str) -> Option<&'a Condition> {
    md.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Ready on `version`: the status says so and the Deployment runs it on every replica.
pub fn ready_on(md: &ModelDeployment, version: &str) -> bool {
    md.status.as_ref().is_some_and(|s| {
        s.version.as_deref() == Some(version) && s.target_version.as_deref() == Some(version)
    }) && condition(md, "Ready").is_some_and(|c| c.status == "True")
}

/// The version the Deployment's pod template runs.
pub fn template_version(sim: &Sim) -> Option<String> {
    sim.get::<Deployment>(NS, "iris")?
        .spec?
        .template
        .metadata?
        .annotations?
        .get("mooring.dev/model-version")
        .cloned()
}

pub fn pod_version(pod: &Pod) -> Option<String> {
    pod.metadata
        .annotations
        .as_ref()?
        .get("mooring.dev/model-version")
        .cloned()
}
