//! The ChatService controller: an OpenAI-compatible chat endpoint from one resource.
//!
//! validate (pure) → fetch (the Secrets the spec names, the registry's credentials) → resolve
//! the local model's alias → build the Deployment, Service and optional HPA/PDB (pure) →
//! server-side apply and read back → status → Events of its transitions.
//!
//! Everything a ModelDeployment also does is the ModelDeployment controller's code, shared:
//! the registry clients of [`Context`], [`resolve_version`] with its rollback pins, the
//! rollout judgement of [`rollout::observe`], the rollout status and its Events
//! ([`crate::controller::status`], over a view of this status), outage safety (a registry
//! that does not answer changes nothing that runs), the apply and the metrics.

pub mod children;
pub mod status;
pub mod validate;

#[cfg(test)]
mod children_tests;
#[cfg(test)]
mod mock_tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use mooring_crds::model_deployment::{Endpoints, RETRY_ANNOTATION};
use mooring_crds::{ChatService, ChatServiceStatus};

use crate::controller::apply::{self, FIELD_MANAGER};
use crate::controller::children::GRPC_PORT;
use crate::controller::resolve;
use crate::controller::rollout::{self, Rollout};
use crate::controller::{
    Context, events, fetch, resolve_version, scoped, status as rollout_status,
};
use validate::{Backend, RedisUrl, ValidChat};

/// Controller name in metrics.
pub const CONTROLLER: &str = "chatservice";
/// A Secret the spec names is not watched: look again this often.
const MISSING_SECRET_RETRY: Duration = Duration::from_secs(60);
const ROLLOUT_RECHECK: Duration = Duration::from_secs(15);
/// How often a remote backend's ChatService is looked at without a change.
const REMOTE_RECHECK: Duration = Duration::from_secs(300);

/// Its errors are the ModelDeployment controller's: the same steps fail the same ways.
pub use crate::controller::{Error, Result};

fn object_key(chat: &ChatService) -> String {
    format!(
        "chat:{}/{}",
        chat.namespace().unwrap_or_default(),
        chat.name_any()
    )
}

/// Reconcile one ChatService, with metrics.
pub async fn reconcile(chat: Arc<ChatService>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_steps(&chat, &ctx).await;
    let failed = result.as_ref().err().map(Error::reason);
    ctx.metrics.reconciled(CONTROLLER, started, failed);
    result
}

/// Transient failures: retry with backoff.
pub fn error_policy(chat: Arc<ChatService>, error: &Error, ctx: Arc<Context>) -> Action {
    crate::controller::requeue_after(chat.as_ref(), error, ctx.backoff(&object_key(&chat)))
}

