//! The operator process: its controllers, behind leader election, and the health the probe
//! server reports. `main` wires it to a real client and signals; the simulated-cluster
//! scenarios run two of them side by side.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use tokio::sync::watch;

use crate::chat_service;
use crate::controller::{self, fetch::Connector};
use crate::drift_monitor;
use crate::leader::{self, LeaseLock};
use crate::metrics::Metrics;

/// Where this replica stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// Connecting to the API server.
    Starting = 0,
    /// Another replica leads; this one waits to take over.
    Standby = 1,
    /// This replica runs the controllers.
    Leading = 2,
    /// The controllers stopped (shutdown, lost Lease, or they ended on their own).
    Stopped = 3,
}

/// What the probe server reports: shared between the process and `/healthz`, `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    role: AtomicU8,
    api_reachable: AtomicBool,
}

impl Health {
    pub fn role(&self) -> Role {
        match self.role.load(Ordering::Relaxed) {
            1 => Role::Standby,
            2 => Role::Leading,
            3 => Role::Stopped,
            _ => Role::Starting,
        }
    }

    pub fn set_role(&self, role: Role) {
        self.role.store(role as u8, Ordering::Relaxed);
    }

    /// The API server answered (at start-up).
    pub fn set_api_reachable(&self) {
        self.api_reachable.store(true, Ordering::Relaxed);
    }

    /// Alive: starting, standing by, or leading with its controllers running. A replica
    /// whose controllers stopped is not (Kubernetes restarts it).
    pub fn alive(&self) -> bool {
        self.role() != Role::Stopped
    }

    /// Ready: the API server answered, and the replica leads or stands by correctly.
    pub fn ready(&self) -> bool {
        self.api_reachable.load(Ordering::Relaxed)
            && matches!(self.role(), Role::Standby | Role::Leading)
    }
}

/// Why [`operate`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop (SIGTERM): the Lease was released.
    Shutdown,
    /// The Lease was lost or could not be renewed in time: the controllers were stopped at
    /// once, and the process must exit non-zero so Kubernetes restarts it as a candidate.
    LostLeadership,
    /// The controllers ended by themselves (they should not).
    ControllersStopped,
}

/// The contexts of every controller the process runs.
#[derive(Clone)]
pub struct Controllers {
    pub model_deployments: Arc<controller::Context>,
    pub drift_monitors: Arc<drift_monitor::Context>,
}

/// The inference-server images for resources that name none.
#[derive(Clone, Debug)]
pub struct Images {
    /// For ModelDeployments and drift Jobs: the build without chat.
    pub model: String,
    /// For ChatServices: the build with chat.
    pub chat: String,
}

impl Controllers {
    pub fn new(
        client: kube::Client,
        connector: Arc<dyn Connector>,
        metrics: Metrics,
        images: Images,
    ) -> Self {
        Controllers {
            model_deployments: Arc::new(
                controller::Context::new(
                    client.clone(),
                    connector.clone(),
                    metrics.clone(),
                    images.model.clone(),
                )
                .with_chat_image(images.chat),
            ),
            drift_monitors: Arc::new(drift_monitor::Context::new(
                client,
                connector,
                metrics,
                images.model,
            )),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.model_deployments.metrics
    }
}

/// Run every controller until `stop` flips to `true`.
pub async fn run_controllers(
    controllers: Controllers,
    namespace: Option<String>,
    stop: watch::Receiver<bool>,
) {
    tokio::join!(
        controller::run(
            controllers.model_deployments.clone(),
            namespace.as_deref(),
            wait(stop.clone())
        ),
        // ChatServices share the ModelDeployment context: the registry clients, the clock.
        chat_service::run(
            controllers.model_deployments,
            namespace.as_deref(),
            wait(stop.clone())
        ),
        drift_monitor::run(controllers.drift_monitors, namespace.as_deref(), wait(stop)),
    );
}

/// Run the controllers, behind `election` when given, until `shutdown` flips to `true` or
/// leadership is lost.
pub async fn operate(
    controllers: Controllers,
    namespace: Option<String>,
    election: Option<LeaseLock>,
    health: Arc<Health>,
    shutdown: watch::Receiver<bool>,
) -> Exit {
    let metrics = controllers.metrics().clone();
    let Some(lock) = election else {
        health.set_role(Role::Leading);
        metrics.leader.set(1);
        let stopped_by_signal = {
            let shutdown = shutdown.clone();
            move || *shutdown.borrow()
        };
        run_controllers(controllers, namespace, shutdown).await;
        health.set_role(Role::Stopped);
        metrics.leader.set(0);
        return if stopped_by_signal() {
            Exit::Shutdown
        } else {
            Exit::ControllersStopped
        };
    };

    health.set_role(Role::Standby);
    metrics.leader.set(0);
    if !leader::acquire(&lock, shutdown.clone()).await {
        health.set_role(Role::Stopped);
        return Exit::Shutdown;
    }
    health.set_role(Role::Leading);
    metrics.leader.set(1);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut controllers = tokio::spawn(run_controllers(controllers, namespace, stop_rx));
    let exit = tokio::select! {
        lost = leader::hold(&lock, shutdown.clone()) => {
            if lost {
                // Stop reconciling at once: another replica may lead any moment now.
                controllers.abort();
                Exit::LostLeadership
            } else {
                // Shutdown: let in-flight reconciles finish, then hand the Lease over.
                let _ = stop_tx.send(true);
                let _ = (&mut controllers).await;
                if let Err(err) = lock.release().await {
                    tracing::warn!(error = %err, "could not release the lease");
                }
                Exit::Shutdown
            }
        }
        _ = &mut controllers => {
            tracing::error!("the controllers stopped by themselves");
            Exit::ControllersStopped
        }
    };
    health.set_role(Role::Stopped);
    metrics.leader.set(0);
    exit
}

/// Resolves when the watch flips to `true` (or its sender is gone).
pub async fn wait(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_when_leading_or_standing_by_alive_until_stopped() {
        let h = Health::default();
        assert!(h.alive() && !h.ready(), "starting: alive, not ready");
        h.set_role(Role::Standby);
        assert!(!h.ready(), "the API server has not answered yet");
        h.set_api_reachable();
        assert!(h.ready() && h.alive());
        h.set_role(Role::Leading);
        assert!(h.ready() && h.alive());
        h.set_role(Role::Stopped);
        assert!(!h.ready() && !h.alive());
    }
}
