//! `mooring-operator`: runs the ModelDeployment and DriftMonitor controllers, behind one
//! leader-election Lease, with a metrics and probe server, until SIGTERM or Ctrl-C.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use mooring_operator::config::Cli;
use mooring_operator::controller::{self, Context, fetch::RegistryConnector};
use mooring_operator::drift_monitor;
use mooring_operator::http::{AppState, app};
use mooring_operator::leader::{self, LeaseLock};
use mooring_operator::metrics::Metrics;
use mooring_operator::telemetry;
use tokio::sync::watch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.log_format, &cli.log_level)?;
    let metrics = Metrics::new()?;
    let ready = Arc::new(AtomicBool::new(false));

    // One shutdown signal for the probe server, the leader loop and the controller.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = shutdown_tx.send(true);
    });

    let listener = tokio::net::TcpListener::bind(cli.metrics_addr)
        .await
        .with_context(|| format!("--metrics-addr {}: cannot bind", cli.metrics_addr))?;
    let bound = listener.local_addr().unwrap_or(cli.metrics_addr);
    tracing::info!(addr = %bound, "metrics and probes listening");
    let server = axum::serve(
        listener,
        app(AppState {
            metrics: metrics.clone(),
            ready: ready.clone(),
        }),
    )
    .with_graceful_shutdown(wait(shutdown_rx.clone()));
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
    ready.store(true, Ordering::Relaxed);

    let drift_ctx = Arc::new(drift_monitor::Context::new(
        client.clone(),
        Arc::new(RegistryConnector),
        metrics.clone(),
        cli.default_image.clone(),
    ));
    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(RegistryConnector),
        metrics,
        cli.default_image.clone(),
    ));
    let lost_leadership = if cli.leader_election {
        let lock = LeaseLock::new(
            Api::<Lease>::namespaced(client, &cli.lease_namespace),
            &cli.lease_name,
            cli.identity(),
            Duration::from_secs(cli.lease_duration_seconds),
        );
        if !leader::acquire(&lock, shutdown_rx.clone()).await {
            return Ok(());
        }
        // The controller stops when the process shuts down or leadership is lost.
        let (stop_tx, stop_rx) = watch::channel(false);
        let controller = tokio::spawn({
            let namespace = cli.namespace.clone();
            async move {
                tokio::join!(
                    controller::run(ctx, namespace.as_deref(), wait(stop_rx.clone())),
                    drift_monitor::run(drift_ctx, namespace.as_deref(), wait(stop_rx)),
                )
            }
        });
        let lost = leader::hold(&lock, shutdown_rx.clone()).await;
        let _ = stop_tx.send(true);
        let _ = controller.await;
        if !lost && let Err(err) = lock.release().await {
            tracing::warn!(error = %err, "could not release the lease");
        }
        lost
    } else {
        tokio::join!(
            controller::run(ctx, cli.namespace.as_deref(), wait(shutdown_rx.clone())),
            drift_monitor::run(
                drift_ctx,
                cli.namespace.as_deref(),
                wait(shutdown_rx.clone())
            ),
        );
        false
    };
    let _ = server.await;
    if lost_leadership {
        // Exit non-zero so Kubernetes restarts the pod as a fresh candidate.
        anyhow::bail!("lost leadership");
    }
    Ok(())
}

/// Resolves when the watch flips to `true` (or its sender is gone).
async fn wait(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
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
