//! The session-store contract (tests/common/store_contract.rs) on the in-process and Redis
//! stores; PostgreSQL runs it in tests/memory_postgres.rs.

mod common;

use std::num::NonZeroUsize;
use std::sync::Arc;

use common::store_contract::{Factory, Store, run_all};
use mooring_chat::memory::in_process::InProcessStore;
use mooring_chat::memory::redis_store::RedisStore;

#[tokio::test]
async fn the_in_process_store_keeps_the_contract() {
    let make: Factory = Arc::new(|limits| {
        Box::pin(async move {
            Arc::new(InProcessStore::new(NonZeroUsize::new(100).unwrap(), limits)) as Store
        })
    });
    run_all(make).await;
}

#[tokio::test]
async fn the_redis_store_keeps_the_contract() {
    let url = common::require_env("MOORING_TEST_REDIS_URL");
    let make: Factory = Arc::new(move |limits| {
        let url = url.clone();
        Box::pin(async move {
            let prefix = format!("mooring-test-{}", uuid::Uuid::new_v4().simple());
            Arc::new(RedisStore::connect(&url, &prefix, limits).await.unwrap()) as Store
        })
    });
    run_all(make).await;
}
