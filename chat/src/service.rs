//! `ChatService`: builds chat mode from its flags and hands the server its HTTP routes, its
//! gRPC service and its readiness.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::auth::Auth;
use crate::backend::limit::Limited;
use crate::backend::local::{EngineOptions, LocalBackend, LocalOptions, default_threads};
use crate::backend::ollama::OllamaBackend;
use crate::backend::openai::{OpenAiBackend, RemoteOptions};
use crate::backend::retry::RetryPolicy;
use crate::backend::{Backend, BackendError};
use crate::cache::{CacheError, Caches, Embedder, MiniLmEmbedder, Switch};
use crate::config::{BackendKind, ChatArgs, MemoryStoreKind};
use crate::engine::{CachedAnswer, Engine};
use crate::guard::{Guard, GuardError};
use crate::memory::in_process::InProcessStore;
use crate::memory::postgres_store::PostgresStore;
use crate::memory::redis_store::RedisStore;
use crate::memory::{MemoryError, MemoryLimits, SessionStore};
use crate::metrics::{ChatMetrics, MetricsError};
use crate::shared::Shared;

/// Why chat mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{flag}: {message}")]
    Config { flag: &'static str, message: String },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("guard: {0}")]
    Guard(#[from] GuardError),
    #[error("auth: {0}")]
    Auth(#[from] crate::auth::AuthError),
    #[error("cache: {0}")]
    Cache(#[from] CacheError),
}

/// Readiness details for `/readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct ChatReadiness {
    pub ready: bool,
    /// The `BackendReachable` condition.
    pub backend_reachable: bool,
    pub memory_reachable: bool,
    pub backend: &'static str,
    /// Why not ready, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Chat mode, ready to be mounted by the server.
#[derive(Clone)]
pub struct ChatService {
    shared: Shared,
    shutting_down: Arc<AtomicBool>,
}

impl ChatService {
    /// Loads the backend (the local model is read on a blocking thread), connects the
    /// session store and registers the metrics.
    pub async fn build(
        args: &ChatArgs,
        registry: &prometheus::Registry,
    ) -> Result<Self, BuildError> {
        let backend = build_backend(args).await?;
        let store = build_store(args).await?;
        let metrics = ChatMetrics::register(registry)?;
        let auth = Auth::start(&args.auth).await?;
        let (cache_args, guard_args) = (args.cache.clone(), args.guard.clone());
        // Loading the embedding model reads ~90 MB and the guard embeds its exemplars: off the
        // async workers. One model serves both the semantic cache and the guard.
        let (caches, guard) = tokio::task::spawn_blocking(move || {
            let wanted =
                cache_args.semantic == Switch::On || guard_args.semantic_layer == Switch::On;
            let embedder = match (&cache_args.embedding_model_dir, wanted) {
                (Some(dir), true) => Some(Arc::new(
                    MiniLmEmbedder::load(dir).map_err(CacheError::from)?,
                ) as Arc<dyn Embedder>),
                _ => None,
            };
            if guard_args.semantic_layer == Switch::On && embedder.is_none() {
                tracing::warn!(
                    "guard: --guard-semantic is on but no --embedding-model-dir is given; \
                     the guard runs its pattern and markup layers only"
                );
            }
            let guard = Guard::with_embedder(&guard_args, embedder.clone())?;
            let caches = Caches::with_embedder(&cache_args, embedder)?;
            Ok::<_, BuildError>((caches, Arc::new(guard)))
        })
        .await
        .map_err(|e| BackendError::Load(format!("the cache loading thread failed: {e}")))??;
        Ok(Self::from_parts(
            args, backend, store, metrics, guard, auth, caches,
        ))
    }

    /// Assembles a service from ready parts (tests use it to put a fake backend in).
    pub fn from_parts(
        args: &ChatArgs,
        backend: Arc<dyn Backend>,
        store: Arc<dyn SessionStore>,
        metrics: ChatMetrics,
        guard: Arc<Guard>,
        auth: Auth,
        caches: Caches<CachedAnswer>,
    ) -> Self {
        let engine = Engine {
            backend,
            store,
            metrics,
            system_prompt: args.chat_system_prompt.clone(),
            max_tokens: args.chat_max_tokens,
            caches: Arc::new(caches),
        };
        ChatService {
            shared: Shared {
                engine,
                guard,
                auth,
            },
            shutting_down: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Every chat HTTP route, behind the API-key and rate-limit layer, whose refusals
    /// (401, 429) count in `mooring_chat_requests_total` like every other outcome.
    pub fn router(&self) -> axum::Router {
        crate::http::router(self.shared.clone())
    }

    /// The `mooring.chat.v1.ChatService` gRPC service.
    pub fn grpc_service(
        &self,
    ) -> crate::proto::chat_service_server::ChatServiceServer<crate::grpc::GrpcChat> {
        crate::grpc::GrpcChat::new(self.shared.clone()).into_server()
    }

    /// Whether chat can serve: the backend answers and the session store too.
    pub async fn readiness(&self) -> ChatReadiness {
        let backend = self.shared.engine.backend.reachable().await;
        let memory = self.shared.engine.store.ping().await;
        let shutting_down = self.shutting_down.load(Ordering::SeqCst);
        let reason = match (&backend, &memory) {
            _ if shutting_down => Some("shutting down".to_string()),
            (Err(e), _) => Some(format!("backend: {e}")),
            (_, Err(e)) => Some(format!("session store: {e}")),
            _ => None,
        };
        ChatReadiness {
            ready: reason.is_none(),
            backend_reachable: backend.is_ok(),
            memory_reachable: memory.is_ok(),
            backend: self.shared.engine.backend.kind(),
            reason,
        }
    }

    /// What chat mode serves, for the start-up line: `chat (local backend, model smollm2)`.
    pub fn describe(&self) -> String {
        let backend = &self.shared.engine.backend;
        format!(
            "chat ({} backend, model {})",
            backend.kind(),
            backend.model_name()
        )
    }

    /// Marks chat as not ready, so load balancers stop sending new requests while the
    /// server drains the ones in flight.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }
}

fn remote_concurrency(args: &ChatArgs) -> Result<usize, BuildError> {
    match args.chat_backend_concurrency {
        0 => Err(BuildError::Config {
            flag: "--chat-backend-concurrency",
            message: "must be at least 1".into(),
        }),
        n => Ok(n),
    }
}

async fn build_backend(args: &ChatArgs) -> Result<Arc<dyn Backend>, BuildError> {
    let remote = |kind: &str| -> Result<RemoteOptions, BuildError> {
        let url = args.chat_url.clone().ok_or_else(|| BuildError::Config {
            flag: "--chat-url",
            message: format!("required with --chat-backend {kind}"),
        })?;
        Ok(RemoteOptions {
            url,
            model: args.chat_model.clone(),
            api_key: args.chat_backend_api_key.clone(),
            connect_timeout: Duration::from_secs(args.chat_connect_timeout_secs),
            read_timeout: Duration::from_secs(args.chat_read_timeout_secs),
            retry: RetryPolicy {
                max_retries: args.chat_retries,
                base_delay: Duration::from_millis(args.chat_retry_base_ms),
                max_delay: Duration::from_secs(10),
                first_event_timeout: Duration::from_secs(args.chat_first_token_timeout_secs),
            },
            default_max_tokens: args.chat_max_tokens,
            default_temperature: args.chat_temperature,
        })
    };
    Ok(match args.chat_backend {
        BackendKind::Local => {
            if args.chat_queue == 0 {
                return Err(BuildError::Config {
                    flag: "--chat-queue",
                    message: "must be at least 1".into(),
                });
            }
            let options = LocalOptions {
                gguf: args.chat_gguf.clone(),
                model_name: args.chat_model.clone(),
                default_max_tokens: args.chat_max_tokens,
                default_temperature: args.chat_temperature,
                repeat_penalty: args.chat_repeat_penalty,
                queue: args.chat_queue,
            };
            for (flag, value) in [
                ("--chat-parallel", args.chat_parallel),
                ("--chat-cache-tokens", args.chat_cache_tokens),
                ("--chat-threads", args.chat_threads.unwrap_or(1)),
            ] {
                if value == 0 {
                    return Err(BuildError::Config {
                        flag,
                        message: "must be at least 1".into(),
                    });
                }
            }
            let engine = EngineOptions {
                threads: args.chat_threads.unwrap_or_else(default_threads),
                parallel: args.chat_parallel,
                cache_tokens: args.chat_cache_tokens,
                flash_attention: args.chat_flash_attention,
            };
            let backend =
                tokio::task::spawn_blocking(move || LocalBackend::load_with(options, engine))
                    .await
                    .map_err(|e| BackendError::Load(format!("the loading thread failed: {e}")))??;
            Arc::new(backend)
        }
        BackendKind::Openai => Arc::new(Limited::new(
            OpenAiBackend::new(remote("openai")?)?,
            remote_concurrency(args)?,
        )),
        BackendKind::Ollama => Arc::new(Limited::new(
            OllamaBackend::new(remote("ollama")?)?,
            remote_concurrency(args)?,
        )),
    })
}

async fn build_store(args: &ChatArgs) -> Result<Arc<dyn SessionStore>, BuildError> {
    if args.chat_memory_max_turns == 0 {
        return Err(BuildError::Config {
            flag: "--chat-memory-max-turns",
            message: "must be at least 1".into(),
        });
    }
    let limits = MemoryLimits {
        max_turns: args.chat_memory_max_turns,
        max_chars: args.chat_memory_max_chars,
        ttl: Duration::from_secs(args.chat_memory_ttl_secs),
    };
    Ok(match args.chat_memory_store {
        MemoryStoreKind::Memory => {
            let max =
                NonZeroUsize::new(args.chat_memory_max_sessions).ok_or(BuildError::Config {
                    flag: "--chat-memory-max-sessions",
                    message: "must be at least 1".into(),
                })?;
            Arc::new(InProcessStore::new(max, limits))
        }
        MemoryStoreKind::Redis => {
            let url = args.chat_redis_url.as_deref().ok_or(BuildError::Config {
                flag: "--chat-redis-url",
                message: "required with --chat-memory-store redis".into(),
            })?;
            Arc::new(RedisStore::connect(url, &args.chat_redis_prefix, limits).await?)
        }
        MemoryStoreKind::Postgres => {
            let url = args
                .chat_postgres_url
                .as_deref()
                .ok_or(BuildError::Config {
                    flag: "--chat-postgres-url",
                    message: "required with --chat-memory-store postgres".into(),
                })?;
            Arc::new(PostgresStore::connect(url, limits).await?)
        }
    })
}
