//! The optional parts of `serve`, built from its flags: the prediction logger (an
//! [`InferenceObserver`](crate::infer::InferenceObserver)) and chat mode (extra routes, a
//! gRPC service and a readiness probe). All of them share one Prometheus registry, so
//! `/metrics` shows everything.

use std::sync::Arc;

#[cfg(feature = "chat")]
use futures::FutureExt;
#[cfg(feature = "chat")]
use futures::future::BoxFuture;
#[cfg(feature = "chat")]
use mooring_chat::ChatService;
use mooring_drift::log::{LoggerOptions, PredictionLogger};
use tokio::task::JoinHandle;

use crate::config::ServeArgs;
#[cfg(feature = "chat")]
use crate::infer::ReadinessProbe;
use crate::prediction_log::PredictionLogObserver;
use crate::serve::Extras;

#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error("prediction log")]
    PredictionLog(#[from] mooring_drift::log::LogError),
    #[cfg(feature = "chat")]
    #[error("chat")]
    Chat(#[from] mooring_chat::BuildError),
    #[cfg(feature = "chat")]
    #[error("chat model {reference}")]
    ChatModel {
        reference: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[cfg(not(feature = "chat"))]
    #[error(
        "--chat: this inference-server was built without chat (cargo feature `chat`); use the chat image"
    )]
    ChatNotBuilt,
}

/// Resolve `reference` in the registry of `args`, fetch its GGUF version into the cache
/// (every file digest-checked) and return the file to load.
#[cfg(feature = "chat")]
pub async fn fetch_chat_gguf(
    args: &ServeArgs,
    reference: &str,
) -> Result<mooring_registry::FetchedGguf, ComponentError> {
    let err = |source: Box<dyn std::error::Error + Send + Sync>| ComponentError::ChatModel {
        reference: reference.into(),
        source,
    };
    let registry = crate::serve::open_registry(&args.source).map_err(|e| err(Box::new(e)))?;
    let model_ref: mooring_registry::ModelRef = reference
        .parse()
        .map_err(|e: mooring_registry::Error| err(Box::new(e)))?;
    let version = registry
        .resolve(&model_ref)
        .await
        .map_err(|e| err(Box::new(e)))?;
    let fetched = registry
        .fetch_gguf(&version, &args.source.cache_dir)
        .await
        .map_err(|e| err(Box::new(e)))?;
    tracing::info!(model = %version.name, version = %version.version, digest = %fetched.digest, path = %fetched.path.display(), "chat model fetched and verified");
    Ok(fetched)
}

/// How long a stop waits for the prediction log to flush.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What must be stopped after the servers drained.
pub struct Running {
    logger: Option<(PredictionLogger, JoinHandle<()>)>,
    #[cfg(feature = "chat")]
    chat: Option<ChatService>,
}

impl Running {
    /// Flushes the prediction log (a clean stop loses no record) and stops chat.
    pub async fn stop(self) {
        #[cfg(feature = "chat")]
        if let Some(chat) = self.chat {
            chat.shutdown();
        }
        if let Some((logger, writer)) = self.logger {
            // A sink that hangs (an unreachable S3 endpoint) must not keep the pod past its
            // termination grace period with nothing said.
            let flush = async {
                logger.shutdown().await;
                drop(logger);
                writer.await
            };
            match tokio::time::timeout(FLUSH_TIMEOUT, flush).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("prediction log writer failed: {e}"),
                Err(_) => tracing::error!(
                    "prediction log: flush did not finish within {FLUSH_TIMEOUT:?}; \
                     records still queued are lost"
                ),
            }
        }
    }
}

/// Builds the components `args` asks for.
pub async fn build(args: &ServeArgs) -> Result<(Extras, Running), ComponentError> {
    let registry = prometheus::Registry::new();
    let mut extras = Extras {
        metrics_registry: Some(registry.clone()),
        ..Extras::default()
    };
    let mut running = Running {
        logger: None,
        #[cfg(feature = "chat")]
        chat: None,
    };
    if let Some(sink) = &args.prediction_log.prediction_log {
        let opts = LoggerOptions {
            sample_rate: args.prediction_log.prediction_log_sample_rate,
            queue_capacity: args.prediction_log.prediction_log_queue,
            ..LoggerOptions::default()
        };
        let (logger, writer) = PredictionLogger::start(sink, opts).await?;
        logger.register(&registry)?;
        extras.observer = Some(Arc::new(
            PredictionLogObserver::new(logger.clone())
                .with_max_text_chars(args.prediction_log.prediction_log_max_text_chars),
        ));
        running.logger = Some((logger, writer));
    }
    #[cfg(not(feature = "chat"))]
    if args.chat {
        return Err(ComponentError::ChatNotBuilt);
    }
    #[cfg(feature = "chat")]
    if args.chat {
        let mut chat_args = args.chat_args.clone();
        if let Some(reference) = &args.chat_gguf_model {
            chat_args.chat_gguf = fetch_chat_gguf(args, reference).await?.path;
        }
        let chat = ChatService::build(&chat_args, &registry).await?;
        extras.http = Some(chat.router());
        extras.grpc.add_service(chat.grpc_service());
        extras.probe = Some(Arc::new(ChatProbe(chat.clone())));
        extras.served.push(chat.describe());
        running.chat = Some(chat);
    }
    Ok((extras, running))
}

/// `/readyz` reports chat's backend and session store (the `BackendReachable` condition).
#[cfg(feature = "chat")]
struct ChatProbe(ChatService);

#[cfg(feature = "chat")]
impl ReadinessProbe for ChatProbe {
    fn name(&self) -> &'static str {
        "chat"
    }

    fn check(&self) -> BoxFuture<'_, Result<serde_json::Value, serde_json::Value>> {
        async move {
            let r = self.0.readiness().await;
            let details = serde_json::to_value(&r).unwrap_or_default();
            if r.ready { Ok(details) } else { Err(details) }
        }
        .boxed()
    }
}
