//! `mooring-operator`: runs the ModelDeployment and DriftMonitor controllers behind a leader-election Lease, with a metrics
//! and probe server, until SIGTERM or Ctrl-C — or until it loses the Lease, when it exits
//! non-zero at once so Kubernetes restarts it as a fresh candidate.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use mooring_operator::config::Cli;
use mooring_operator::controller::fetch::RegistryConnector;
use mooring_operator::leader::LeaseLock;
use mooring_operator::metrics::Metrics;
use mooring_operator::probes::{AppState, app};
use mooring_operator::process::{self, Controllers, Exit, Health, Images};
use mooring_operator::telemetry;
use tokio::sync::watch;

/// How long the probe server may take to finish its answers once the process stops.
const PROBE_SERVER_DRAIN: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.log_format, &cli.log_level)?;
    let metrics = Metrics::new()?;
    let health = Arc::new(Health::default());

    // One shutdown signal for the leader loop and the controllers.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = shutdown_tx.send(true);
    });
    // The probe server stops after the controllers, whatever stopped them.
    let (server_stop_tx, server_stop_rx) = watch::channel(false);

    let listener = tokio::net::TcpListener::bind(cli.metrics_addr)
        .await
        .with_context(|| format!("--metrics-addr {}: cannot bind", cli.metrics_addr))?;
    let bound = listener.local_addr().unwrap_or(cli.metrics_addr);
    tracing::info!(addr = %bound, "metrics and probes listening");
    let server = axum::serve(
        listener,
        app(AppState {
            metrics: metrics.clone(),
            health: health.clone(),
        }),
    )
    .with_graceful_shutdown(process::wait(server_stop_rx));
    let server = tokio::spawn(async move { server.await });

    mooring_operator::install_crypto_provider();
    let client = Client::try_default()
        .await
        .context("no Kubernetes configuration (in-cluster or kubeconfig)")?;
    let version = client
        .apiserver_version()
        .await
        .context("the Kubernetes API server does not answer")?;
    tracing::info!(version = %version.git_version, "connected to the API server");
    health.set_api_reachable();

    let controllers = Controllers::new(
        client.clone(),
        Arc::new(RegistryConnector),
        metrics,
        Images {
            model: cli.default_image.clone(),
            chat: cli.default_chat_image.clone(),
        },
    );
    let election = cli.leader_election.then(|| {
        LeaseLock::new(
            Api::<Lease>::namespaced(client, &cli.lease_namespace),
            &cli.lease_name,
            cli.identity(),
            Duration::from_secs(cli.lease_duration_seconds),
        )
    });
    let exit = process::operate(
        controllers,
        cli.namespace.clone(),
        election,
        health,
        shutdown_rx,
    )
    .await;

    let _ = server_stop_tx.send(true);
    if tokio::time::timeout(PROBE_SERVER_DRAIN, server)
        .await
        .is_err()
    {
        tracing::warn!("the probe server did not stop in time");
    }
    match exit {
        Exit::Shutdown => Ok(()),
        // Exit non-zero so Kubernetes restarts the pod as a fresh candidate.
        Exit::LostLeadership => anyhow::bail!("lost leadership"),
        Exit::ControllersStopped => anyhow::bail!("the controllers stopped"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
