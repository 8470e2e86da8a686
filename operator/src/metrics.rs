//! Prometheus metrics of the operator.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("registering metric: {0}")]
    Register(#[from] prometheus::Error),
}

/// The operator's metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Reconciles by controller and result (`ok`, `error`).
    pub reconciles: IntCounterVec,
    /// Failed reconciles (or invalid specs) by controller and reason.
    pub errors: IntCounterVec,
    /// Reconcile duration by controller.
    pub duration: HistogramVec,
    /// The version in force per ModelDeployment (numeric registry versions).
    pub resolved_version: GaugeVec,
    /// 1 while this replica holds the leader Lease (or runs without leader election).
    pub leader: prometheus::IntGauge,
    /// The model label of each ModelDeployment's `resolved_version` series, by (namespace, name),
    /// so series of renamed models and deleted ModelDeployments can be removed.
    exported: Arc<Mutex<HashMap<(String, String), String>>>,
    /// Finished drift checks by namespace, monitor and verdict.
    pub drift_checks: IntCounterVec,
    /// Share of drifted features in each monitor's last report.
    pub drift_share: GaugeVec,
    /// When each monitor's last check finished (Unix seconds).
    pub drift_last_check: GaugeVec,
    /// Actions on drift by namespace, monitor, action and result.
    pub drift_actions: IntCounterVec,
    /// The (namespace, monitor) pairs with drift series, so deleted monitors' go.
    monitors: Arc<Mutex<HashSet<(String, String)>>>,
}

/// Every verdict label value (a bounded set).
const VERDICTS: &[&str] = &["NoDrift", "Drift", "InsufficientData", "Failed"];
/// Every action and result label value.
const ACTIONS: &[&str] = &["Notify", "Rollback", "Promote"];
const RESULTS: &[&str] = &["Succeeded", "Requested", "Skipped", "Failed"];

impl Metrics {
    /// Counts one reconcile of `controller`: how long it took since `started`, and its
    /// outcome (`failed`: the failure's reason label).
    pub fn reconciled(&self, controller: &str, started: Instant, failed: Option<&str>) {
        self.duration
            .with_label_values(&[controller])
            .observe(started.elapsed().as_secs_f64());
        match failed {
            None => self.reconciles.with_label_values(&[controller, "ok"]).inc(),
            Some(reason) => {
                self.reconciles
                    .with_label_values(&[controller, "error"])
                    .inc();
                self.errors.with_label_values(&[controller, reason]).inc();
            }
        }
    }

