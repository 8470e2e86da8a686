//! The objects, the global resourceVersion counter, the change history the watches read,
//! and the garbage collector.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use serde_json::{Value, json};

use crate::resources::{self, ResourceId};

/// Wall-clock time that follows tokio's (possibly paused) clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: jiff::Timestamp,
    start: tokio::time::Instant,
}

impl Clock {
    pub fn new(base: jiff::Timestamp) -> Self {
        Clock {
            base,
            start: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> jiff::Timestamp {
        self.at(tokio::time::Instant::now())
    }

    pub fn at(&self, instant: tokio::time::Instant) -> jiff::Timestamp {
        let elapsed = instant.saturating_duration_since(self.start);
        self.base
            .checked_add(jiff::SignedDuration::try_from(elapsed).unwrap_or_default())
            .unwrap_or(self.base)
    }
}

/// RFC 3339 with whole seconds, as the API server writes `metav1.Time`.
pub fn rfc3339(t: jiff::Timestamp) -> String {
    jiff::Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub resource: ResourceId,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One write, as the watches deliver it.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub kind: ChangeType,
    pub resource: ResourceId,
    pub namespace: String,
    pub old: Option<Value>,
    pub object: Value,
}

pub struct Store {
    pub objects: BTreeMap<Key, Value>,
    pub rv: u64,
    pub history: VecDeque<Change>,
    pub history_limit: usize,
    /// A watch from a resourceVersion older than this gets `410 Gone`.
    pub compacted_rv: u64,
    uid_seq: u64,
    pub clock: Clock,
}

fn meta_str<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v["metadata"][field].as_str()
}

pub fn uid_of(v: &Value) -> &str {
    meta_str(v, "uid").unwrap_or("")
}

/// The object without metadata and status: a change here bumps `generation`.
fn spec_part(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

impl Store {
    pub fn new(clock: Clock) -> Self {
        Store {
            objects: BTreeMap::new(),
            rv: 1,
            history: VecDeque::new(),
            history_limit: 10_000,
            compacted_rv: 0,
            uid_seq: 0,
            clock,
        }
    }

    pub fn now(&self) -> String {
        rfc3339(self.clock.now())
    }

    /// A deterministic pseudo-random suffix (the API server's `generateName` alphabet).
    pub fn suffix(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        self.uid_seq += 1;
        let mut x = self.uid_seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5851_F42D_4C95_7F2D;
        (0..len)
            .map(|_| {
                x ^= x >> 29;
                x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
                ALPHABET[(x >> 40) as usize % ALPHABET.len()] as char
            })
            .collect()
    }

    fn next_uid(&mut self) -> String {
        self.uid_seq += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.uid_seq)
    }

    fn record(&mut self, kind: ChangeType, key: &Key, old: Option<Value>, object: Value) {
        self.history.push_back(Change {
            rv: self.rv,
            kind,
            resource: key.resource,
            namespace: key.namespace.clone(),
            old,
            object,
        });
        while self.history.len() > self.history_limit {
            if let Some(c) = self.history.pop_front() {
                self.compacted_rv = self.compacted_rv.max(c.rv);
            }
        }
    }

    /// Forget the change history: watches from any older resourceVersion get `410 Gone`.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted_rv = self.rv;
    }

    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Store a new object: the server sets uid, resourceVersion, generation and
    /// creationTimestamp. The caller has checked that the name is free.
    pub fn insert(&mut self, key: Key, mut object: Value) -> Value {
        let rt = resources::get(key.resource);
        self.rv += 1;
        let uid = self.next_uid();
        let now = self.now();
        let o = object.as_object_mut().expect("an object");
        o.insert("apiVersion".into(), json!(rt.api_version()));
        o.insert("kind".into(), json!(rt.kind));
        let meta = o
            .entry("metadata")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("metadata is an object");
        meta.insert("name".into(), json!(key.name));
        meta.insert("namespace".into(), json!(key.namespace));
        meta.insert("uid".into(), json!(uid));
        meta.insert("resourceVersion".into(), json!(self.rv.to_string()));
        meta.insert("generation".into(), json!(1));
        meta.insert("creationTimestamp".into(), json!(now));
        meta.remove("deletionTimestamp");
        self.objects.insert(key.clone(), object.clone());
        self.record(ChangeType::Added, &key, None, object.clone());
        object
    }