/// The Secret fields of the spec that the pods read (by reference): each must exist with its
/// key, or the pods would never start. Returns the first problem, naming the field.
async fn check_secrets(
    secrets: &Api<Secret>,
    namespace: &str,
    chat: &ChatService,
    valid: &ValidChat,
) -> fetch::Result<()> {
    let mut wanted: Vec<(&'static str, &str, &str)> = Vec::new();
    if let Some(auth) = &chat.spec.auth {
        let r = &auth.api_keys_secret_ref;
        wanted.push(("spec.auth.apiKeysSecretRef", &r.name, &r.key));
    }
    if let Some(RedisUrl::Secret(r)) = &valid.redis {
        wanted.push(("spec.memory.redis.urlSecretRef", &r.name, &r.key));
    }
    if let Some(r) = &valid.postgres {
        wanted.push(("spec.memory.postgres.urlSecretRef", &r.name, &r.key));
    }
    if let Backend::Remote {
        api_key: Some(r), ..
    } = &valid.backend
    {
        wanted.push(("spec.backend.apiKeySecretRef", &r.name, &r.key));
    }
    for (field, name, key) in wanted {
        let secret = fetch::get_secret(secrets, namespace, field, name).await?;
        fetch::secret_key(&secret, field, name, key)?;
    }
    Ok(())
}

/// The pin context of `chat`: its pod-template digest and the retry annotation.
fn pin_context(
    chat: &ChatService,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> resolve::PinContext {
    resolve::PinContext {
        template_hash: children::template_hash(&chat.spec),
        retry: chat.annotations().get(RETRY_ANNOTATION).cloned(),
        rollback_request: None,
        now: Some(now.clone()),
    }
}

async fn reconcile_steps(chat: &ChatService, ctx: &Context) -> Result<Action> {
    let name = chat.name_any();
    let namespace = chat
        .namespace()
        .ok_or_else(|| Error::NotNamespaced(format!("ChatService {name}")))?;
    if chat.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let key = object_key(chat);
    let client = ctx.client.clone();
    let chats: Api<ChatService> = Api::namespaced(client.clone(), &namespace);
    // The status as the API server has it now: the next status is computed from the last
    // one written, and the watch cache can lag behind our own status writes (a stale history
    // would forget when a version became ready, and with it the version to roll back to).
    let fresh = match chats.get_status(&name).await {
        Ok(fresh) => fresh,
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
        Err(source) => {
            return Err(Error::Apply(apply::Error::Read {
                kind: "ChatService",
                name: name.clone(),
                source,
            }));
        }
    };
    let chat = &fresh;
    let old = chat.status.clone().unwrap_or_default();
    let old_view = status::rollout_view(&old);
    let now = (ctx.clock)();
    let url = children::url(&name, &namespace);
    let template_hash = children::template_hash(&chat.spec);
    let base = |step| rollout_status::Inputs {
        generation: chat.metadata.generation,
        now: now.clone(),
        auto_rollback: chat.spec.rollout.auto_rollback,
        endpoints: Endpoints {
            rest: url.clone(),
            grpc: format!("{name}.{namespace}.svc:{GRPC_PORT}"),
        },
        template_hash: template_hash.clone(),
        step,
    };
    let invalid = |reason: &'static str, message: String| {
        ctx.metrics
            .errors
            .with_label_values(&[CONTROLLER, reason])
            .inc();
        let view = rollout_status::next(
            &old_view,
            &base(rollout_status::Step::Invalid { reason, message }),
        );
        status::from_view(view, old.url.clone())
    };

    // validate
    let valid = match validate::validate_resource(chat) {
        Ok(valid) => valid,
        Err(err) => {
            finish(
                chat,
                ctx,
                &chats,
                &old,
                invalid(err.reason(), err.to_string()),
                false,
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    let remote = valid.target().is_none();

    // fetch
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let fetched = match check_secrets(&secrets, &namespace, chat, &valid).await {
        Ok(()) => match &valid.backend {
            Backend::Local { registry, .. } => {
                fetch::registry_config(&secrets, &namespace, registry)
                    .await
                    .map(Some)
            }
            Backend::Remote { .. } => Ok(None),
        },
        Err(err) => Err(err),
    };
    let config = match fetched {
        Ok(config) => config,
        Err(err) if err.is_user_error() => {
            finish(
                chat,
                ctx,
                &chats,
                &old,
                invalid(err.reason(), err.to_string()),
                remote,
            )
            .await?;
            return Ok(Action::requeue(MISSING_SECRET_RETRY));
        }
        Err(err) => return fail(chat, ctx, &chats, &old, &base, err.into()).await,
    };

    // resolve (local backend)
    let decision = match (valid.target(), &config) {
        (Some(target), Some(config)) => {
            let pins = pin_context(chat, &now);
            let decision = resolve_version(ctx, CONTROLLER, config, target, &old_view, &pins).await;
            Some(decision)
        }
        _ => None,
    };

    // build, apply, read back
    let version = decision.as_ref().and_then(|d| d.version.clone());
    let registry_unreachable = decision.as_ref().is_some_and(|d| d.registry_unreachable);
    let applies = !registry_unreachable && (remote || version.is_some());
    let observation = if applies {
        let owner = chat
            .controller_owner_ref(&())
            .ok_or_else(|| Error::NotNamespaced(format!("ChatService {name}")))?;
        let apis = apply::ChildApis::namespaced(&client, &namespace);
        if old.observed_generation.is_none() || (!remote && old.version.is_none()) {
            let uid = chat.metadata.uid.clone().unwrap_or_default();
            match apply::foreign_children(&apis, &name, &uid).await {
                Ok(Some(message)) => {
                    let message = message.replace("ModelDeployment", "ChatService");
                    finish(
                        chat,
                        ctx,
                        &chats,
                        &old,
                        invalid("NotOwned", message),
                        remote,
                    )
                    .await?;
                    return Ok(Action::requeue(MISSING_SECRET_RETRY));
                }
                Ok(None) => {}
                Err(err) => return fail(chat, ctx, &chats, &old, &base, err.into()).await,
            }
        }
        let desired = children::build(
            chat,
            owner,
            &valid,
            version.as_ref(),
            &ctx.default_chat_image,
        );
        let spec_changed = old.observed_generation.is_some()
            && chat.metadata.generation != old.observed_generation;
        let deployment = match apply::children(&apis, &desired, spec_changed).await {
            Ok(deployment) => deployment,
            Err(err) => return fail(chat, ctx, &chats, &old, &base, err.into()).await,
        };
        // A remote backend has no registry version: the Deployment alone tells.
        let observation = match &version {
            Some(v) => {
                let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
                match apply::observe_rollout(&pods, &name, &deployment, &v.version).await {
                    Ok(observation) => observation,
                    Err(err) => return fail(chat, ctx, &chats, &old, &base, err.into()).await,
                }
            }
            None => rollout::observe(&deployment, &[]),
        };
        Some(observation)
    } else {
        None
    };

    // status and events
    let generation = chat.metadata.generation;
    let mut new = match (&decision, valid.target()) {
        (Some(decision), Some(target)) => {
            let view = rollout_status::next(
                &old_view,
                &base(rollout_status::Step::Resolved {
                    target,
                    decision,
                    observation: observation.as_ref(),
                }),
            );
            status::from_view(view, Some(url.clone()))
        }
        _ => match &observation {
            Some(obs) => {
                let mut s = status::remote(&old, obs, generation, &now);
                s.url = Some(url.clone());
                s
            }
            None => old.clone(),
        },
    };
    if let Some(obs) = &observation {
        let backend = match &valid.backend {
            Backend::Local { .. } => "the local model".to_string(),
            Backend::Remote { url, .. } => url.clone(),
        };
        status::set_backend_reachable(&mut new, obs, &backend, generation, &now);
    }
    let rolling = matches!(
        observation.as_ref().map(|o| &o.rollout),
        Some(Rollout::Progressing)
    );
    let pin_changed = new.rollback_pin != old.rollback_pin;
    finish(chat, ctx, &chats, &old, new, remote).await?;

    let resolve_every =
        Duration::from_secs(chat.spec.rollout.resolve_interval_seconds.max(5) as u64);
    if registry_unreachable {
        return Ok(Action::requeue(ctx.backoff(&key).min(resolve_every)));
    }
    ctx.reset_backoff(&key);
    Ok(if pin_changed {
        Action::requeue(Duration::from_millis(100))
    } else if rolling {
        Action::requeue(ROLLOUT_RECHECK.min(resolve_every))
    } else if remote {
        Action::requeue(REMOTE_RECHECK)
    } else {
        Action::requeue(resolve_every)
    })
}

/// A failed call to the API server: `Ready=False` with reason `ReconcileError`, retried with
/// backoff.
async fn fail<'a>(
    chat: &ChatService,
    ctx: &Context,
    chats: &Api<ChatService>,
    old: &ChatServiceStatus,
    base: &impl Fn(rollout_status::Step<'a>) -> rollout_status::Inputs<'a>,
    err: Error,
) -> Result<Action> {
    let view = rollout_status::next(
        &status::rollout_view(old),
        &base(rollout_status::Step::Failed {
            message: err.to_string(),
        }),
    );
    let new = status::from_view(view, old.url.clone());
    let remote = chat.spec.backend.kind != mooring_crds::chat_service::BackendKind::Local;
    if let Err(status_err) = finish(chat, ctx, chats, old, new, remote).await {
        tracing::warn!(error = %status_err, "could not report the failure in the status either");
    }
    Err(err)
}

/// Write the status if it changed and publish the Events of its transitions.
async fn finish(
    chat: &ChatService,
    ctx: &Context,
    chats: &Api<ChatService>,
    old: &ChatServiceStatus,
    new: ChatServiceStatus,
    remote: bool,
) -> Result<()> {
    if &new == old {
        return Ok(());
    }
    let body = serde_json::json!({
        "apiVersion": "mooring.dev/v1alpha1",
        "kind": "ChatService",
        "status": new,
    });
    chats
        .patch_status(
            &chat.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|source| apply::Error::Status {
            name: chat.name_any(),
            source,
        })?;
    let mut transitions =
        rollout_status::transitions(&status::rollout_view(old), &status::rollout_view(&new));
    transitions.extend(status::transitions(old, &new, remote));
    events::publish(&ctx.recorder, chat, &transitions).await;
    Ok(())
}

/// A ChatService change that must wake the controller: its spec and the retry annotation,
/// not its own status writes.
fn spec_and_retry(chat: &ChatService) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    chat.metadata.generation.hash(&mut h);
    chat.annotations().get(RETRY_ANNOTATION).hash(&mut h);
    chat.metadata.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

/// Run the controller until `shutdown` resolves. `namespace` limits it to one namespace.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    use kube::runtime::{WatchStreamExt, reflector, utils::PredicateConfig};
    let client = ctx.client.clone();
    let chats: Api<ChatService> = scoped(&client, namespace);
    let deployments: Api<Deployment> = scoped(&client, namespace);
    let services: Api<Service> = scoped(&client, namespace);
    let children = watcher::Config::default().labels(
        "app.kubernetes.io/managed-by=mooring-operator,app.kubernetes.io/component=chat-server",
    );
    let (store, writer) = reflector::store();
    let trigger = reflector::reflector(
        writer,
        watcher(chats, watcher::Config::default().any_semantic()),
    )
    .default_backoff()
    .applied_objects()
    .predicate_filter(spec_and_retry, PredicateConfig::default());
    Controller::for_stream(trigger, store)
        .owns(deployments, children.clone())
        .owns(services, children)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(name = %object.name, namespace = ?object.namespace, "reconciled"),
                Err(err) => tracing::debug!(error = %err, "reconcile error"),
            }
        })
        .await;
}