    pub fn new() -> Result<Self> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "mooring_operator_reconciles_total",
                "Reconciles by controller and result",
            ),
            &["controller", "result"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "mooring_operator_reconcile_errors_total",
                "Reconcile errors and invalid specs by reason",
            ),
            &["controller", "reason"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "mooring_operator_reconcile_duration_seconds",
                "Reconcile duration",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0,
                120.0,
            ]),
            &["controller"],
        )?;
        let resolved_version = GaugeVec::new(
            Opts::new(
                "mooring_model_deployment_resolved_version",
                "The registry version in force per ModelDeployment",
            ),
            &["namespace", "name", "model"],
        )?;
        let drift_checks = IntCounterVec::new(
            Opts::new(
                "mooring_drift_checks_total",
                "Finished drift checks by verdict",
            ),
            &["namespace", "monitor", "verdict"],
        )?;
        let drift_share = GaugeVec::new(
            Opts::new(
                "mooring_drift_share",
                "Share of drifted features in the last drift report",
            ),
            &["namespace", "monitor"],
        )?;
        let drift_last_check = GaugeVec::new(
            Opts::new(
                "mooring_drift_last_check_timestamp_seconds",
                "When the last drift check finished",
            ),
            &["namespace", "monitor"],
        )?;
        let drift_actions = IntCounterVec::new(
            Opts::new(
                "mooring_drift_actions_total",
                "Actions on drift by action and result",
            ),
            &["namespace", "monitor", "action", "result"],
        )?;
        registry.register(Box::new(drift_checks.clone()))?;
        registry.register(Box::new(drift_share.clone()))?;
        registry.register(Box::new(drift_last_check.clone()))?;
        registry.register(Box::new(drift_actions.clone()))?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        let leader = prometheus::IntGauge::new(
            "mooring_operator_leader",
            "1 while this replica leads (holds the Lease), 0 while it stands by",
        )?;
        registry.register(Box::new(resolved_version.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Metrics {
            registry,
            reconciles,
            errors,
            duration,
            resolved_version,
            leader,
            exported: Arc::default(),
            drift_checks,
            drift_share,
            drift_last_check,
            drift_actions,
            monitors: Arc::default(),
        })
    }

    fn monitor_seen(&self, namespace: &str, monitor: &str) {
        self.monitors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((namespace.to_string(), monitor.to_string()));
    }

    /// Record a finished drift check.
    pub fn record_check(
        &self,
        namespace: &str,
        monitor: &str,
        verdict: &str,
        share: Option<f64>,
        finished_at: f64,
    ) {
        self.monitor_seen(namespace, monitor);
        self.drift_checks
            .with_label_values(&[namespace, monitor, verdict])
            .inc();
        if let Some(share) = share {
            self.drift_share
                .with_label_values(&[namespace, monitor])
                .set(share);
        }
        self.drift_last_check
            .with_label_values(&[namespace, monitor])
            .set(finished_at);
    }

    /// Record an action on drift.
    pub fn record_action(&self, namespace: &str, monitor: &str, action: &str, result: &str) {
        self.monitor_seen(namespace, monitor);
        self.drift_actions
            .with_label_values(&[namespace, monitor, action, result])
            .inc();
    }

    /// Remove every drift series of a monitor.
    pub fn forget_monitor(&self, namespace: &str, monitor: &str) {
        self.monitors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(namespace.to_string(), monitor.to_string()));
        self.remove_monitor_series(namespace, monitor);
    }

    fn remove_monitor_series(&self, namespace: &str, monitor: &str) {
        // Removing a series that was never set is an error we do not care about.
        for verdict in VERDICTS {
            let _ = self
                .drift_checks
                .remove_label_values(&[namespace, monitor, verdict]);
        }
        for action in ACTIONS {
            for result in RESULTS {
                let _ = self
                    .drift_actions
                    .remove_label_values(&[namespace, monitor, action, result]);
            }
        }
        let _ = self.drift_share.remove_label_values(&[namespace, monitor]);
        let _ = self
            .drift_last_check
            .remove_label_values(&[namespace, monitor]);
    }

    /// Remove the drift series of monitors for which `exists(namespace, name)` is false.
    pub fn forget_deleted_monitors(&self, exists: impl Fn(&str, &str) -> bool) {
        let mut monitors = self.monitors.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<_> = monitors
            .iter()
            .filter(|(ns, name)| !exists(ns, name))
            .cloned()
            .collect();
        for (ns, name) in gone {
            monitors.remove(&(ns.clone(), name.clone()));
            self.remove_monitor_series(&ns, &name);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        // Encoding our own, valid families into a String cannot fail.
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_default()
    }

    /// Record the version in force (non-numeric versions are not exported).
    pub fn set_version(&self, namespace: &str, name: &str, model: &str, version: &str) {
        let mut exported = self.exported.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_string(), name.to_string());
        if let Some(old) = exported.get(&key).filter(|old| *old != model) {
            // The spec now names another model: its series would stay frozen forever.
            let _ = self
                .resolved_version
                .remove_label_values(&[namespace, name, old]);
            exported.remove(&key);
        }
        if let Ok(v) = version.parse::<f64>() {
            self.resolved_version
                .with_label_values(&[namespace, name, model])
                .set(v);
            exported.insert(key, model.to_string());
        }
    }

    /// Remove the series of one ModelDeployment (it is being deleted).
    pub fn forget(&self, namespace: &str, name: &str) {
        self.forget_deleted(|ns, n| !(ns == namespace && n == name));
    }

    /// Remove the series of ModelDeployments for which `exists(namespace, name)` is false
    /// (deleted ones: without a finalizer, no reconcile sees the deletion).
    pub fn forget_deleted(&self, exists: impl Fn(&str, &str) -> bool) {
        let mut exported = self.exported.lock().unwrap_or_else(|e| e.into_inner());
        exported.retain(|(namespace, name), model| {
            let keep = exists(namespace, name);
            if !keep {
                let _ = self
                    .resolved_version
                    .remove_label_values(&[namespace, name, model]);
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_series_follow_model_changes_and_deletions() {
        let m = Metrics::new().unwrap();
        m.set_version("ml", "iris", "iris-classifier", "3");
        m.set_version("ml", "other", "wine", "1");
        m.set_version("ml", "iris", "iris-v2", "1");
        let text = m.render();
        assert!(!text.contains("model=\"iris-classifier\""), "{text}");
        assert!(
            text.contains("model=\"iris-v2\",name=\"iris\",namespace=\"ml\"} 1"),
            "{text}"
        );
        m.forget_deleted(|ns, name| (ns, name) == ("ml", "other"));
        let text = m.render();
        assert!(!text.contains("name=\"iris\""), "{text}");
        assert!(text.contains("model=\"wine\",name=\"other\""), "{text}");
    }

    #[test]
    fn drift_series_of_deleted_monitors_go() {
        let m = Metrics::new().unwrap();
        m.record_check("ml", "iris-drift", "Drift", Some(0.75), 1000.0);
        m.record_action("ml", "iris-drift", "Rollback", "Requested");
        m.record_check("ml", "other", "NoDrift", Some(0.0), 1000.0);
        let text = m.render();
        assert!(
            text.contains(r#"mooring_drift_checks_total{monitor="iris-drift",namespace="ml",verdict="Drift"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"mooring_drift_share{monitor="iris-drift",namespace="ml"} 0.75"#));
        assert!(text.contains(r#"mooring_drift_last_check_timestamp_seconds{monitor="iris-drift",namespace="ml"} 1000"#));
        assert!(text.contains(r#"mooring_drift_actions_total{action="Rollback",monitor="iris-drift",namespace="ml",result="Requested"} 1"#));
        m.forget_deleted_monitors(|_, name| name == "other");
        let text = m.render();
        assert!(!text.contains("iris-drift"), "{text}");
        assert!(text.contains(r#"monitor="other""#));
        m.forget_monitor("ml", "other");
        assert!(!m.render().contains(r#"monitor="other""#));
    }

    #[test]
    fn renders_all_families() {
        let m = Metrics::new().unwrap();
        m.reconciles
            .with_label_values(&["modeldeployment", "ok"])
            .inc();
        m.errors
            .with_label_values(&["modeldeployment", "RegistryUnreachable"])
            .inc();
        m.duration
            .with_label_values(&["modeldeployment"])
            .observe(0.01);
        m.set_version("ml", "iris", "iris-classifier", "3");
        let text = m.render();
        assert!(
            text.contains(
                "mooring_operator_reconciles_total{controller=\"modeldeployment\",result=\"ok\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("reason=\"RegistryUnreachable\""));
        assert!(text.contains("mooring_operator_reconcile_duration_seconds_bucket"));
        assert!(text.contains("mooring_model_deployment_resolved_version{model=\"iris-classifier\",name=\"iris\",namespace=\"ml\"} 3"));
    }
}
