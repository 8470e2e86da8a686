//! The contract every session store keeps, run against each of them (tests/memory_contract.rs).
//! Each case takes a factory of stores with given limits; ids and owners get a fresh prefix so
//! stores that outlive a test (Redis, PostgreSQL) can be shared by concurrent tests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mooring_chat::backend::Role;
use mooring_chat::memory::{MemoryLimits, SessionStore};

pub type Store = Arc<dyn SessionStore>;
pub type Factory =
    Arc<dyn Fn(MemoryLimits) -> Pin<Box<dyn Future<Output = Store> + Send>> + Send + Sync>;

pub fn limits(max_turns: usize, max_chars: usize, ttl_secs: u64) -> MemoryLimits {
    MemoryLimits {
        max_turns,
        max_chars,
        ttl: Duration::from_secs(ttl_secs),
    }
}

/// A fresh prefix for this case's ids and owners.
fn ns() -> String {
    format!("t{}-", uuid::Uuid::new_v4().simple())
}

/// Every case, in turn.
pub async fn run_all(make: Factory) {
    turns_round_trip_in_order_and_are_bounded_by_turns_and_chars(&make).await;
    sessions_are_owned_listed_paged_and_deleted(&make).await;
    concurrent_turns_on_one_session_are_all_kept(&make).await;
    expired_sessions_are_gone(&make).await;
}

async fn turns_round_trip_in_order_and_are_bounded_by_turns_and_chars(make: &Factory) {
    let n = ns();
    let (k, s_id) = (format!("{n}k"), format!("{n}s"));
    let s = make(limits(2, 1000, 60)).await;
    s.ping().await.unwrap();
    assert!(s.load(&k, &s_id).await.unwrap().is_none());
    for i in 0..3 {
        s.append(&k, &s_id, &format!("q{i}"), &format!("a{i}"))
            .await
            .unwrap()
            .unwrap();
    }
    let session = s.load(&k, &s_id).await.unwrap().unwrap();
    let contents: Vec<&str> = session
        .messages
        .iter()
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(
        contents,
        ["q1", "a1", "q2", "a2"],
        "the oldest turn is dropped first"
    );
    assert_eq!(session.messages[0].role, Role::User);
    assert_eq!(session.stats().ai_messages, 2);

    let s = make(limits(10, 25, 60)).await;
    let id = format!("{n}chars");
    s.append(&k, &id, &"x".repeat(10), &"y".repeat(10))
        .await
        .unwrap();
    let after = s.append(&k, &id, "short", "reply").await.unwrap().unwrap();
    assert_eq!(
        after.messages.len(),
        2,
        "the older turn no longer fits 25 characters"
    );
    assert_eq!(
        s.load(&k, &id).await.unwrap().unwrap().messages[0].content,
        "short"
    );
}

async fn sessions_are_owned_listed_paged_and_deleted(make: &Factory) {
    let n = ns();
    let (alice, bob) = (format!("{n}alice"), format!("{n}bob"));
    let id = |s: &str| format!("{n}{s}");
    let s = make(limits(5, 1000, 60)).await;
    for name in ["a1", "a2", "a3"] {
        s.append(&alice, &id(name), "q", "a")
            .await
            .unwrap()
            .unwrap();
    }
    assert!(
        s.append(&bob, &id("a1"), "q", "a").await.unwrap().is_none(),
        "bob cannot write alice's session"
    );
    assert!(s.load(&bob, &id("a1")).await.unwrap().is_none());
    assert_eq!(
        s.load(&alice, &id("a1"))
            .await
            .unwrap()
            .unwrap()
            .messages
            .len(),
        2
    );
    assert!(s.exists(&id("a1")).await.unwrap() && !s.exists(&id("nobody")).await.unwrap());
    assert!(!s.delete(&bob, &id("a1")).await.unwrap());
    assert_eq!(
        s.list(&alice).await.unwrap(),
        [id("a1"), id("a2"), id("a3")]
    );
    assert!(s.list(&bob).await.unwrap().is_empty());

    let first = s.list_page(&alice, None, 2).await.unwrap();
    assert_eq!(first.ids, [id("a1"), id("a2")]);
    assert_eq!(first.next.as_deref(), Some(id("a2").as_str()));
    let second = s.list_page(&alice, first.next.as_deref(), 2).await.unwrap();
    assert_eq!((second.ids, second.next), (vec![id("a3")], None));
    assert!(s.list_page(&bob, None, 2).await.unwrap().ids.is_empty());

    assert!(s.delete(&alice, &id("a1")).await.unwrap());
    assert_eq!(s.list(&alice).await.unwrap(), [id("a2"), id("a3")]);
    assert!(s.load(&alice, &id("a1")).await.unwrap().is_none());
    assert!(!s.exists(&id("a1")).await.unwrap());
}

async fn concurrent_turns_on_one_session_are_all_kept(make: &Factory) {
    let n = ns();
    let (k, id) = (format!("{n}k"), format!("{n}busy"));
    let s = make(limits(100, 100_000, 60)).await;
    let writers: Vec<_> = (0..12)
        .map(|i| {
            let (s, k, id) = (s.clone(), k.clone(), id.clone());
            tokio::spawn(async move {
                s.append(&k, &id, &format!("q{i}"), &format!("a{i}"))
                    .await
                    .unwrap()
                    .unwrap()
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let session = s.load(&k, &id).await.unwrap().unwrap();
    assert_eq!(session.turns(), 12, "no turn is lost");
    for pair in session.messages.chunks(2) {
        // Each turn stays whole: its answer follows its own question.
        assert_eq!(pair[0].role, Role::User);
        assert_eq!(pair[1].content, pair[0].content.replacen('q', "a", 1));
    }
}

async fn expired_sessions_are_gone(make: &Factory) {
    let n = ns();
    let (k, id) = (format!("{n}k"), format!("{n}gone"));
    let s = make(limits(5, 1000, 1)).await;
    s.append(&k, &id, "q", "a").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(s.load(&k, &id).await.unwrap().is_none());
    assert!(!s.exists(&id).await.unwrap());
    assert!(s.list(&k).await.unwrap().is_empty());
    // The id is free again, for anyone.
    let other = format!("{n}other");
    let fresh = s
        .append(&other, &id, "new", "start")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fresh.messages.len(), 2);
}
