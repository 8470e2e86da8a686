//! The Mooring operator: the ModelDeployment, DriftMonitor and ChatService controllers, leader
//! election, metrics and probes.
#![forbid(unsafe_code)]

pub mod chat_service;
pub mod config;
pub mod controller;
pub mod drift_monitor;
pub mod leader;
pub mod metrics;
pub mod pod;
pub mod probes;
pub mod process;
pub mod telemetry;

#[cfg(test)]
pub(crate) mod mock_api;

/// Install aws-lc-rs as the process's TLS crypto provider (kube and reqwest both use it).
/// Needed when a workspace-wide build also enables rustls' `ring`, which leaves rustls unable
/// to choose; harmless otherwise. Call before creating a Kubernetes client.
pub fn install_crypto_provider() {
    // Err means a provider is installed already: fine.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
