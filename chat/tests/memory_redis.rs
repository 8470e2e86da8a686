//! The Redis session store against a real redis-server (MOORING_TEST_REDIS_URL).

mod common;

use std::time::Duration;

use mooring_chat::backend::Role;
use mooring_chat::memory::redis_store::RedisStore;
use mooring_chat::memory::{MemoryLimits, SessionStore};

async fn store(limits: MemoryLimits) -> (RedisStore, String) {
    let url = common::require_env("MOORING_TEST_REDIS_URL");
    let prefix = format!("mooring-test-{}", uuid::Uuid::new_v4().simple());
    (
        RedisStore::connect(&url, &prefix, limits).await.unwrap(),
        prefix,
    )
}

fn limits(max_turns: usize, max_chars: usize, ttl_secs: u64) -> MemoryLimits {
    MemoryLimits {
        max_turns,
        max_chars,
        ttl: Duration::from_secs(ttl_secs),
    }
}

#[tokio::test]
async fn turns_round_trip_in_order_and_are_bounded_by_turns_and_chars() {
    let (s, _) = store(limits(2, 1000, 60)).await;
    s.ping().await.unwrap();
    for i in 0..3 {
        s.append("k", "s", &format!("q{i}"), &format!("a{i}"))
            .await
            .unwrap()
            .unwrap();
    }
    let session = s.load("k", "s").await.unwrap().unwrap();
    let contents: Vec<&str> = session
        .messages
        .iter()
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(contents, ["q1", "a1", "q2", "a2"]);
    assert_eq!(session.messages[0].role, Role::User);
    assert_eq!(session.stats().ai_messages, 2);

    let (s, _) = store(limits(10, 25, 60)).await;
    s.append("k", "s", &"x".repeat(10), &"y".repeat(10))
        .await
        .unwrap();
    let after = s.append("k", "s", "short", "reply").await.unwrap().unwrap();
    assert_eq!(
        after.messages.len(),
        2,
        "the older turn no longer fits 25 characters"
    );
    assert_eq!(
        s.load("k", "s").await.unwrap().unwrap().messages[0].content,
        "short"
    );
}

#[tokio::test]
async fn sessions_are_owned_listed_and_deleted() {
    let (s, _) = store(limits(5, 1000, 60)).await;
    s.append("alice", "a1", "q", "a").await.unwrap().unwrap();
    s.append("alice", "a2", "q", "a").await.unwrap().unwrap();
    assert!(
        s.append("bob", "a1", "q", "a").await.unwrap().is_none(),
        "bob cannot write alice's session"
    );
    assert!(s.load("bob", "a1").await.unwrap().is_none());
    assert!(s.exists("a1").await.unwrap() && !s.exists("nobody").await.unwrap());
    assert!(!s.delete("bob", "a1").await.unwrap());
    assert_eq!(s.list("alice").await.unwrap(), ["a1", "a2"]);
    assert!(s.list("bob").await.unwrap().is_empty());
    assert!(s.delete("alice", "a1").await.unwrap());
    assert_eq!(s.list("alice").await.unwrap(), ["a2"]);
    assert!(s.load("alice", "a1").await.unwrap().is_none());
}

#[tokio::test]
async fn ttl_is_set_and_refreshed_on_use() {
    let (s, prefix) = store(limits(5, 1000, 100)).await;
    s.append("k", "t", "q", "a").await.unwrap();
    let url = common::require_env("MOORING_TEST_REDIS_URL");
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{prefix}:session:t");
    let ttl = |c: &mut redis::aio::MultiplexedConnection| {
        let key = key.clone();
        let mut c = c.clone();
        async move {
            redis::cmd("TTL")
                .arg(key)
                .query_async::<i64>(&mut c)
                .await
                .unwrap()
        }
    };
    let initial = ttl(&mut c).await;
    assert!(initial > 90 && initial <= 100, "ttl {initial}");
    redis::cmd("EXPIRE")
        .arg(&key)
        .arg(5)
        .query_async::<()>(&mut c)
        .await
        .unwrap();
    s.load("k", "t").await.unwrap().unwrap();
    assert!(ttl(&mut c).await > 90, "loading refreshes the TTL");

    // An expired session is gone for its owner too.
    let (short, _) = store(limits(5, 1000, 1)).await;
    short.append("k", "gone", "q", "a").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(short.load("k", "gone").await.unwrap().is_none());
    assert!(short.list("k").await.unwrap().is_empty());
}
