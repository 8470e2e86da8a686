//! `serve`: load models from the registry, run the REST and gRPC servers, stop both on one
//! shutdown signal after draining in-flight requests.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use axum::serve::ListenerExt;
use mooring_registry::{ModelRef, Registry};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::RoutesBuilder;

use crate::backend::BatchConfig;
use crate::config::{ModelSource, ServeArgs};
use crate::grpc::InferenceService;
use crate::infer::{InferenceObserver, LoadedModel, ServerState};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Registry(#[from] mooring_registry::Error),
    #[error("cannot load model {model}")]
    Load {
        model: String,
        source: crate::error::ServerError,
    },
    #[error("--registry is required to serve models (a directory or an MLflow URL)")]
    NoRegistry,
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{server} server failed: {message}")]
    Server {
        server: &'static str,
        message: String,
    },
}

/// Routes other parts of the process add to the servers (chat, for instance).
#[derive(Default)]
pub struct Extras {
    /// Merged into the REST router (must not reuse its paths).
    pub http: Option<axum::Router>,
    /// Services served beside `inference.GRPCInferenceService`.
    pub grpc: RoutesBuilder,
    /// Sees every completed inference (the prediction logger).
    pub observer: Option<Arc<dyn InferenceObserver>>,
    /// A Prometheus registry shared with other components; the server's metrics join it
    /// and `/metrics` renders all of it.
    pub metrics_registry: Option<prometheus::Registry>,
    /// Asked by `/readyz` besides the models (chat's backend and session store).
    pub probe: Option<Arc<dyn crate::infer::ReadinessProbe>>,
    /// What else is served, for the start-up line (e.g. `chat (local backend, model smollm2)`).
    pub served: Vec<String>,
}

/// Opens the registry named on the command line.
pub fn open_registry(source: &ModelSource) -> Result<Arc<dyn Registry>, ServeError> {
    // clap makes `--registry` required with any `--model`; this guards other callers.
    let location = source.registry.clone().ok_or(ServeError::NoRegistry)?;
    Ok(mooring_registry::connect(
        &source.credentials.config(location),
    )?)
}

/// Resolves, fetches (digest-verified) and loads one model.
pub async fn load_model(
    registry: &dyn Registry,
    reference: &str,
    cache_dir: &Path,
    batching: &BatchConfig,
    metrics: &Metrics,
) -> Result<LoadedModel, ServeError> {
    let started = Instant::now();
    let model_ref: ModelRef = reference.parse()?;
    let version = registry.resolve(&model_ref).await?;
    let fetched = registry.fetch(&version, cache_dir).await?;
    let (config, m) = (batching.clone(), metrics.clone());
    let loaded = tokio::task::spawn_blocking(move || LoadedModel::load_onnx(&fetched, &config, &m))
        .await
        .map_err(|e| ServeError::Load {
            model: reference.into(),
            source: crate::error::ServerError::Execution(e.to_string()),
        })?
        .map_err(|source| ServeError::Load {
            model: reference.into(),
            source,
        })?;
    let took = started.elapsed();
    metrics
        .model_load_seconds
        .with_label_values(&[&loaded.name, &loaded.version])
        .set(took.as_secs_f64());
    tracing::info!(model = %loaded.name, version = %loaded.version, digest = %loaded.digest, seconds = took.as_secs_f64(), "model loaded");
    Ok(loaded)
}

/// Loads every model of `args` into a server state.
pub async fn load_state(args: &ServeArgs) -> Result<ServerState, ServeError> {
    load_state_with(args, Metrics::new()).await
}

/// [`load_state`] with metrics the caller created (e.g. in a shared registry).
pub async fn load_state_with(
    args: &ServeArgs,
    metrics: Metrics,
) -> Result<ServerState, ServeError> {
    let mut models = Vec::new();
    if args.models.is_empty() {
        // Chat-only mode: no registry needed.
        return Ok(ServerState::new(models, metrics, args.max_body_bytes));
    }
    let registry = open_registry(&args.source)?;
    let batching = args.batching.config();
    for reference in &args.models {
        models.push(
            load_model(
                registry.as_ref(),
                reference,
                &args.source.cache_dir,
                &batching,
                &metrics,
            )
            .await?,
        );
    }
    Ok(ServerState::new(models, metrics, args.max_body_bytes))
}

