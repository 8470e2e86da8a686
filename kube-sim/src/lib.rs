//! A simulated Kubernetes cluster for tests: an in-memory, stateful API server behind
//! [`kube::Client`], with simulated Deployment, ReplicaSet, Job and kubelet controllers, a
//! garbage collector, fault injection and virtual time. A dev-dependency only.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use k8s_openapi::api::apps::v1::Deployment;
//! use mooring_kube_sim::{OutageKind, PodBehaviour, Sim, Verb};
//!
//! // In `#[tokio::test(start_paused = true)]`: every wait is virtual, an hour takes
//! // milliseconds.
//! let sim = Sim::new();
//! // Real kube Clients; the identity names the client in the log, is its default field
//! // manager, and is what per-client faults target.
//! let client = sim.client("operator-a");
//! sim.set_pod_behaviour(|pod| match pod.metadata.annotations.as_ref().and_then(|a| a.get("v")) {
//!     Some(v) if v == "bad" => PodBehaviour::CrashLoop,
//!     _ => PodBehaviour::Ready { after: Duration::from_secs(5) },
//! });
//! // ... run the code under test with `client` ...
//! sim.unavailable(Some("operator-a"), Duration::from_secs(600), OutageKind::ConnectionError);
//! tokio::time::sleep(Duration::from_secs(3600)).await;
//! let d: Option<Deployment> = sim.get("default", "web");
//! let status_writes = sim.count(|r| {
//!     r.client == "operator-a" && r.is_write() && r.subresource.as_deref() == Some("status")
//! });
//! # }
//! ```
//!
//! # What it models
//! - Objects of the types in [`resources::RESOURCES`] (the Mooring CRDs, Deployments,
//!   ReplicaSets, Pods, Services, Secrets, ConfigMaps, Jobs, Leases, Events (core and
//!   `events.k8s.io`), HPAs, PDBs, ServiceAccounts, PVCs), all namespaced, stored as JSON.
//! - `resourceVersion` (one global counter; a write that changes nothing is no write),
//!   `uid`, `creationTimestamp` (virtual wall time: [`EPOCH`] plus tokio's elapsed time, see
//!   [`Sim::now`]), `generation` (starts at 1, bumped on any change outside `metadata` and
//!   `status`), `generateName`, finalizers and `deletionTimestamp`, owner references and
//!   background garbage collection (transitive, immediate; `propagationPolicy=Orphan`
//!   orphans instead; `Foreground` is treated as background).
//! - The `status` subresource for the types that have one: writes to the main resource keep
//!   the stored status, writes to `/status` change only the status.
//! - Verbs: get, list (label selectors `=`, `==`, `!=`, `in`, `notin`, exists, `!`; field
//!   selectors on `metadata.name`/`metadata.namespace`; across namespaces), watch (the
//!   history after a resourceVersion, then live changes; selectors, with objects leaving or
//!   entering them seen as DELETED/ADDED; a bookmark at the end; `timeoutSeconds` in virtual
//!   time; `sendInitialEvents` streaming lists; `410 Gone` as an `ERROR` event for a
//!   compacted resourceVersion), create (`409 AlreadyExists`), replace (`409 Conflict` on a
//!   stale `resourceVersion`), patch (server-side apply, JSON merge patch, strategic merge
//!   patch *treated as a JSON merge patch*, JSON patch), delete (with `preconditions`),
//!   `GET /version`. Errors are `Status` objects with the real reasons and messages, so kube
//!   maps them to `kube::Error::Api`.
//! - Server-side apply, simplified: ownership of leaf fields per (manager, operation,
//!   subresource), kept in `metadata.managedFields` as `FieldsV1`; a `409` conflict when
//!   another manager owns a field with a different value (unless `force`, which takes it
//!   over); removal of fields a manager applied before and no longer applies (unless someone
//!   else owns them too); updates (create, replace, merge/JSON patch) take ownership of the
//!   fields they change, the manager being `fieldManager` or else the client's identity.
//!   Lists are atomic except lists of objects that all have a `name` (containers, env,
//!   ports, volumes, volumeMounts, ...), merged by `name`, and `conditions`, merged by
//!   `type` (see [`fields`]).
//! - Simulated controllers, run synchronously after every write and when their timers fire,
//!   so the cluster state is deterministic for a given sequence of requests and virtual
//!   time: Deployment → ReplicaSet (`<name>-<template hash>`, reused when a template comes
//!   back) → Pods; the kubelet (pod status from a [`PodBehaviour`] chosen by a user
//!   function: ready after a delay, crash loop, pending, image pull error, succeed/fail with
//!   a termination message, hang); Job → Pod; garbage collection. See [`controllers`] for
//!   their simplifications.
//! - Fault injection: unavailability (503 or connection error, for every client or one;
//!   its open watches end), `409 Conflict` on the next N writes of an object, `422 Invalid`
//!   with the API server's message for writes of an object while a predicate on the body
//!   holds, latency per client, every open watch ended with `410 Gone`, compaction.
//! - Observation: typed [`Sim::get`]/[`Sim::list`], [`Sim::put`]/[`Sim::put_as`]/
//!   [`Sim::delete`] behind the clients' backs, [`Sim::events`], the request log
//!   ([`Sim::requests`], [`Sim::count`], [`Sim::request_counts`]).
//!
//! # What it does not model
//! No admission (webhooks, defaulting, immutable fields such as a Job's template, schema
//! validation: any JSON object is accepted), no RBAC or authentication, no namespaces as
//! objects and no cluster-scoped types, no scheduler or nodes, no real strategic merge (no
//! `$patch` directives or per-field merge keys beyond the rule above), no `managedFields`
//! written by clients (ignored), no field validation, no dry run and no metadata-only or
//! table responses (both answered `400`), no paging (`limit` is ignored: one page), no
//! `deletecollection`, no `resourceVersionMatch` (lists return the latest state), no
//! periodic bookmarks, no discovery endpoints, no scale subresource, no CRD installation
//! (the Mooring types are built in), no HPA/PDB/Service/Endpoints controllers, no exact
//! maxSurge/maxUnavailable, minReadySeconds or graceful pod termination.
//!
//! The closures given to the simulator ([`Sim::set_pod_behaviour`], [`Sim::reject_writes`])
//! run while it holds its lock: they must not call back into the [`Sim`].

