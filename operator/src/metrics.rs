//! Prometheus metrics of the operator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
}

impl Metrics {
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
        })
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
