//! PostgreSQL session store: a durable history, shared by replicas.
//!
//! Two tables (see `chat/migrations/`, embedded and applied at start): `chat_sessions` (id,
//! owner, title from the first prompt, created, last used) and `chat_turns` (one row per
//! question + answer, numbered within the session). Semantics match the Redis store: a
//! session idle longer than the TTL is gone (reads ignore it at once; a sweeper deletes it
//! later), at most `max_turns` turns and `max_chars` characters are kept, oldest first out.
//!
//! An append locks its session row (`SELECT … FOR UPDATE`) for the length of one
//! transaction, so concurrent turns on one session are serialised and none is lost.

use std::borrow::Cow;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};

use super::{MemoryError, MemoryLimits, Result, Session, SessionPage, SessionStore, overflow};
use crate::backend::{ChatMessage, Role};

/// Characters of the first prompt kept as the session's title.
const TITLE_CHARS: usize = 80;

pub struct PostgresStore {
    pool: PgPool,
    limits: MemoryLimits,
}

fn unavailable(e: sqlx::Error) -> MemoryError {
    MemoryError::Unavailable(e.to_string())
}

/// The migrations compiled into the binary (no files needed at run time).
#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> BoxFuture<'static, std::result::Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async {
            Ok(vec![Migration::new(
                1,
                Cow::Borrowed("sessions"),
                MigrationType::Simple,
                Cow::Borrowed(include_str!("../../migrations/0001_sessions.sql")),
                false,
            )])
        })
    }
}

impl PostgresStore {
    /// Connects, applies the migrations, and starts the TTL sweeper (needs a tokio runtime).
    /// A failure names the flag, since the URL comes from it.
    pub async fn connect(url: &str, limits: MemoryLimits) -> Result<Self> {
        let flag = |e: &dyn std::fmt::Display| {
            MemoryError::Unavailable(format!("--chat-postgres-url: {e}"))
        };
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| flag(&e))?;
        let migrator = Migrator::new(Embedded).await.map_err(|e| flag(&e))?;
        migrator.run(&pool).await.map_err(|e| flag(&e))?;
        let store = PostgresStore { pool, limits };
        store.spawn_sweeper();
        Ok(store)
    }

    fn ttl_secs(&self) -> f64 {
        self.limits.ttl.as_secs_f64()
    }

    /// Deletes sessions idle longer than the TTL; returns how many.
    pub async fn sweep(&self) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM chat_sessions WHERE last_used_at < now() - make_interval(secs => $1)",
        )
        .bind(self.ttl_secs())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    /// Sweeps every TTL (at most every minute) until the pool is closed.
    fn spawn_sweeper(&self) {
        let store = PostgresStore {
            pool: self.pool.clone(),
            limits: self.limits,
        };
        let every = self
            .limits
            .ttl
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !store.pool.is_closed() {
                ticker.tick().await;
                match store.sweep().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(sessions = n, "swept expired sessions"),
                    Err(error) => tracing::warn!(%error, "session sweep failed"),
                }
            }
        });
    }

    /// The owner of a live session.
    async fn owner_of(&self, id: &str) -> Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT owner FROM chat_sessions WHERE id = $1 \
             AND last_used_at >= now() - make_interval(secs => $2)",
        )
        .bind(id)
        .bind(self.ttl_secs())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)
    }

    /// Close the pool (the sweeper stops).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The session's turns as messages, oldest first, with the turn numbers.