#![forbid(unsafe_code)]

pub mod controllers;
pub mod fields;
mod log;
pub mod resources;
pub mod select;
mod server;
mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use controllers::PodBehaviour;
pub use log::{Request, Verb};
pub use server::{SimBody, SimService};
pub use store::Key;

use store::{Clock, Store};

/// The virtual wall time at which every simulation starts.
pub const EPOCH: &str = "2026-01-01T00:00:00Z";

/// How an unavailable API server fails requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageKind {
    /// `503 Service Unavailable` with a `Status` body.
    ServiceUnavailable,
    /// The connection fails: the client sees a transport error.
    ConnectionError,
}

type BodyCheck = Arc<dyn Fn(&Value) -> Option<String> + Send + Sync>;
type PodFn = Arc<dyn Fn(&Pod) -> PodBehaviour + Send + Sync>;

struct Outage {
    client: Option<String>,
    until: tokio::time::Instant,
    kind: OutageKind,
}

struct Rejection {
    key: Key,
    check: BodyCheck,
}

#[derive(Default)]
struct Faults {
    outages: Vec<Outage>,
    conflicts: Vec<(Key, u32)>,
    rejections: Vec<Rejection>,
    latency: Vec<(Option<String>, Duration)>,
    /// Bumped by [`Sim::expire_watches`]; a watch opened before ends with `410 Gone`.
    watch_expiries: u64,
}

pub(crate) struct State {
    store: Store,
    controllers: controllers::Controllers,
    faults: Faults,
    log: Vec<Request>,
    pod_behaviour: PodFn,
}

