//! In-process session store: an LRU over sessions, so memory stays bounded however many
//! session ids clients invent; expired sessions are dropped when touched.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Instant;

use lru::LruCache;

use super::{MemoryLimits, Result, Session, SessionStore, overflow};
use crate::backend::{ChatMessage, Role};

struct Entry {
    owner: String,
    session: Session,
    last_used: Instant,
}

pub struct InProcessStore {
    sessions: Mutex<LruCache<String, Entry>>,
    limits: MemoryLimits,
}

impl InProcessStore {
    pub fn new(max_sessions: NonZeroUsize, limits: MemoryLimits) -> Self {
        InProcessStore {
            sessions: Mutex::new(LruCache::new(max_sessions)),
            limits,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Entry>> {
        // A panic while holding the lock cannot leave an entry half-written (every update
        // is a single assignment), so a poisoned lock is still usable.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes the entry if expired; true when a live entry remains.
    fn live(&self, sessions: &mut LruCache<String, Entry>, id: &str) -> bool {
        let expired = match sessions.peek(id) {
            Some(entry) => entry.last_used.elapsed() > self.limits.ttl,
            None => return false,
        };
        if expired {
            sessions.pop(id);
        }
        !expired
    }
}

#[async_trait::async_trait]
impl SessionStore for InProcessStore {
    async fn load(&self, owner: &str, id: &str) -> Result<Option<Session>> {
        let mut sessions = self.lock();
        if !self.live(&mut sessions, id) {
            return Ok(None);
        }
        let entry = sessions.get_mut(id).expect("checked live");
        if entry.owner != owner {
            return Ok(None);
        }
        entry.last_used = Instant::now();
        Ok(Some(entry.session.clone()))
    }

    async fn append(
        &self,
        owner: &str,
        id: &str,
        user: &str,
        assistant: &str,
    ) -> Result<Option<Session>> {
        let mut sessions = self.lock();
        if self.live(&mut sessions, id) {
            let entry = sessions.get_mut(id).expect("checked live");
            if entry.owner != owner {
                return Ok(None);
            }
        } else {
            sessions.put(
                id.to_string(),
                Entry {
                    owner: owner.to_string(),
                    session: Session {
                        id: id.to_string(),
                        messages: Vec::new(),
                    },
                    last_used: Instant::now(),
                },
            );
        }
        let entry = sessions.get_mut(id).expect("present");
        entry
            .session
            .messages
            .push(ChatMessage::new(Role::User, user));
        entry
            .session
            .messages
            .push(ChatMessage::new(Role::Assistant, assistant));
        let drop = overflow(&entry.session.messages, &self.limits);
        entry.session.messages.drain(..drop);
        entry.last_used = Instant::now();
        Ok(Some(entry.session.clone()))
    }

    async fn exists(&self, id: &str) -> Result<bool> {
        let mut sessions = self.lock();
        Ok(self.live(&mut sessions, id))
    }

    async fn delete(&self, owner: &str, id: &str) -> Result<bool> {
        let mut sessions = self.lock();
        if !self.live(&mut sessions, id) {
            return Ok(false);
        }
        if sessions.peek(id).is_some_and(|e| e.owner == owner) {
            sessions.pop(id);
            return Ok(true);
        }
        Ok(false)
    }

    async fn list(&self, owner: &str) -> Result<Vec<String>> {
        let sessions = self.lock();
        let mut ids: Vec<String> = sessions
            .iter()
            .filter(|(_, e)| e.owner == owner && e.last_used.elapsed() <= self.limits.ttl)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        Ok(ids)
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn store(max_sessions: usize, ttl: Duration) -> InProcessStore {
        InProcessStore::new(
            NonZeroUsize::new(max_sessions).unwrap(),
            MemoryLimits {
                max_turns: 2,
                max_chars: 1000,
                ttl,
            },
        )
    }

    #[tokio::test]
    async fn turns_are_kept_in_order_and_bounded() {
        let s = store(10, Duration::from_secs(60));
        for i in 0..3 {
            s.append("k", "s1", &format!("q{i}"), &format!("a{i}"))
                .await
                .unwrap();
        }
        let session = s.load("k", "s1").await.unwrap().unwrap();
        let contents: Vec<_> = session
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .collect();
        assert_eq!(contents, ["q1", "a1", "q2", "a2"]);
        assert_eq!(session.stats().human_messages, 2);
    }

    #[tokio::test]
    async fn another_owner_sees_nothing_and_cannot_write() {
        let s = store(10, Duration::from_secs(60));
        s.append("alice", "s1", "q", "a").await.unwrap();
        assert!(s.load("bob", "s1").await.unwrap().is_none());
        assert!(s.append("bob", "s1", "q", "a").await.unwrap().is_none());
        assert!(!s.delete("bob", "s1").await.unwrap());
        assert!(s.list("bob").await.unwrap().is_empty());
        assert_eq!(s.list("alice").await.unwrap(), ["s1"]);
        assert!(s.delete("alice", "s1").await.unwrap());
        assert!(s.load("alice", "s1").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn least_recently_used_session_is_evicted() {
        let s = store(2, Duration::from_secs(60));
        s.append("k", "a", "q", "a").await.unwrap();
        s.append("k", "b", "q", "a").await.unwrap();
        s.load("k", "a").await.unwrap();
        s.append("k", "c", "q", "a").await.unwrap();
        assert_eq!(s.list("k").await.unwrap(), ["a", "c"]);
    }

    #[tokio::test]
    async fn expired_sessions_are_forgotten() {
        let s = store(2, Duration::ZERO);
        s.append("k", "a", "q", "a").await.unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(s.load("k", "a").await.unwrap().is_none());
    }
}
