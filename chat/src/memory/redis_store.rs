//! Redis session store: replicas share memory and it outlives restarts.
//!
//! Layout, under a configurable prefix (default `mooring:chat`):
//! - `{prefix}:session:{id}` — a list of JSON messages, oldest first;
//! - `{prefix}:session:{id}:owner` — the owning key id;
//! - `{prefix}:owner:{owner}` — a set of the owner's session ids (for listing).
//!
//! Every use refreshes the TTL of all three, so an idle session disappears on its own.

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::{MemoryError, MemoryLimits, Result, Session, SessionStore, overflow};
use crate::backend::{ChatMessage, Role};

pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
    limits: MemoryLimits,
}

fn unavailable(e: redis::RedisError) -> MemoryError {
    MemoryError::Unavailable(e.to_string())
}

impl RedisStore {
    /// Connects (a failure names the flag, since the URL comes from it).
    pub async fn connect(url: &str, prefix: &str, limits: MemoryLimits) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| MemoryError::Unavailable(format!("--chat-redis-url: {e}")))?;
        let connection = ConnectionManager::new(client)
            .await
            .map_err(|e| MemoryError::Unavailable(format!("--chat-redis-url: {e}")))?;
        Ok(RedisStore {
            connection,
            prefix: prefix.to_string(),
            limits,
        })
    }

    fn list_key(&self, id: &str) -> String {
        format!("{}:session:{id}", self.prefix)
    }
    fn owner_key(&self, id: &str) -> String {
        format!("{}:session:{id}:owner", self.prefix)
    }
    fn owner_set(&self, owner: &str) -> String {
        format!("{}:owner:{owner}", self.prefix)
    }
    fn ttl_secs(&self) -> i64 {
        self.limits.ttl.as_secs().max(1) as i64
    }

    async fn owner_of(&self, id: &str) -> Result<Option<String>> {
        let mut c = self.connection.clone();
        c.get(self.owner_key(id)).await.map_err(unavailable)
    }

    async fn read(&self, id: &str) -> Result<Vec<ChatMessage>> {
        let mut c = self.connection.clone();
        let raw: Vec<String> = c
            .lrange(self.list_key(id), 0, -1)
            .await
            .map_err(unavailable)?;
        raw.iter()
            .map(|m| {
                serde_json::from_str(m)
                    .map_err(|e| MemoryError::Corrupt(format!("{}: {e}", self.list_key(id))))
            })
            .collect()
    }

    async fn touch(&self, owner: &str, id: &str) -> Result<()> {
        let mut c = self.connection.clone();
        redis::pipe()
            .expire(self.list_key(id), self.ttl_secs())
            .expire(self.owner_key(id), self.ttl_secs())
            .expire(self.owner_set(owner), self.ttl_secs())
            .query_async::<()>(&mut c)
            .await
            .map_err(unavailable)
    }
}

fn encode(message: &ChatMessage) -> String {
    serde_json::to_string(message).expect("a message always serialises")
}

#[async_trait::async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, owner: &str, id: &str) -> Result<Option<Session>> {
        if self.owner_of(id).await?.as_deref() != Some(owner) {
            return Ok(None);
        }
        let messages = self.read(id).await?;
        self.touch(owner, id).await?;
        Ok(Some(Session {
            id: id.to_string(),
            messages,
        }))
    }

    async fn append(
        &self,
        owner: &str,
        id: &str,
        user: &str,
        assistant: &str,
    ) -> Result<Option<Session>> {
        let mut c = self.connection.clone();
        // SET NX claims a new session atomically; an existing one must already be ours.
        let claimed: bool = redis::cmd("SET")
            .arg(self.owner_key(id))
            .arg(owner)
            .arg("NX")
            .arg("EX")
            .arg(self.ttl_secs())
            .query_async::<Option<String>>(&mut c)
            .await
            .map_err(unavailable)?
            .is_some();
        if !claimed && self.owner_of(id).await?.as_deref() != Some(owner) {
            return Ok(None);
        }
        redis::pipe()
            .rpush(
                self.list_key(id),
                &[
                    encode(&ChatMessage::new(Role::User, user)),
                    encode(&ChatMessage::new(Role::Assistant, assistant)),
                ],
            )
            .sadd(self.owner_set(owner), id)
            .query_async::<()>(&mut c)
            .await
            .map_err(unavailable)?;
        let mut messages = self.read(id).await?;
        let drop = overflow(&messages, &self.limits);
        if drop > 0 {
            let _: () = c
                .ltrim(self.list_key(id), drop as isize, -1)
                .await
                .map_err(unavailable)?;
            messages.drain(..drop);
        }
        self.touch(owner, id).await?;
        Ok(Some(Session {
            id: id.to_string(),
            messages,
        }))
    }

    async fn exists(&self, id: &str) -> Result<bool> {
        Ok(self.owner_of(id).await?.is_some())
    }

    async fn delete(&self, owner: &str, id: &str) -> Result<bool> {
        if self.owner_of(id).await?.as_deref() != Some(owner) {
            return Ok(false);
        }
        let mut c = self.connection.clone();
        redis::pipe()
            .del(self.list_key(id))
            .del(self.owner_key(id))
            .srem(self.owner_set(owner), id)
            .query_async::<()>(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(true)
    }

    async fn list(&self, owner: &str) -> Result<Vec<String>> {
        let mut c = self.connection.clone();
        let mut ids: Vec<String> = c
            .smembers(self.owner_set(owner))
            .await
            .map_err(unavailable)?;
        ids.sort();
        let mut live = Vec::with_capacity(ids.len());
        for id in ids {
            // Expired sessions linger in the set until listed; prune them here.
            if self.owner_of(&id).await?.as_deref() == Some(owner) {
                live.push(id);
            } else {
                let _: () = c
                    .srem(self.owner_set(owner), &id)
                    .await
                    .map_err(unavailable)?;
            }
        }
        Ok(live)
    }

    async fn ping(&self) -> Result<()> {
        let mut c = self.connection.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}