    /// Replace a stored object. Server-owned metadata is kept; `generation` is bumped on a
    /// change outside metadata and status. A write that changes nothing is not a write (no
    /// new resourceVersion, no event). Removing the last finalizer of an object being
    /// deleted deletes it. Returns the object as stored (or as deleted).
    pub fn update(&mut self, key: &Key, mut object: Value) -> Option<Value> {
        let old = self.objects.get(key)?.clone();
        {
            let meta = object["metadata"].as_object_mut()?;
            for field in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
            ] {
                match old["metadata"].get(field) {
                    Some(v) => meta.insert(field.into(), v.clone()),
                    None => meta.remove(field),
                };
            }
            meta.insert(
                "resourceVersion".into(),
                old["metadata"]["resourceVersion"].clone(),
            );
            for empty in ["labels", "annotations", "finalizers", "ownerReferences"] {
                let is_empty = match meta.get(empty) {
                    Some(Value::Object(m)) => m.is_empty(),
                    Some(Value::Array(a)) => a.is_empty(),
                    Some(Value::Null) => true,
                    _ => false,
                };
                if is_empty {
                    meta.remove(empty);
                }
            }
        }
        object["apiVersion"] = old["apiVersion"].clone();
        object["kind"] = old["kind"].clone();
        let deleting = old["metadata"].get("deletionTimestamp").is_some();
        let finalizers_left = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if deleting && !finalizers_left {
            return self.remove(key);
        }
        if object == old {
            return Some(old);
        }
        if spec_part(&object) != spec_part(&old) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            object["metadata"]["generation"] = json!(g);
        }
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects.insert(key.clone(), object.clone());
        self.record(ChangeType::Modified, key, Some(old), object.clone());
        Some(object)
    }

    /// Remove an object at once (no finalizers consulted).
    fn remove(&mut self, key: &Key) -> Option<Value> {
        let mut old = self.objects.remove(key)?;
        self.rv += 1;
        let previous = old.clone();
        old["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(ChangeType::Deleted, key, Some(previous), old.clone());
        Some(old)
    }

    /// Delete as the API server does: with finalizers the object only gets a
    /// `deletionTimestamp`; without, it is removed. Returns the final state.
    pub fn delete(&mut self, key: &Key) -> Option<Value> {
        let old = self.objects.get(key)?.clone();
        let has_finalizers = old["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if !has_finalizers {
            return self.remove(key);
        }
        if old["metadata"].get("deletionTimestamp").is_some() {
            return Some(old);
        }
        let mut new = old.clone();
        let now = self.now();
        new["metadata"]["deletionTimestamp"] = json!(now);
        new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        self.rv += 1;
        new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects.insert(key.clone(), new.clone());
        self.record(ChangeType::Modified, key, Some(old), new.clone());
        Some(new)
    }

    /// Objects of one type, optionally in one namespace.
    pub fn list(&self, resource: ResourceId, namespace: Option<&str>) -> Vec<(Key, Value)> {
        self.objects
            .iter()
            .filter(|(k, _)| k.resource == resource && namespace.is_none_or(|ns| ns == k.namespace))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Objects of `resource` in `namespace` whose controller is the object with `uid`.
    pub fn controlled_by(
        &self,
        resource: ResourceId,
        namespace: &str,
        uid: &str,
    ) -> Vec<(Key, Value)> {
        self.list(resource, Some(namespace))
            .into_iter()
            .filter(|(_, v)| {
                v["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|r| r["uid"] == uid && r["controller"] == true)
                    })
            })
            .collect()
    }

    /// Background garbage collection: delete every object all of whose owners are gone,
    /// until none is left (transitively). Returns whether anything was deleted.
    pub fn collect_garbage(&mut self) -> bool {
        let mut any = false;
        loop {
            let live: BTreeSet<String> = self
                .objects
                .values()
                .map(|v| uid_of(v).to_string())
                .collect();
            let orphans: Vec<Key> = self
                .objects
                .iter()
                .filter(|(_, v)| v["metadata"].get("deletionTimestamp").is_none())
                .filter(|(_, v)| {
                    v["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|refs| {
                            !refs.is_empty()
                                && refs
                                    .iter()
                                    .all(|r| !live.contains(r["uid"].as_str().unwrap_or("")))
                        })
                })
                .map(|(k, _)| k.clone())
                .collect();
            if orphans.is_empty() {
                return any;
            }
            for key in orphans {
                self.delete(&key);
            }
            any = true;
        }
    }

    /// Remove the owner reference to `owner_uid` from every dependent (orphan deletion).
    pub fn orphan_dependents(&mut self, owner_uid: &str) {
        let dependents: Vec<(Key, Value)> = self
            .objects
            .iter()
            .filter(|(_, v)| {
                v["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner_uid))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, mut v) in dependents {
            if let Some(refs) = v["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| r["uid"] != owner_uid);
            }
            self.update(&key, v);
        }
    }
}

/// Time since `instant` as a `Duration`, for timers.
pub fn since(instant: tokio::time::Instant) -> Duration {
    tokio::time::Instant::now().saturating_duration_since(instant)
}
