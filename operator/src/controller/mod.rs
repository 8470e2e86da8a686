//! The ModelDeployment controller: a pipeline of small steps, one module each.
//!
//! validate (pure) → fetch the MLflow credentials Secret and connect to the registry → resolve
//! the version in force (registry call, then a pure decision) → build the desired children
//! (pure) → apply them (server-side apply) and read them back → compute the status (pure) →
//! write it and publish the Events of its transitions.

pub mod apply;
pub mod children;
pub mod conditions;
pub mod events;
pub mod fetch;
pub mod resolve;
pub mod rollout;
pub mod status;
pub mod validate;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
pub(crate) mod mock_tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use mooring_crds::ModelDeployment;
use mooring_crds::model_deployment::{
    RETRY_ANNOTATION, ROLLBACK_REQUEST_ANNOTATION, RollbackRequest,
};

use crate::metrics::Metrics;
use fetch::Connector;
use resolve::Lookup;
use rollout::Rollout;

/// Controller name in metrics and Events.
pub const CONTROLLER: &str = "modeldeployment";
/// How long to wait before looking again after a Secret the spec names was missing: the
/// Secret is not watched, so this is the only way to notice it appear; slow enough not to
/// storm.
const MISSING_SECRET_RETRY: Duration = Duration::from_secs(300);
/// While a rollout is under way the Deployment's own updates wake the controller; this is a
/// safety net for missed ones.
const ROLLOUT_RECHECK: Duration = Duration::from_secs(15);
const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How often the version series of deleted ModelDeployments are removed from `/metrics`.
const METRICS_SWEEP: Duration = Duration::from_secs(30);

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a reconcile failed (transient: it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Apply(#[from] apply::Error),
    #[error(transparent)]
    Fetch(#[from] fetch::Error),
    /// The resource, kind and name (`ModelDeployment iris`), came without a namespace.
    #[error("{0} has no namespace")]
    NotNamespaced(String),
}

impl Error {
    /// Metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Apply(e) => e.reason(),
            Error::Fetch(e) => e.reason(),
            Error::NotNamespaced(_) => "NotNamespaced",
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub connector: Arc<dyn Connector>,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// Inference-server image for ModelDeployments that name none (the build without chat).
    pub default_image: String,
    /// Inference-server image for ChatServices that name none (the build with chat).
    pub default_chat_image: String,
    /// The current time (fixed in tests).
    pub clock: Arc<dyn Fn() -> Time + Send + Sync>,
    /// Consecutive transient failures per object, for backoff.
    failures: Backoff,
    /// One registry client per (registry, credentials), kept across reconciles: its HTTP
    /// connection pool with it.
    registries: Mutex<HashMap<RegistryKey, Arc<dyn mooring_registry::Registry>>>,
}

/// What tells two registry clients apart.
type RegistryKey = (String, Option<String>, Option<String>, Option<String>);

/// Per call to the registry (each attempt), and the operator's retries: a hung registry
/// holds a reconcile for at most `REGISTRY_DEADLINE`.
const REGISTRY_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const REGISTRY_RETRIES: u32 = 2;
pub const REGISTRY_DEADLINE: Duration = Duration::from_secs(40);

impl Context {
    pub fn new(
        client: Client,
        connector: Arc<dyn Connector>,
        metrics: Metrics,
        default_image: String,
    ) -> Self {
        Context {
            recorder: events::recorder(client.clone()),
            client,
            connector,
            metrics,
            default_chat_image: default_image.clone(),
            default_image,
            clock: Arc::new(|| Time(jiff::Timestamp::now())),
            failures: Backoff::default(),
            registries: Mutex::new(HashMap::new()),
        }
    }

    /// ChatServices that name no image get `image` (by default, the ModelDeployments' one).
    pub fn with_chat_image(mut self, image: String) -> Self {
        self.default_chat_image = image;
        self
    }

    /// The next backoff delay for `key`.
    pub(crate) fn backoff(&self, key: &str) -> Duration {
        self.failures.next(key)
    }

    pub(crate) fn reset_backoff(&self, key: &str) {
        self.failures.reset(key)
    }

    /// The registry client for `config`, made once per (registry, credentials).
    pub fn registry(
        &self,
        config: &mooring_registry::RegistryConfig,
    ) -> mooring_registry::Result<Arc<dyn mooring_registry::Registry>> {
        let key = (
            config.location.clone(),
            config.token.clone(),
            config.username.clone(),
            config.password.clone(),
        );
        let mut registries = self.registries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(registry) = registries.get(&key) {
            return Ok(registry.clone());
        }
        let mut config = config.clone();
        config.request_timeout = REGISTRY_REQUEST_TIMEOUT;
        config.max_retries = REGISTRY_RETRIES;
        let registry = self.connector.connect(&config)?;
        // Credentials rotate: keep a bounded number of clients.
        if registries.len() >= 64 {
            registries.clear();
        }
        registries.insert(key, registry.clone());
        Ok(registry)
    }
}

/// Consecutive transient failures per object, and the delay before the next try: doubling
/// from 5 s to 5 min (the same `backon` policy as the registry client and the chat backends).
/// One per controller context.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Count a failure of `key` and return how long to wait before its next try.
    pub fn next(&self, key: &str) -> Duration {
        use backon::BackoffBuilder;
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = (*n + 1).min(16);
        backon::ExponentialBuilder::default()
            .with_min_delay(BACKOFF_BASE)
            .with_max_delay(BACKOFF_MAX)
            .without_max_times()
            .build()
            .nth(*n as usize - 1)
            .unwrap_or(BACKOFF_MAX)
    }

    /// `key` succeeded: its next failure starts from the first delay again.
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// The requeue after a transient failure of `object`: `delay` (its next backoff), logged
/// with the error. Every controller's `error_policy`.
pub(crate) fn requeue_after(
    object: &impl ResourceExt,
    error: &dyn std::fmt::Display,
    delay: Duration,
) -> Action {
    tracing::warn!(name = %object.name_any(), namespace = ?object.namespace(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn object_key(md: &ModelDeployment) -> String {
    format!("{}/{}", md.namespace().unwrap_or_default(), md.name_any())
}

/// Reconcile one ModelDeployment, with metrics.
pub async fn reconcile(md: Arc<ModelDeployment>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_steps(&md, &ctx).await;
    let failed = result.as_ref().err().map(Error::reason);
    ctx.metrics.reconciled(CONTROLLER, started, failed);
    result
}

/// Transient failures: retry with backoff. (Invalid specs never get here: the reconcile
/// reports them in the status and waits for a change.)
pub fn error_policy(md: Arc<ModelDeployment>, error: &Error, ctx: Arc<Context>) -> Action {
    crate::controller::requeue_after(md.as_ref(), error, ctx.backoff(&object_key(&md)))
}

/// The resolve step of every controller that follows a registry alias: asks the registry
/// what `target` names now and, while a rollback pin is in force, about the pinned version,
/// then decides the version to run from those answers and `status`. A registry that gave no
/// usable answer counts in `errors` under `controller`.
pub(crate) async fn resolve_version(
    ctx: &Context,
    controller: &str,
    config: &mooring_registry::RegistryConfig,
    target: &validate::ModelTarget,
    status: &mooring_crds::ModelDeploymentStatus,
    pins: &resolve::PinContext,
) -> resolve::Decision {
    let registry = ctx.registry(config);
    let spec_lookup = match &registry {
        Ok(registry) => lookup(registry, &target.model_ref()).await,
        Err(err) if err.is_transient() => Lookup::Unreachable(err.to_string()),
        Err(err) => Lookup::Rejected {
            reason: err.reason(),
            message: err.to_string(),
        },
    };
    let alias_version = match &spec_lookup {
        Lookup::Found(v) if matches!(target, validate::ModelTarget::Alias { .. }) => {
            Some(v.version.as_str())
        }
        _ => None,
    };
    let pin_lookup = match (
        resolve::pin_in_force(target, alias_version, status, pins),
        &registry,
    ) {
        (Some(pin), Ok(registry)) => Some(
            lookup(
                registry,
                &mooring_registry::ModelRef::version(target.name(), &pin.version),
            )
            .await,
        ),
        _ => None,
    };
    let decision = resolve::decide(target, status, &spec_lookup, pin_lookup.as_ref(), pins);
    if let Err((reason, _)) = &decision.registry {
        ctx.metrics
            .errors
            .with_label_values(&[controller, reason])
            .inc();
    }
    decision
}

/// Ask the registry, within [`REGISTRY_DEADLINE`].
pub(crate) async fn lookup(
    registry: &Arc<dyn mooring_registry::Registry>,
    model: &mooring_registry::ModelRef,
) -> Lookup {
    tokio::time::timeout(REGISTRY_DEADLINE, resolve::lookup(registry, model))
        .await
        .unwrap_or_else(|_| {
            Lookup::Unreachable(format!("no answer within {}s", REGISTRY_DEADLINE.as_secs()))
        })
}

/// The pin context of `md`: its pod-template digest and the annotations that act on pins.
fn pin_context(md: &ModelDeployment, now: &Time) -> resolve::PinContext {
    let annotation = |key: &str| md.annotations().get(key).cloned();
    let rollback_request = annotation(ROLLBACK_REQUEST_ANNOTATION).and_then(|json| {
        serde_json::from_str::<RollbackRequest>(&json)
            .inspect_err(|err| {
                tracing::warn!(name = %md.name_any(), error = %err, "ignoring an unreadable rollback request");
            })
            .ok()
    });
    resolve::PinContext {
        template_hash: children::template_hash(&md.spec),
        retry: annotation(RETRY_ANNOTATION),
        rollback_request,
        now: Some(now.clone()),
    }
}

async fn reconcile_steps(md: &ModelDeployment, ctx: &Context) -> Result<Action> {
    let name = md.name_any();
    let namespace = md
        .namespace()
        .ok_or_else(|| Error::NotNamespaced(format!("ModelDeployment {name}")))?;
    // Being deleted: the garbage collector removes the children through their owner
    // references; applying them again would only race it.
    if md.metadata.deletion_timestamp.is_some() {
        ctx.metrics.forget(&namespace, &name);
        return Ok(Action::await_change());
    }
    let key = object_key(md);
    let client = ctx.client.clone();
    let mds: Api<ModelDeployment> = Api::namespaced(client.clone(), &namespace);
    let old = md.status.clone().unwrap_or_default();
    let now = (ctx.clock)();
    let endpoints = children::endpoints(&name, &namespace);
    let template_hash = children::template_hash(&md.spec);
    let base = |step| status::Inputs {
        generation: md.metadata.generation,
        now: now.clone(),
        auto_rollback: md.spec.rollout.auto_rollback,
        endpoints: endpoints.clone(),
        template_hash: template_hash.clone(),
        step,
    };

    // A spec the user must fix: counted, and reported as `Ready=False` with its reason.
    let invalid = |reason: &'static str, message: String| {
        ctx.metrics
            .errors
            .with_label_values(&[CONTROLLER, reason])
            .inc();
        status::next(&old, &base(status::Step::Invalid { reason, message }))
    };

    // validate
    let valid = match validate::validate_resource(md) {
        Ok(valid) => valid,
        Err(err) => {
            finish(md, ctx, &mds, &old, invalid(err.reason(), err.to_string())).await?;
            return Ok(Action::await_change());
        }
    };

    // fetch
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let config = match fetch::registry_config(&secrets, &namespace, &valid.registry).await {
        Ok(config) => config,
        Err(err) if err.is_user_error() => {
            finish(md, ctx, &mds, &old, invalid(err.reason(), err.to_string())).await?;
            return Ok(Action::requeue(MISSING_SECRET_RETRY));
        }
        Err(err) => return fail(md, ctx, &mds, &old, &base, err.into()).await,
    };

    // resolve
    let target = &valid.target;
    let pins = pin_context(md, &now);
    let decision = resolve_version(ctx, CONTROLLER, &config, target, &old, &pins).await;

    // build, apply, read back
    let observation = match &decision.version {
        // A registry outage changes nothing that runs.
        Some(version) if !decision.registry_unreachable => {
            let owner = md
                .controller_owner_ref(&())
                .ok_or_else(|| Error::NotNamespaced(format!("ModelDeployment {name}")))?;
            let apis = apply::ChildApis::namespaced(&client, &namespace);
            // Never adopt what another controller (or a person) made under the same name.
            if old.version.is_none() {
                let uid = md.metadata.uid.clone().unwrap_or_default();
                match apply::foreign_children(&apis, &name, &uid).await {
                    Ok(Some(message)) => {
                        finish(md, ctx, &mds, &old, invalid("NotOwned", message)).await?;
                        return Ok(Action::requeue(MISSING_SECRET_RETRY));
                    }
                    Ok(None) => {}
                    Err(err) => return fail(md, ctx, &mds, &old, &base, err.into()).await,
                }
            }
            let desired = children::build(md, owner, &valid, version, &ctx.default_image);
            // Children the spec no longer asks for are deleted only after a spec change.
            let spec_changed = old.observed_generation.is_some()
                && md.metadata.generation != old.observed_generation;
            let deployment = match apply::children(&apis, &desired, spec_changed).await {
                Ok(deployment) => deployment,
                Err(err) => return fail(md, ctx, &mds, &old, &base, err.into()).await,
            };
            let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            let observation =
                match apply::observe_rollout(&pods, &name, &deployment, &version.version).await {
                    Ok(observation) => observation,
                    Err(err) => return fail(md, ctx, &mds, &old, &base, err.into()).await,
                };
            ctx.metrics
                .set_version(&namespace, &name, target.name(), &version.version);
            Some(observation)
        }
        _ => None,
    };

    // status and events
    let inputs = base(status::Step::Resolved {
        target,
        decision: &decision,
        observation: observation.as_ref(),
    });
    let new = status::next(&old, &inputs);
    let rolling = matches!(
        observation.as_ref().map(|o| &o.rollout),
        Some(Rollout::Progressing)
    );
    let pin_changed = new.rollback_pin != old.rollback_pin;
    finish(md, ctx, &mds, &old, new).await?;

    let resolve_every = Duration::from_secs(md.spec.rollout.resolve_interval_seconds.max(5) as u64);
    if decision.registry_unreachable {
        return Ok(Action::requeue(ctx.backoff(&key).min(resolve_every)));
    }
    ctx.reset_backoff(&key);
    Ok(if pin_changed {
        // Apply the rollback (or the retry) at once.
        Action::requeue(Duration::from_millis(100))
    } else if rolling {
        Action::requeue(ROLLOUT_RECHECK.min(resolve_every))
    } else {
        Action::requeue(resolve_every)
    })
}

/// A failed call to the API server: the user sees it (`Ready=False`, reason
/// `ReconcileError`, the server's message, a Warning Event), and it is retried with backoff.
async fn fail<'a>(
    md: &ModelDeployment,
    ctx: &Context,
    mds: &Api<ModelDeployment>,
    old: &mooring_crds::ModelDeploymentStatus,
    base: &impl Fn(status::Step<'a>) -> status::Inputs<'a>,
    err: Error,
) -> Result<Action> {
    let new = status::next(
        old,
        &base(status::Step::Failed {
            message: err.to_string(),
        }),
    );
    if let Err(status_err) = finish(md, ctx, mds, old, new).await {
        tracing::warn!(error = %status_err, "could not report the failure in the status either");
    }
    Err(err)
}

/// Write the status if it changed and publish the Events of its transitions.
async fn finish(
    md: &ModelDeployment,
    ctx: &Context,
    mds: &Api<ModelDeployment>,
    old: &mooring_crds::ModelDeploymentStatus,
    new: mooring_crds::ModelDeploymentStatus,
) -> Result<()> {
    if &new == old {
        return Ok(());
    }
    apply::status(mds, &md.name_any(), &new).await?;
    let transitions = status::transitions(old, &new);
    events::publish(&ctx.recorder, md, &transitions).await;
    Ok(())
}

/// What a change of a ModelDeployment must wake the controller for: its spec (generation)
/// and the annotations that act on rollback pins. Its own status writes do not.
fn spec_and_annotations(md: &ModelDeployment) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    md.metadata.generation.hash(&mut h);
    let annotations = md.annotations();
    for key in [RETRY_ANNOTATION, ROLLBACK_REQUEST_ANNOTATION] {
        annotations.get(key).hash(&mut h);
    }
    md.metadata.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

/// What a change of an owned Deployment must wake the controller for: what the rollout
/// judgement reads (its generation, the replica counts, the conditions).
fn rollout_state(d: &Deployment) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    d.metadata.generation.hash(&mut h);
    if let Some(s) = &d.status {
        (
            s.observed_generation,
            s.replicas,
            s.ready_replicas,
            s.updated_replicas,
            s.available_replicas,
        )
            .hash(&mut h);
        for c in s.conditions.iter().flatten() {
            (&c.type_, &c.status, &c.reason).hash(&mut h);
        }
    }
    Some(h.finish())
}

/// The API of `K` in `namespace`, or in all namespaces.
pub fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Run the controller until `shutdown` resolves. `namespace` limits it to one namespace.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    use kube::runtime::{WatchStreamExt, reflector, utils::PredicateConfig};
    let client = ctx.client.clone();
    let mds: Api<ModelDeployment> = scoped(&client, namespace);
    let deployments: Api<Deployment> = scoped(&client, namespace);
    let services: Api<Service> = scoped(&client, namespace);
    // Only our children: watching every Deployment of the cluster would cost memory for nothing.
    let children =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=mooring-operator");
    let (store, writer) = reflector::store();
    // Status-only updates (ours, every reconcile) must not wake the controller again.
    let trigger = reflector::reflector(
        writer,
        watcher(mds, watcher::Config::default().any_semantic()),
    )
    .default_backoff()
    .applied_objects()
    .predicate_filter(spec_and_annotations, PredicateConfig::default());
    let owned_deployments = watcher(deployments, children.clone())
        .default_backoff()
        .applied_objects()
        .predicate_filter(rollout_state, PredicateConfig::default());
    let controller = Controller::for_stream(trigger, store.clone());
    let metrics = ctx.metrics.clone();
    let sweeper = tokio::spawn(async move {
        let mut every = tokio::time::interval(METRICS_SWEEP);
        loop {
            every.tick().await;
            // The store is empty until the first list: nothing is exported before it either.
            metrics.forget_deleted(|namespace, name| {
                store.get(&ObjectRef::new(name).within(namespace)).is_some()
            });
        }
    });
    controller
        .owns_stream(owned_deployments)
        .owns(services, children)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(name = %object.name, namespace = ?object.namespace, "reconciled"),
                Err(err) => tracing::debug!(error = %err, "reconcile error"),
            }
        })
        .await;
    sweeper.abort();
}
