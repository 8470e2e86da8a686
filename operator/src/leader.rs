//! Leader election with a `coordination.k8s.io/v1` Lease, so that of several operator
//! replicas exactly one reconciles. It follows client-go's `leaderelection`:
//!
//! - Every write is a `replace` carrying the `resourceVersion` just read (or a `create`), so
//!   two candidates racing for the same Lease cannot both win: the API server rejects the
//!   second write with 409 Conflict.
//! - Expiry is judged by **local** time: a standby notes when it last saw the Lease record
//!   change and takes over once it has not changed for a whole lease duration. The
//!   `renewTime` written by another node's clock is never compared with ours, so clock skew
//!   between nodes cannot make two leaders.
//! - The leader renews every [`LeaseLock::retry_period`]; each attempt has a deadline, and
//!   if no renewal succeeds within [`LeaseLock::renew_deadline`] (shorter than the lease
//!   duration) it gives up leadership *before* a standby can take over.
//! - A 409 on renewal (something else touched the Lease) re-reads it once before giving up.

use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::time::Instant;

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

/// What a write came to.
enum Written {
    Ok,
    Conflict,
}

/// The Lease record as last seen, and when (local monotonic time).
struct Observed {
    record: (Option<String>, Option<MicroTime>, Option<i32>),
    at: Instant,
}

/// One candidate's view of the Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    observed: Mutex<Option<Observed>>,
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
            observed: Mutex::new(None),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// How often a candidate tries and a leader renews (client-go: 2 s of 15).
    pub fn retry_period(&self) -> Duration {
        (self.duration / 5).max(Duration::from_millis(200))
    }

    /// How long a leader keeps trying to renew before it gives up leadership: two thirds
    /// of the duration (client-go: 10 s of 15), so it has stopped before a standby, which
    /// waits the whole duration, takes over.
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    fn spec(&self, acquire: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        // Times written for people (`kubectl get lease`); nobody compares them across nodes.
        let now = MicroTime(jiff::Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
            acquire_time: acquire.or(Some(now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    async fn read(&self) -> Result<Option<Lease>> {
        self.api
            .get_opt(&self.name)
            .await
            .map_err(|source| Error::Read {
                name: self.name.clone(),
                source,
            })
    }

    /// Has the Lease held by someone else gone a whole duration without a change, as seen
    /// from here?
    fn expired(&self, spec: &LeaseSpec) -> bool {
        let record = (
            spec.holder_identity.clone(),
            spec.renew_time.clone(),
            spec.lease_transitions,
        );
        let now = Instant::now();
        let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        match observed.as_ref() {
            Some(o) if o.record == record => {
                let duration = spec
                    .lease_duration_seconds
                    .map_or(self.duration, |s| Duration::from_secs(s.max(0) as u64));
                now.duration_since(o.at) >= duration
            }
            // A change (or the first look): the holder is alive as of now.
            _ => {
                *observed = Some(Observed { record, at: now });
                false
            }
        }
    }

    /// Acquire the Lease if it is free or expired, renew it if we hold it. Returns whether we
    /// hold it now.
    pub async fn try_acquire_or_renew(&self) -> Result<bool> {
        // A conflict may only mean that something else touched the Lease (a label, a
        // kubectl edit): read it again once before concluding.
        for _ in 0..2 {
            let Some(lease) = self.read().await? else {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(None, 0)),
                };
                return self
                    .write(self.api.create(&PostParams::default(), &lease).await)
                    .map(|w| matches!(w, Written::Ok));
            };
            match self.renew_or_take(lease).await? {
                Some(Written::Ok) => return Ok(true),
                None => return Ok(false),
                Some(Written::Conflict) => continue,
            }
        }
        Ok(false)
    }

    /// Write ourselves into `lease` if we hold it or it is free or expired; `None` when
    /// another holder is alive.
    async fn renew_or_take(&self, mut lease: Lease) -> Result<Option<Written>> {
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let transitions = spec.lease_transitions.unwrap_or(0);
        let new_spec = if holder.as_deref() == Some(self.identity.as_str()) {
            self.spec(spec.acquire_time.clone(), transitions)
        } else {
            if holder.is_some() && !self.expired(&spec) {
                return Ok(None);
            }
            self.spec(None, transitions + 1)
        };
        lease.spec = Some(new_spec);
        // `lease.metadata.resourceVersion` is the one just read: a concurrent writer makes
        // this fail with 409.
        let result = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await;
        self.write(result).map(Some)
    }

    fn write(&self, result: kube::Result<Lease>) -> Result<Written> {
        match result {
            Ok(_) => Ok(Written::Ok),
            // Someone else wrote first (409), or created it first (409 AlreadyExists).
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Written::Conflict),
            Err(source) => Err(Error::Write {
                name: self.name.clone(),
                source,
            }),
        }
    }

    /// Give the Lease up (on shutdown), so a standby takes over without waiting for expiry.
    pub async fn release(&self) -> Result<()> {
        let Some(mut lease) = self.read().await? else {
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
        let result = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await;
        self.write(result).map(|_| ())
    }
}

/// Wait until we hold the Lease. Returns `false` if `shutdown` came first.
pub async fn acquire(lock: &LeaseLock, mut shutdown: tokio::sync::watch::Receiver<bool>) -> bool {
    loop {
        match tokio::time::timeout(lock.renew_deadline(), lock.try_acquire_or_renew()).await {
            Ok(Ok(true)) => {
                tracing::info!(lease = %lock.name, identity = %lock.identity, "became leader");
                return true;
            }
            Ok(Ok(false)) => {
                tracing::debug!(lease = %lock.name, "another replica leads; standing by")
            }
            Ok(Err(err)) => tracing::warn!(error = %err, "leader election failed; retrying"),
            Err(_) => {
                tracing::warn!(lease = %lock.name, "the API server did not answer in time; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(lock.retry_period()) => {}
            _ = shutdown.changed() => return false,
        }
    }
}

/// Renew the Lease until it is lost or `shutdown` fires. Returns `true` when leadership was
/// lost (the caller must stop reconciling at once), `false` on shutdown.
pub async fn hold(lock: &LeaseLock, mut shutdown: tokio::sync::watch::Receiver<bool>) -> bool {
    let mut last_renewal = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(lock.retry_period()) => {}
            _ = shutdown.changed() => return false,
        }
        // Each attempt ends by the renew deadline at the latest.
        let left = lock.renew_deadline().saturating_sub(last_renewal.elapsed());
        match tokio::time::timeout(left, lock.try_acquire_or_renew()).await {
            Ok(Ok(true)) => last_renewal = Instant::now(),
            Ok(Ok(false)) => {
                tracing::error!(lease = %lock.name, "lost the lease to another replica");
                return true;
            }
            Ok(Err(err)) => tracing::warn!(error = %err, "renewing the lease failed"),
            Err(_) => tracing::warn!(lease = %lock.name, "renewing the lease timed out"),
        }
        if last_renewal.elapsed() >= lock.renew_deadline() {
            // Stop before the Lease can expire: another replica may take over then.
            tracing::error!(lease = %lock.name, "could not renew the lease in time");
            return true;
        }
    }
}

#[cfg(test)]
mod tests;