/// Binds both listeners (port 0 picks a free port).
pub async fn bind(
    host: &str,
    http_port: u16,
    grpc_port: u16,
) -> Result<(TcpListener, TcpListener), ServeError> {
    let listen = |port: u16| {
        let addr = format!("{host}:{port}");
        async move {
            TcpListener::bind(&addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })
        }
    };
    Ok((listen(http_port).await?, listen(grpc_port).await?))
}

/// Serves until `shutdown` completes, then stops accepting, drains in-flight requests on
/// both servers and returns.
pub async fn run(
    state: Arc<ServerState>,
    http: TcpListener,
    grpc: TcpListener,
    extras: Extras,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let signal_state = state.clone();
    tokio::spawn(async move {
        shutdown.await;
        // Probes fail first so load balancers stop sending while requests drain.
        signal_state.set_ready(false);
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let mut router = crate::http::app(state.clone());
    if let Some(extra) = extras.http {
        router = router.merge(extra);
    }
    // Small answers must leave at once: with Nagle's algorithm a response written in several
    // pieces (HTTP/2 headers, data and trailers) waits for the peer's delayed ACK (~40 ms).
    let http = http.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    let http_server = axum::serve(http, router).with_graceful_shutdown(stopped(stop_rx.clone()));

    let mut routes = extras.grpc;
    routes.add_service(InferenceService::server(state.clone()));
    let grpc_server = tonic::transport::Server::builder()
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true)),
            stopped(stop_rx),
        );

    let (h, g) = tokio::join!(async { http_server.await }, grpc_server);
    h.map_err(|e| ServeError::Server {
        server: "REST",
        message: e.to_string(),
    })?;
    g.map_err(|e| ServeError::Server {
        server: "gRPC",
        message: e.to_string(),
    })?;
    tracing::info!("servers stopped");
    Ok(())
}

/// Completes on SIGTERM (Kubernetes) or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for ctrl-c: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// The `serve` subcommand.
pub async fn serve(args: ServeArgs, mut extras: Extras) -> Result<(), ServeError> {
    let metrics = extras
        .metrics_registry
        .take()
        .map_or_else(Metrics::new, Metrics::with_registry);
    let mut state = load_state_with(&args, metrics).await?;
    if let Some(observer) = extras.observer.take() {
        state = state.with_observer(observer);
    }
    if let Some(probe) = extras.probe.take() {
        state = state.with_probe(probe);
    }
    let state = Arc::new(state);
    let (http, grpc) = bind(&args.host, args.http_port, args.grpc_port).await?;
    let addr = |l: &TcpListener| {
        l.local_addr()
            .map(|a: SocketAddr| a.to_string())
            .unwrap_or_default()
    };
    let served = served_summary(&state, &extras.served);
    tracing::info!(rest = %addr(&http), grpc = %addr(&grpc), serving = %served, "listening");
    // Also on stdout, so `make run` shows where to point curl even with JSON logs.
    println!(
        "inference-server: REST on http://{} , gRPC on {} , serving {served}",
        addr(&http),
        addr(&grpc),
    );
    run(state, http, grpc, extras, shutdown_signal()).await
}

/// What the start-up line says is served: every model version (`name@version`, the default
/// version of each model first, the others marked) and the extras (chat).
pub fn served_summary(state: &ServerState, extras: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut last_name: Option<&str> = None;
    for m in state.models() {
        let also = last_name == Some(m.name.as_str());
        parts.push(if also {
            format!(
                "{}@{} (at /v2/models/{}/versions/{})",
                m.name, m.version, m.name, m.version
            )
        } else {
            format!("{}@{}", m.name, m.version)
        });
        last_name = Some(m.name.as_str());
    }
    parts.extend(extras.iter().cloned());
    if parts.is_empty() {
        "nothing".to_string()
    } else {
        parts.join(", ")
    }
}
