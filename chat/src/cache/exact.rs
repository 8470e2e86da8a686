//! The exact cache: same caller, model, parameters and (normalised) prompt → same answer.

use super::{CacheRequest, Counters, Expiry};
use lru::LruCache;
use sha2::{Digest, Sha256};
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

/// An LRU of answers keyed by a SHA-256 of (key id, model, parameters, normalised prompt).
/// Requests with a session never hit or fill it: their answer depends on the conversation.
pub struct ExactCache<V> {
    entries: Mutex<LruCache<[u8; 32], Expiry<V>>>,
    ttl: Option<Duration>,
    pub(super) counters: Counters,
}

impl<V: Clone> ExactCache<V> {
    /// At most `max_entries` answers (at least 1), each kept for `ttl` (`None`: until evicted).
    pub fn new(max_entries: usize, ttl: Option<Duration>) -> Self {
        let capacity = NonZeroUsize::new(max_entries).unwrap_or(NonZeroUsize::MIN);
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
            ttl,
            counters: Counters::default(),
        }
    }

    /// The cached answer for this request, if any. Counts a hit or a miss (not for requests
    /// with a session, which bypass the cache).
    pub fn get(&self, request: &CacheRequest<'_>) -> Option<V> {
        if !request.cacheable() {
            return None;
        }
        let key = cache_key(request);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let found = match entries.get(&key) {
            Some(entry) if entry.is_fresh() => Some(entry.value.clone()),
            Some(_) => {
                entries.pop(&key);
                None
            }
            None => None,
        };
        self.counters.record(found.is_some());
        found
    }

    /// Stores the answer to this request (ignored for requests with a session).
    pub fn insert(&self, request: &CacheRequest<'_>, value: V) {
        if !request.cacheable() {
            return;
        }
        let entry = Expiry::new(value, self.ttl);
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(cache_key(request), entry);
    }

    /// Number of stored answers (expired ones included until they are looked up or evicted).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Lower case, whitespace runs collapsed to one space, trimmed: "What  is AI? " and
/// "what is ai?" share an entry.
pub fn normalise_prompt(prompt: &str) -> String {
    prompt
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Each field is length-prefixed so no two different requests hash the same bytes
/// (`("ab", "c")` vs `("a", "bc")`).
fn cache_key(request: &CacheRequest<'_>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for field in [
        request.key.as_str(),
        request.model,
        request.params,
        &normalise_prompt(request.prompt),
    ] {
        hasher.update((field.len() as u64).to_le_bytes());
        hasher.update(field.as_bytes());
    }
    hasher.finalize().into()
}
