//! The DriftMonitor controller: a pipeline of small steps, one module each.
//!
//! validate the spec (pure) → fetch the target ModelDeployment and check it (pure) → settle
//! an earlier rollback request → collect the finished Job's report (pure) → decide the action
//! with its guards (pure) and carry it out (`execute`) → schedule the next run (pure) and
//! start its Job (built pure) → prune old Jobs → write the status and publish the Events of
//! its transitions. Requeued exactly at the next run time; Job and target changes wake it.

pub mod act;
pub mod apply;
pub mod collect;
mod execute;
pub mod job;
pub mod schedule;
pub mod status;
pub mod validate;
pub mod webhook;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod mock_tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use mooring_crds::drift_monitor::DriftMonitorStatus;
use mooring_crds::drift_report::DriftVerdict;
use mooring_crds::{DriftMonitor, ModelDeployment};

use crate::controller::events;
use crate::controller::fetch::{self, Connector};
use crate::metrics::Metrics;
use act::Plan;
use collect::Collected;

/// Controller name in metrics and Events.
pub const CONTROLLER: &str = "driftmonitor";
/// While a Job runs, its pod is looked at this often (pods are not watched: a pod whose
/// image cannot be pulled changes no Job field).
const RUNNING_RECHECK: Duration = Duration::from_secs(30);
/// How often the drift series of deleted monitors are removed from `/metrics`.
const METRICS_SWEEP: Duration = Duration::from_secs(30);

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a reconcile failed (transient: retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Apply(#[from] apply::Error),
    #[error(transparent)]
    Fetch(#[from] fetch::Error),
    #[error("reading ModelDeployment {name}: {source}")]
    Target {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("DriftMonitor {0} has no namespace")]
    NotNamespaced(String),
}

impl Error {
    /// Metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Apply(e) => e.reason(),
            Error::Fetch(e) => e.reason(),
            Error::Target { .. } => "TargetReadFailed",
            Error::NotNamespaced(_) => "NotNamespaced",
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    /// Opens the target's registry for `Promote` (with the credentials of its Secret).
    pub connector: Arc<dyn Connector>,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// Inference-server image when neither the monitor nor its target names one.
    pub default_image: String,
    /// The current time (fixed or advanced by tests).
    pub clock: Arc<dyn Fn() -> Time + Send + Sync>,
    /// For webhooks.
    pub http: reqwest::Client,
    failures: crate::controller::Backoff,
}

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
            default_image,
            clock: Arc::new(|| Time(jiff::Timestamp::now())),
            http: reqwest::Client::new(),
            failures: Default::default(),
        }
    }

    fn backoff(&self, key: &str) -> Duration {
        self.failures.next(key)
    }

    fn reset_backoff(&self, key: &str) {
        self.failures.reset(key)
    }
}

fn object_key(dm: &DriftMonitor) -> String {
    format!("{}/{}", dm.namespace().unwrap_or_default(), dm.name_any())
}

/// Reconcile one DriftMonitor, with metrics.
pub async fn reconcile(dm: Arc<DriftMonitor>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_steps(&dm, &ctx).await;
    if result.is_ok() {
        ctx.reset_backoff(&object_key(&dm));
    }
    let failed = result.as_ref().err().map(Error::reason);
    ctx.metrics.reconciled(CONTROLLER, started, failed);
    result
}

/// Transient failures: retry with backoff. (Invalid specs never get here: the reconcile
/// reports them in the status and waits for a change.)
pub fn error_policy(dm: Arc<DriftMonitor>, error: &Error, ctx: Arc<Context>) -> Action {
    crate::controller::requeue_after(dm.as_ref(), error, ctx.backoff(&object_key(&dm)))
}

/// The APIs of one namespace.
pub(crate) struct Apis {
    dms: Api<DriftMonitor>,
    mds: Api<ModelDeployment>,
    jobs: Api<Job>,
    pods: Api<Pod>,
    secrets: Api<Secret>,
}

