//! Leader election with a `coordination.k8s.io/v1` Lease, so that of several operator
//! replicas exactly one reconciles.
//!
//! Every write is a `replace` carrying the `resourceVersion` just read (or a `create`), so
//! two candidates racing for the same Lease cannot both win: the API server rejects the
//! second write with 409 Conflict.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading Lease {name}: {source}")]
    Read {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing Lease {name}: {source}")]
    Write {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Read { .. } => "LeaseReadFailed",
            Error::Write { .. } => "LeaseWriteFailed",
        }
    }
}

/// One candidate's view of the Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaseLock {
    pub fn new(
        api: Api<Lease>,
        name: impl Into<String>,
        identity: impl Into<String>,
        duration: Duration,
    ) -> Self {
        LeaseLock {
            api,
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    /// How often a leader renews: a third of the duration, so two renewals may fail before
    /// the Lease expires.
    pub fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    fn spec(
        &self,
        now: jiff::Timestamp,
        acquire: Option<MicroTime>,
        transitions: i32,
    ) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
            acquire_time: acquire.or(Some(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Acquire the Lease if it is free or expired, renew it if we hold it. Returns whether we
    /// hold it now.
    pub async fn try_acquire_or_renew(&self, now: jiff::Timestamp) -> Result<bool> {
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|source| Error::Read {
                name: self.name.clone(),
                source,
            })?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, None, 0)),
            };
            return self.write(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let transitions = spec.lease_transitions.unwrap_or(0);
        let new_spec = if holder.as_deref() == Some(self.identity.as_str()) {
            self.spec(now, spec.acquire_time.clone(), transitions)
        } else {
            let duration = jiff::SignedDuration::from_secs(i64::from(
                spec.lease_duration_seconds.unwrap_or(0),
            ));
            let expired = match &spec.renew_time {
                Some(renewed) => renewed
                    .0
                    .checked_add(duration)
                    .map(|end| end < now)
                    .unwrap_or(true),
                None => true,
            };
            if holder.is_some() && !expired {
                return Ok(false);
            }
            self.spec(now, None, transitions + 1)
        };
        lease.spec = Some(new_spec);
        // `lease.metadata.resourceVersion` is the one just read: a concurrent writer makes this fail.
        self.write(
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await,
        )
    }

    fn write(&self, result: kube::Result<Lease>) -> Result<bool> {
        match result {
            Ok(_) => Ok(true),
            // Someone else wrote first (409), or created it first (409 AlreadyExists).
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(Error::Write {
                name: self.name.clone(),
                source,
            }),
        }
    }

    /// Give the Lease up (on shutdown), so a standby takes over without waiting for expiry.
    pub async fn release(&self) -> Result<()> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|source| Error::Read {
                name: self.name.clone(),
                source,
            })?
        else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        self.write(
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await,
        )
        .map(|_| ())
    }
}

/// Wait until we hold the Lease. Returns `false` if `shutdown` came first.
pub async fn acquire(lock: &LeaseLock, mut shutdown: tokio::sync::watch::Receiver<bool>) -> bool {
    loop {
        match lock.try_acquire_or_renew(jiff::Timestamp::now()).await {
            Ok(true) => {
                tracing::info!(lease = %lock.name, identity = %lock.identity, "became leader");
                return true;
            }
            Ok(false) => tracing::debug!(lease = %lock.name, "another replica leads; standing by"),
            Err(err) => tracing::warn!(error = %err, "leader election failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(lock.renew_every()) => {}
            _ = shutdown.changed() => return false,
        }
    }
}

/// Renew the Lease until it is lost or `shutdown` fires. Returns `true` when leadership was
/// lost (the caller must stop reconciling at once), `false` on shutdown.
pub async fn hold(lock: &LeaseLock, mut shutdown: tokio::sync::watch::Receiver<bool>) -> bool {
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(lock.renew_every()) => {}
            _ = shutdown.changed() => return false,
        }
        match lock.try_acquire_or_renew(jiff::Timestamp::now()).await {
            Ok(true) => last_renewal = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::error!(lease = %lock.name, "lost the lease to another replica");
                return true;
            }
            Err(err) => {
                tracing::warn!(error = %err, "renewing the lease failed");
                // Stop before the Lease can expire: another replica may take over then.
                if last_renewal.elapsed() + lock.renew_every() >= lock.duration {
                    tracing::error!(lease = %lock.name, "could not renew the lease in time");
                    return true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