async fn read_turns(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
) -> Result<(Vec<i64>, Vec<ChatMessage>)> {
    let rows = sqlx::query(
        "SELECT seq, user_text, reply_text FROM chat_turns WHERE session_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await
    .map_err(unavailable)?;
    let mut seqs = Vec::with_capacity(rows.len());
    let mut messages = Vec::with_capacity(rows.len() * 2);
    for row in rows {
        seqs.push(row.try_get::<i64, _>(0).map_err(corrupt)?);
        messages.push(ChatMessage::new(
            Role::User,
            row.try_get::<String, _>(1).map_err(corrupt)?,
        ));
        messages.push(ChatMessage::new(
            Role::Assistant,
            row.try_get::<String, _>(2).map_err(corrupt)?,
        ));
    }
    Ok((seqs, messages))
}

fn corrupt(e: sqlx::Error) -> MemoryError {
    MemoryError::Corrupt(e.to_string())
}

#[async_trait::async_trait]
impl SessionStore for PostgresStore {
    async fn load(&self, owner: &str, id: &str) -> Result<Option<Session>> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let touched = sqlx::query(
            "UPDATE chat_sessions SET last_used_at = now() WHERE id = $1 AND owner = $2 \
             AND last_used_at >= now() - make_interval(secs => $3)",
        )
        .bind(id)
        .bind(owner)
        .bind(self.ttl_secs())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if touched.rows_affected() == 0 {
            return Ok(None);
        }
        let (_, messages) = read_turns(&mut tx, id).await?;
        tx.commit().await.map_err(unavailable)?;
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // An expired session is gone: whoever writes the id next starts it afresh.
        sqlx::query(
            "DELETE FROM chat_sessions WHERE id = $1 \
             AND last_used_at < now() - make_interval(secs => $2)",
        )
        .bind(id)
        .bind(self.ttl_secs())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let title: String = user.chars().take(TITLE_CHARS).collect();
        sqlx::query(
            "INSERT INTO chat_sessions (id, owner, title) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(owner)
        .bind(&title)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        // Serialises appends to this session until commit.
        let stored: String =
            sqlx::query_scalar("SELECT owner FROM chat_sessions WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(unavailable)?;
        if stored != owner {
            return Ok(None); // dropping the transaction rolls it back
        }
        sqlx::query(
            "INSERT INTO chat_turns (session_id, seq, user_text, reply_text) \
             SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3 FROM chat_turns WHERE session_id = $1",
        )
        .bind(id)
        .bind(user)
        .bind(assistant)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        sqlx::query("UPDATE chat_sessions SET last_used_at = now() WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let (seqs, mut messages) = read_turns(&mut tx, id).await?;
        let drop = overflow(&messages, &self.limits);
        if drop > 0 {
            // `overflow` drops whole turns: `drop / 2` of them, the oldest.
            let last_dropped = seqs[drop / 2 - 1];
            sqlx::query("DELETE FROM chat_turns WHERE session_id = $1 AND seq <= $2")
                .bind(id)
                .bind(last_dropped)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            messages.drain(..drop);
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(Some(Session {
            id: id.to_string(),
            messages,
        }))
    }

    async fn exists(&self, id: &str) -> Result<bool> {
        Ok(self.owner_of(id).await?.is_some())
    }

    async fn delete(&self, owner: &str, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM chat_sessions WHERE id = $1 AND owner = $2 \
             AND last_used_at >= now() - make_interval(secs => $3)",
        )
        .bind(id)
        .bind(owner)
        .bind(self.ttl_secs())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected() > 0)
    }

    async fn list(&self, owner: &str) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT id FROM chat_sessions WHERE owner = $1 \
             AND last_used_at >= now() - make_interval(secs => $2) ORDER BY id",
        )
        .bind(owner)
        .bind(self.ttl_secs())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)
    }

    async fn list_page(
        &self,
        owner: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<SessionPage> {
        // One row more than asked tells whether another page follows.
        let mut ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM chat_sessions WHERE owner = $1 \
             AND last_used_at >= now() - make_interval(secs => $2) \
             AND ($3::text IS NULL OR id > $3) ORDER BY id LIMIT $4",
        )
        .bind(owner)
        .bind(self.ttl_secs())
        .bind(after)
        .bind(limit as i64 + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let more = ids.len() > limit;
        ids.truncate(limit);
        let next = if more { ids.last().cloned() } else { None };
        Ok(SessionPage { ids, next })
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}
