//! Carry out what the pure steps decided: an action on drift (with its audit record, metric
//! and webhook), and the settling of an earlier rollback request.

use kube::ResourceExt;
use mooring_crds::drift_monitor::{
    ActionResult, DriftActionRecord, DriftMonitorStatus, OnDrift, WebhookDelivery,
};
use mooring_crds::{DriftMonitor, ModelDeployment};

use super::act::{self, Act, RequestState};
use super::collect::Collected;
use super::{Apis, Context, Result, apply, status, validate, webhook};
use crate::controller::fetch;

/// Acknowledge or withdraw this monitor's rollback request on its target.
pub(super) async fn settle_request(
    md: &ModelDeployment,
    namespace: &str,
    monitor: &str,
    apis: &Apis,
    new: &mut DriftMonitorStatus,
) -> Result<()> {
    let target = md.name_any();
    let (request, result, message) = match act::request_state(md, namespace, monitor) {
        RequestState::None | RequestState::Pending(_) => return Ok(()),
        RequestState::Acknowledged(r) => {
            let message = format!(
                "ModelDeployment {target} serves version {} instead of {} (request {})",
                r.to_version, r.from_version, r.id
            );
            (r, ActionResult::Succeeded, message)
        }
        RequestState::Obsolete(r) => {
            let serving = md
                .status
                .as_ref()
                .and_then(|s| s.version.clone())
                .unwrap_or_else(|| "nothing".into());
            let message = format!(
                "rollback of {target} from {} withdrawn: it serves {serving} now (request {})",
                r.from_version, r.id
            );
            (r, ActionResult::Skipped, message)
        }
    };
    apply::rollback_request(&apis.mds, &target, None).await?;
    let job_name = request.id.rsplit('/').next().unwrap_or_default();
    status::settle_request(new, job_name, result, message);
    Ok(())
}

/// Carry out `action`, record it (status, metric) and deliver the webhook.
#[allow(clippy::too_many_arguments)]
pub(super) async fn carry_out(
    action: &Act,
    collected: &Collected,
    job_name: &str,
    dm: &DriftMonitor,
    valid: &validate::ValidMonitor,
    target: &validate::Target,
    ctx: &Context,
    apis: &Apis,
    new: &mut DriftMonitorStatus,
) -> Result<()> {
    let namespace = dm.namespace().unwrap_or_default();
    let name = dm.name_any();
    let now = (ctx.clock)();
    let report = collected.report.as_ref();
    let summary = report.map(act::summary).unwrap_or_else(|| "drift".into());
    let record = |action: OnDrift,
                  from: Option<&str>,
                  to: Option<&str>,
                  result: ActionResult,
                  message: String| DriftActionRecord {
        time: now.clone(),
        action,
        from_version: from.map(Into::into),
        to_version: to.map(Into::into),
        job_name: Some(job_name.into()),
        report_uri: report.and_then(|r| r.report_uri.clone()),
        result,
        message,
    };
    let done = match action {
        Act::Notify => record(
            OnDrift::Notify,
            Some(&target.version),
            None,
            ActionResult::Succeeded,
            format!(
                "ModelDeployment {} version {}: {summary}",
                target.name, target.version
            ),
        ),
        Act::Skip { action, reason } => record(
            *action,
            Some(&target.version),
            None,
            ActionResult::Skipped,
            format!("{action:?} skipped: {reason}"),
        ),
        Act::Rollback { from, to } => {
            let request = act::rollback_request(&namespace, &name, job_name, from, to, report);
            apply::rollback_request(&apis.mds, &target.name, Some(&request)).await?;
            record(
                OnDrift::Rollback,
                Some(from),
                Some(to),
                ActionResult::Requested,
                format!(
                    "asked ModelDeployment {} to serve version {to} instead of {from} ({summary})",
                    target.name
                ),
            )
        }
        Act::Promote {
            alias,
            from_alias,
            version,
            from,
        } => {
            let config =
                match fetch::registry_config(&apis.secrets, &namespace, &target.registry).await {
                    Ok(config) => Ok(config),
                    Err(err) if err.is_user_error() => Err(err.to_string()),
                    Err(err) => return Err(err.into()),
                };
            let outcome = match config {
                Err(reason) => Err(reason),
                Ok(config) => match ctx.connector.connect(&config) {
                    Err(e) => Err(e.to_string()),
                    Ok(registry) => {
                        let by = format!("{namespace}/{name}");
                        match apply::promote(
                            registry.as_ref(),
                            &target.model,
                            alias,
                            from_alias,
                            version,
                            &by,
                        )
                        .await
                        {
                            Ok(p) => Ok(p),
                            Err(apply::Error::Registry(e)) if !e.is_transient() => {
                                Err(e.to_string())
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                },
            };
            match outcome {
                Ok(apply::Promotion::Moved { tagged }) => record(
                    OnDrift::Promote,
                    Some(from),
                    Some(version),
                    ActionResult::Succeeded,
                    format!(
                        "moved alias {alias:?} of {} to version {version} (was serving {from}); the challenger gate passed{}",
                        target.model,
                        if tagged {
                            format!(", version tagged {}", apply::PROMOTED_BY_TAG)
                        } else {
                            String::new()
                        }
                    ),
                ),
                Ok(apply::Promotion::Skipped(reason)) => record(
                    OnDrift::Promote,
                    Some(from),
                    Some(version),
                    ActionResult::Skipped,
                    format!("Promote skipped: {reason}"),
                ),
                Err(reason) => record(
                    OnDrift::Promote,
                    Some(from),
                    Some(version),
                    ActionResult::Failed,
                    format!("Promote failed: {reason}"),
                ),
            }
        }
    };
    ctx.metrics.record_action(
        &namespace,
        &name,
        &format!("{:?}", done.action),
        &format!("{:?}", done.result),
    );
    let (action_label, message) = (format!("{:?}", done.action), done.message.clone());
    status::record_action(new, done);

    if let (Some(hook), Some(report)) = (&valid.webhook, report) {
        let secret = match &hook.secret_ref {
            None => None,
            Some(key) => match apis.secrets.get_opt(&key.name).await {
                Ok(Some(secret)) => secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(&key.key))
                    .map(|b| b.0.clone()),
                _ => None,
            },
        };
        let missing_secret = hook.secret_ref.is_some() && secret.is_none();
        let delivery = if missing_secret {
            webhook::Delivery {
                delivered: false,
                attempts: 0,
                error: Some(format!(
                    "spec.action.webhook.secretRef: Secret key {:?} of {:?} not found: nothing sent unsigned",
                    hook.secret_ref
                        .as_ref()
                        .map(|k| k.key.as_str())
                        .unwrap_or_default(),
                    hook.secret_ref
                        .as_ref()
                        .map(|k| k.name.as_str())
                        .unwrap_or_default()
                )),
            }
        } else {
            let payload = webhook::Payload {
                event: "DriftDetected",
                namespace: &namespace,
                monitor: &name,
                target: &target.name,
                version: &target.version,
                job_name,
                action: action_label,
                message,
                report,
            };
            webhook::deliver(&ctx.http, &hook.url, secret.as_deref(), &payload).await
        };
        new.last_webhook = Some(WebhookDelivery {
            time: now.clone(),
            delivered: delivery.delivered,
            attempts: delivery.attempts as i32,
            message: delivery.error,
        });
    }
    Ok(())
}