async fn reconcile_steps(dm: &DriftMonitor, ctx: &Context) -> Result<Action> {
    let name = dm.name_any();
    let namespace = dm
        .namespace()
        .ok_or_else(|| Error::NotNamespaced(name.clone()))?;
    if dm.metadata.deletion_timestamp.is_some() {
        // The garbage collector removes the Jobs through their owner references.
        ctx.metrics.forget_monitor(&namespace, &name);
        return Ok(Action::await_change());
    }
    let client = ctx.client.clone();
    let apis = Apis {
        dms: Api::namespaced(client.clone(), &namespace),
        mds: Api::namespaced(client.clone(), &namespace),
        jobs: Api::namespaced(client.clone(), &namespace),
        pods: Api::namespaced(client.clone(), &namespace),
        secrets: Api::namespaced(client, &namespace),
    };
    let now = (ctx.clock)();
    let generation = dm.metadata.generation;
    let old = dm.status.clone().unwrap_or_default();
    let mut new = old.clone();

    let invalid = |new: &mut DriftMonitorStatus, reason: &'static str, message: String| {
        ctx.metrics
            .errors
            .with_label_values(&[CONTROLLER, reason])
            .inc();
        status::not_ready(new, reason, &message, generation, &now);
    };

    // validate
    let valid = match validate::validate(&dm.spec) {
        Ok(valid) => valid,
        Err(err) => {
            invalid(&mut new, err.reason(), err.to_string());
            finish(dm, ctx, &apis.dms, &old, &new).await?;
            return Ok(Action::await_change());
        }
    };

    // fetch the target; a request of ours on it is settled first (even if it is now unfit)
    let md = apis
        .mds
        .get_opt(&valid.target)
        .await
        .map_err(|source| Error::Target {
            name: valid.target.clone(),
            source,
        })?;
    if let Some(md) = &md {
        execute::settle_request(md, &namespace, &name, &apis, &mut new).await?;
    }
    let target = match validate::target(&valid.target, md.as_ref()) {
        Ok(target) => target,
        Err(err) => {
            // Woken again by the ModelDeployment watch when the target changes.
            invalid(&mut new, err.reason(), err.to_string());
            finish(dm, ctx, &apis.dms, &old, &new).await?;
            return Ok(Action::await_change());
        }
    };

    // collect the last run, decide and act
    let jobs = apply::jobs_of(&apis.jobs, dm).await?;
    let mut stuck = None;
    if let Some(run) = new.last_run.clone()
        && run.outcome.is_none()
    {
        let collected = match jobs
            .iter()
            .find(|j| j.metadata.name.as_deref() == Some(run.job_name.as_str()))
        {
            None => Some(Collected {
                verdict: DriftVerdict::Failed,
                report: None,
                reason: Some(format!(
                    "Job {} was deleted before it finished",
                    run.job_name
                )),
                completion_time: None,
                stuck: false,
            }),
            Some(job) => {
                let pods = apply::pods_of(&apis.pods, &run.job_name).await?;
                collect::collect(job, &pods)
            }
        };
        if let Some(collected) = collected {
            if collected.stuck {
                stuck = Some(run.job_name.clone());
            }
            let plan = act::decide(&act::Inputs {
                valid: &valid,
                target: &target,
                verdict: collected.verdict,
                report: collected.report.as_ref(),
                consecutive_before: new.consecutive_drifts,
                last_action: status::last_action_time(&new),
                now: now.0,
            });
            status::finished(&mut new, &run.job_name, &collected, &plan, generation, &now);
            let finished_at = collected.completion_time.unwrap_or(now.0);
            ctx.metrics.record_check(
                &namespace,
                &name,
                &format!("{:?}", collected.verdict),
                collected.report.as_ref().map(|r| r.drift_share),
                finished_at.as_millisecond() as f64 / 1000.0,
            );
            if let Plan::Act(action) = &plan {
                execute::carry_out(
                    action,
                    &collected,
                    &run.job_name,
                    dm,
                    &valid,
                    &target,
                    ctx,
                    &apis,
                    &mut new,
                )
                .await?;
            }
        }
    }
    if let Some(job_name) = &stuck {
        apply::delete_job(&apis.jobs, job_name).await?;
    }

    // schedule, start
    let running = jobs
        .iter()
        .any(|j| collect::is_running(j) && j.metadata.name.as_deref() != stuck.as_deref());
    let decision = schedule::decide(
        &valid.every,
        new.last_schedule_time.as_ref().map(|t| t.0),
        now.0,
        running,
        dm.spec.suspend,
    );
    let mut started = false;
    if let Some(at) = decision.start {
        let owner = dm
            .controller_owner_ref(&())
            .ok_or_else(|| Error::NotNamespaced(name.clone()))?;
        let desired = job::build(&job::Inputs {
            monitor: dm,
            owner,
            valid: &valid,
            target: &target,
            scheduled: at,
            default_image: &ctx.default_image,
        });
        apply::job(&apis.jobs, &desired).await?;
        let job_name = desired.metadata.name.clone().unwrap_or_default();
        status::started(&mut new, &job_name, &target.version, at, &now);
        started = true;
    }

    // prune
    for job_name in prunable(&jobs, &new, valid.keep_succeeded, valid.keep_failed) {
        if Some(&job_name) != stuck.as_ref() {
            apply::delete_job(&apis.jobs, &job_name).await?;
        }
    }

    status::ready(
        &mut new,
        decision.next_run,
        dm.spec.suspend,
        generation,
        &now,
    );
    finish(dm, ctx, &apis.dms, &old, &new).await?;

    if started || running {
        // The Job's own changes wake the controller; this is for its pod.
        return Ok(Action::requeue(RUNNING_RECHECK));
    }
    Ok(match decision.next_run {
        Some(next) => {
            let wait = (next.as_millisecond() - now.0.as_millisecond()).max(1000);
            Action::requeue(Duration::from_millis(wait as u64))
        }
        None => Action::await_change(),
    })
}