pub(crate) struct Inner {
    state: Mutex<State>,
    /// The latest resourceVersion, for watch streams to wake on.
    changes: tokio::sync::watch::Sender<u64>,
    /// Bumped when open watches must re-check faults (outage, forced expiry).
    faults_epoch: tokio::sync::watch::Sender<u64>,
    /// Wakes the timer task when the next timer may have moved.
    timers: Arc<tokio::sync::Notify>,
    start: tokio::time::Instant,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` on the state, then the simulated controllers, then wake the watches.
    fn mutate<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let (result, rv) = {
            let mut state = self.lock();
            let result = f(&mut state);
            controllers::run(&mut state);
            (result, state.store.rv)
        };
        self.changes.send_replace(rv);
        self.timers.notify_one();
        result
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Let the timer task see that the simulation is gone.
        self.timers.notify_one();
    }
}

/// A simulated cluster. Cheap to clone; every clone is the same cluster.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

fn key_of<K: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> Key {
    let resource = resources::find(&K::group(&()), &K::version(&()), &K::plural(&()))
        .unwrap_or_else(|| panic!("the simulator does not serve {}", K::plural(&())));
    Key {
        resource,
        namespace: namespace.into(),
        name: name.into(),
    }
}

impl Sim {
    /// A new, empty cluster. Must be called inside a tokio runtime: it spawns the task that
    /// fires the simulated controllers' timers (it ends when the last clone is dropped).
    pub fn new() -> Self {
        let base: jiff::Timestamp = EPOCH.parse().expect("EPOCH");
        let timers = Arc::new(tokio::sync::Notify::new());
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                store: Store::new(Clock::new(base)),
                controllers: controllers::Controllers::default(),
                faults: Faults::default(),
                log: Vec::new(),
                pod_behaviour: Arc::new(controllers::default_behaviour),
            }),
            changes: tokio::sync::watch::channel(0).0,
            faults_epoch: tokio::sync::watch::channel(0).0,
            timers: timers.clone(),
            start: tokio::time::Instant::now(),
        });
        tokio::spawn(controllers::timer_task(Arc::downgrade(&inner), timers));
        Sim { inner }
    }

    /// A `kube::Client` talking to this cluster as `identity` (the name in the request log,
    /// the default field manager, the target of per-client faults).
    pub fn client(&self, identity: &str) -> kube::Client {
        kube::Client::new(
            server::SimService::new(self.inner.clone(), identity),
            "default",
        )
    }

    /// The service behind [`Sim::client`], to wrap in tower layers of one's own.
    pub fn service(&self, identity: &str) -> SimService {
        server::SimService::new(self.inner.clone(), identity)
    }

    /// The current virtual wall time (a fixed [`EPOCH`] plus tokio's elapsed time): hand it
    /// to the code under test as its clock.
    pub fn now(&self) -> jiff::Timestamp {
        self.inner.lock().store.clock.now()
    }

    /// Virtual time elapsed since the simulation started.
    pub fn elapsed(&self) -> Duration {
        store::since(self.inner.start)
    }

    /// How the kubelet treats new pods (decided once per pod, when first seen).
    pub fn set_pod_behaviour(&self, f: impl Fn(&Pod) -> PodBehaviour + Send + Sync + 'static) {
        self.inner.mutate(|s| s.pod_behaviour = Arc::new(f));
    }

    /// The object, typed.
    pub fn get<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let key = key_of::<K>(namespace, name);
        let value = self.inner.lock().store.get(&key).cloned()?;
        Some(
            serde_json::from_value(value.clone())
                .unwrap_or_else(|e| panic!("stored object deserializes: {e}: {value:#}")),
        )
    }

    /// All objects of a type, in one namespace or (`None`) all.
    pub fn list<K>(&self, namespace: Option<&str>) -> Vec<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let key = key_of::<K>("", "");
        self.inner
            .lock()
            .store
            .list(key.resource, namespace)
            .into_iter()
            .map(|(_, v)| serde_json::from_value(v).expect("stored object deserializes"))
            .collect()
    }

    /// Create or overwrite an object directly, status included, as no client would (e.g. a
    /// Secret, or a Deployment with a status). Returns it as stored. No field manager owns
    /// what it sets (see [`Sim::put_as`]). Owner references must name live objects, or the
    /// garbage collector deletes it at once, as in a real cluster.
    pub fn put<K>(&self, object: &K) -> K
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        self.put_with(None, object)
    }

    /// [`Sim::put`], with `manager` owning the fields it changes (an `Update`, like a
    /// `kubectl edit`): a later apply of them by another manager conflicts unless forced.
    pub fn put_as<K>(&self, manager: &str, object: &K) -> K
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        self.put_with(Some(manager), object)
    }

    fn put_with<K>(&self, manager: Option<&str>, object: &K) -> K
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let meta = object.meta();
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let name = meta.name.clone().expect("put: the object needs a name");
        let key = key_of::<K>(&namespace, &name);
        let mut value = serde_json::to_value(object).expect("serializable");
        let stored = self.inner.mutate(|s| {
            let old = s.store.get(&key).cloned();
            if let Some(manager) = manager {
                if let Some(old) = &old {
                    value["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
                }
                let now = s.store.now();
                server::write::record_update(old.as_ref(), &mut value, manager, None, &now);
            }
            match old {
                Some(_) => s.store.update(&key, value).unwrap_or(Value::Null),
                None => s.store.insert(key.clone(), value),
            }
        });
        serde_json::from_value(stored).expect("stored object deserializes")
    }

    /// Delete an object as a client would (finalizers respected, dependents collected).
    pub fn delete<K: Resource<DynamicType = ()>>(&self, namespace: &str, name: &str) {
        let key = key_of::<K>(namespace, name);
        self.inner.mutate(|s| {
            s.store.delete(&key);
        });
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.inner.lock().log.clone()
    }

    /// How many requests so far, by (client, verb, resource, subresource).
    pub fn request_counts(&self) -> BTreeMap<(String, Verb, String, Option<String>), usize> {
        let mut counts = BTreeMap::new();
        for r in self.inner.lock().log.iter() {
            *counts
                .entry((
                    r.client.clone(),
                    r.verb,
                    r.resource.clone(),
                    r.subresource.clone(),
                ))
                .or_insert(0) += 1;
        }
        counts
    }

    /// The `events.k8s.io/v1` Events recorded so far (what kube's `Recorder` writes), in
    /// the order they were last written.
    pub fn events(&self) -> Vec<k8s_openapi::api::events::v1::Event> {
        let mut events: Vec<k8s_openapi::api::events::v1::Event> = self.list(None);
        events.sort_by_key(|e| {
            e.metadata
                .resource_version
                .as_deref()
                .and_then(|rv| rv.parse::<u64>().ok())
                .unwrap_or(0)
        });
        events
    }

    /// How many requests so far match `f`.
    pub fn count(&self, f: impl Fn(&Request) -> bool) -> usize {
        self.inner.lock().log.iter().filter(|r| f(r)).count()
    }

    /// The API server is unavailable for `duration` of virtual time, for every client
    /// (`client` None) or for one client. Open watches of the affected clients end.
    pub fn unavailable(&self, client: Option<&str>, duration: Duration, kind: OutageKind) {
        let until = tokio::time::Instant::now() + duration;
        self.inner.lock().faults.outages.push(Outage {
            client: client.map(str::to_string),
            until,
            kind,
        });
        self.inner.faults_epoch.send_modify(|e| *e += 1);
    }

    /// The next `n` writes of the object (any verb that writes, any subresource) fail with
    /// `409 Conflict`, as if someone else had written it first.
    pub fn conflict_next_writes<K: Resource<DynamicType = ()>>(
        &self,
        namespace: &str,
        name: &str,
        n: u32,
    ) {
        let key = key_of::<K>(namespace, name);
        self.inner.lock().faults.conflicts.push((key, n));
    }

    /// Writes of the object fail with `422 Invalid` while `check` returns a cause for the
    /// request body, e.g. `spec.template.spec.containers[0].env[1].name: Duplicate value:
    /// "X"`; the message is prefixed like the API server's (`Deployment.apps "iris" is
    /// invalid: ...`).
    pub fn reject_writes<K: Resource<DynamicType = ()>>(
        &self,
        namespace: &str,
        name: &str,
        check: impl Fn(&Value) -> Option<String> + Send + Sync + 'static,
    ) {
        let key = key_of::<K>(namespace, name);
        self.inner.lock().faults.rejections.push(Rejection {
            key,
            check: Arc::new(check),
        });
    }

    /// Remove every rejection rule.
    pub fn clear_rejections(&self) {
        self.inner.lock().faults.rejections.clear();
    }

    /// Every response to `client` (or to all, `None`) takes `latency` of virtual time.
    pub fn set_latency(&self, client: Option<&str>, latency: Duration) {
        let mut state = self.inner.lock();
        let client = client.map(str::to_string);
        state.faults.latency.retain(|(c, _)| *c != client);
        state.faults.latency.push((client, latency));
    }

    /// Forget the change history: watches resuming from an older resourceVersion get
    /// `410 Gone` and must relist.
    pub fn compact(&self) {
        self.inner.lock().store.compact();
    }

    /// End every open watch with a `410 Gone` `ERROR` event, as the API server does to a
    /// watch that fell too far behind; kube's watcher relists.
    pub fn expire_watches(&self) {
        self.inner.lock().faults.watch_expiries += 1;
        self.inner.faults_epoch.send_modify(|e| *e += 1);
    }

    /// How many changes the watch history keeps (default 10 000); older resourceVersions
    /// get `410 Gone`.
    pub fn set_watch_history(&self, changes: usize) {
        self.inner.lock().store.history_limit = changes.max(1);
    }
}
