//! Session memory: the earlier turns of a conversation, keyed by a session id and owned by
//! the API key that created the session.
//!
//! Three stores: in-process (a bounded LRU over sessions; the default), Redis (one list
//! per session, so several replicas share memory and it survives restarts) and PostgreSQL
//! (a durable history with titles and timestamps). All keep at most `max_turns` turns and
//! `max_chars` characters per session, dropping the oldest turns first, and forget a
//! session `ttl` after its last use.

pub mod in_process;
pub mod postgres_store;
pub mod redis_store;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::{ChatMessage, Role};

/// Errors of the session stores.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    #[error("session store holds unreadable data: {0}")]
    Corrupt(String),
}

pub type Result<T, E = MemoryError> = std::result::Result<T, E>;

/// Bounds of every session.
#[derive(Debug, Clone, Copy)]
pub struct MemoryLimits {
    pub max_turns: usize,
    pub max_chars: usize,
    pub ttl: Duration,
}

/// A stored session, oldest message first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub messages: Vec<ChatMessage>,
}

/// Counts shown to clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    pub total_messages: usize,
    pub human_messages: usize,
    pub ai_messages: usize,
}

impl Session {
    pub fn stats(&self) -> MemoryStats {
        let count = |role| self.messages.iter().filter(|m| m.role == role).count();
        MemoryStats {
            total_messages: self.messages.len(),
            human_messages: count(Role::User),
            ai_messages: count(Role::Assistant),
        }
    }

    /// Turns (user + assistant pairs) held.
    pub fn turns(&self) -> usize {
        self.messages.len() / 2
    }
}

/// One page of an owner's session ids, in id order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SessionPage {
    pub ids: Vec<String>,
    /// The cursor of the next page (the last id of this one), `None` on the last page.
    pub next: Option<String>,
}

impl SessionPage {
    /// The page of `sorted` ids after `after`, at most `limit` long.
    pub fn of_sorted(sorted: Vec<String>, after: Option<&str>, limit: usize) -> Self {
        let mut rest: Vec<String> = sorted
            .into_iter()
            .filter(|id| after.is_none_or(|after| id.as_str() > after))
            .take(limit.saturating_add(1))
            .collect();
        let more = rest.len() > limit;
        rest.truncate(limit);
        let next = if more { rest.last().cloned() } else { None };
        SessionPage { ids: rest, next }
    }
}

/// The stores' common interface. `owner` is the caller's API key id ("anonymous" without
/// keys); a session owned by someone else behaves exactly like a missing one.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// The session's messages; `None` when missing, expired or owned by another key.
    async fn load(&self, owner: &str, id: &str) -> Result<Option<Session>>;

    /// Appends one turn, creating the session if needed, trims it to the limits and
    /// refreshes its TTL. Returns the session as stored, or `None` when the id belongs to
    /// another owner.
    async fn append(
        &self,
        owner: &str,
        id: &str,
        user: &str,
        assistant: &str,
    ) -> Result<Option<Session>>;

    /// Whether a live session has this id, whoever owns it: a request must not spend a
    /// generation on a session it will not be allowed to write.
    async fn exists(&self, id: &str) -> Result<bool>;

    /// Deletes the session; false when missing or owned by another key.
    async fn delete(&self, owner: &str, id: &str) -> Result<bool>;

    /// Ids of the owner's live sessions.
    async fn list(&self, owner: &str) -> Result<Vec<String>>;

    /// At most `limit` ids of the owner's live sessions, in id order, after the cursor
    /// `after` (an id from the previous page). Stores that can page natively override it.
    async fn list_page(
        &self,
        owner: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<SessionPage> {
        Ok(SessionPage::of_sorted(
            self.list(owner).await?,
            after,
            limit,
        ))
    }

    /// Whether the store answers (for readiness).
    async fn ping(&self) -> Result<()>;
}

/// How many of the oldest messages to drop so `messages` fits the limits. Always drops
/// whole turns (pairs) so a session never starts with an assistant message.
pub fn overflow(messages: &[ChatMessage], limits: &MemoryLimits) -> usize {
    let mut drop = messages.len().saturating_sub(limits.max_turns * 2);
    drop += drop % 2;
    let mut chars: usize = messages[drop.min(messages.len())..]
        .iter()
        .map(|m| m.content.chars().count())
        .sum();
    while chars > limits.max_chars && drop < messages.len() {
        let turn_end = (drop + 2).min(messages.len());
        chars -= messages[drop..turn_end]
            .iter()
            .map(|m| m.content.chars().count())
            .sum::<usize>();
        drop = turn_end;
    }
    drop.min(messages.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turns(n: usize, len: usize) -> Vec<ChatMessage> {
        (0..n)
            .flat_map(|i| {
                [
                    ChatMessage::new(Role::User, format!("{i}").repeat(len)),
                    ChatMessage::new(Role::Assistant, "a".repeat(len)),
                ]
            })
            .collect()
    }

    fn limits(max_turns: usize, max_chars: usize) -> MemoryLimits {
        MemoryLimits {
            max_turns,
            max_chars,
            ttl: Duration::from_secs(60),
        }
    }

    #[test]
    fn pages_follow_the_cursor_and_end_without_one() {
        let ids: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let first = SessionPage::of_sorted(ids.clone(), None, 2);
        assert_eq!(
            (first.ids.as_slice(), first.next.as_deref()),
            (&["a".to_string(), "b".into()][..], Some("b"))
        );
        let last = SessionPage::of_sorted(ids.clone(), Some("c"), 2);
        assert_eq!(last.ids, ["d", "e"]);
        assert_eq!(last.next, None);
        assert!(SessionPage::of_sorted(ids, Some("e"), 2).ids.is_empty());
    }

    #[test]
    fn turn_limit_drops_oldest_pairs() {
        assert_eq!(overflow(&turns(5, 1), &limits(3, 1000)), 4);
        assert_eq!(overflow(&turns(2, 1), &limits(3, 1000)), 0);
    }

    #[test]
    fn char_budget_drops_whole_turns_oldest_first() {
        // 4 turns of 20 chars; a budget of 45 keeps the last two.
        assert_eq!(overflow(&turns(4, 10), &limits(10, 45)), 4);
    }

    #[test]
    fn a_single_turn_over_budget_is_dropped() {
        assert_eq!(overflow(&turns(1, 100), &limits(10, 50)), 2);
    }
}