/// The finished Jobs beyond the history limits, oldest first (the Job of the latest run is
/// never pruned before its report is collected).
fn prunable(
    jobs: &[Job],
    status: &DriftMonitorStatus,
    keep_succeeded: usize,
    keep_failed: usize,
) -> Vec<String> {
    let uncollected = status
        .last_run
        .as_ref()
        .filter(|r| r.outcome.is_none())
        .map(|r| r.job_name.as_str());
    let mut finished: Vec<(&Job, bool)> = jobs
        .iter()
        .filter(|j| !collect::is_running(j) && j.metadata.name.as_deref() != uncollected)
        .map(|j| {
            let failed = j
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Failed" && c.status == "True"));
            (j, failed)
        })
        .collect();
    // Newest first: Job names end in their scheduled time.
    finished.sort_by_key(|(j, _)| {
        std::cmp::Reverse(
            j.metadata
                .name
                .as_deref()
                .and_then(|n| n.rsplit('-').next())
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(0),
        )
    });
    let mut out = Vec::new();
    let (mut succeeded, mut failed) = (0, 0);
    for (j, is_failed) in finished {
        let (count, keep) = if is_failed {
            (&mut failed, keep_failed)
        } else {
            (&mut succeeded, keep_succeeded)
        };
        *count += 1;
        if *count > keep {
            out.push(j.metadata.name.clone().unwrap_or_default());
        }
    }
    out.reverse();
    out
}

/// Write the status if it changed and publish the Events of its transitions.
async fn finish(
    dm: &DriftMonitor,
    ctx: &Context,
    dms: &Api<DriftMonitor>,
    old: &DriftMonitorStatus,
    new: &DriftMonitorStatus,
) -> Result<()> {
    if new == old {
        return Ok(());
    }
    apply::status(dms, &dm.name_any(), new).await?;
    let transitions = status::transitions(old, new);
    events::publish(&ctx.recorder, dm, &transitions).await;
    Ok(())
}

/// Run the controller until `shutdown` resolves. `namespace` limits it to one namespace.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let (dms, jobs, mds) = match namespace {
        Some(ns) => (
            Api::<DriftMonitor>::namespaced(client.clone(), ns),
            Api::<Job>::namespaced(client.clone(), ns),
            Api::<ModelDeployment>::namespaced(client, ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client),
        ),
    };
    let ours = watcher::Config::default().labels(
        "app.kubernetes.io/managed-by=mooring-operator,app.kubernetes.io/component=drift-check",
    );
    let controller = Controller::new(dms, watcher::Config::default().any_semantic());
    let store = controller.store();
    let metrics = ctx.metrics.clone();
    let sweep_store = store.clone();
    let sweeper = tokio::spawn(async move {
        let mut every = tokio::time::interval(METRICS_SWEEP);
        loop {
            every.tick().await;
            metrics.forget_deleted_monitors(|namespace, name| {
                sweep_store
                    .get(&ObjectRef::new(name).within(namespace))
                    .is_some()
            });
        }
    });
    controller
        .owns(jobs, ours)
        // A change of a target (its version, its annotation's acknowledgement, its
        // prediction log) wakes the monitors that watch it.
        .watches(mds, watcher::Config::default(), move |md: ModelDeployment| {
            let namespace = md.namespace();
            let name = md.name_any();
            store
                .state()
                .into_iter()
                .filter(|dm| dm.namespace() == namespace && dm.spec.target.model_deployment == name)
                .map(|dm| ObjectRef::from_obj(&*dm))
                .collect::<Vec<_>>()
        })
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
