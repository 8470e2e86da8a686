//! Leader election against a scripted API server.

use std::time::Duration;

use http::{Method, StatusCode};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::{Value, json};

use super::LeaseLock;
use crate::mock_api::{self, ApiServer};

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/mooring/leases/mooring-operator";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/mooring/leases";

fn now() -> jiff::Timestamp {
    "2026-01-01T00:01:00Z".parse().unwrap()
}

fn lease(holder: &str, renewed: &str, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "mooring-operator", "namespace": "mooring", "resourceVersion": "41"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed,
                 "acquireTime": "2026-01-01T00:00:00.000000Z", "leaseTransitions": transitions}
    })
}

async fn attempt<F>(script: impl FnOnce(ApiServer) -> F) -> bool
where
    F: std::future::Future<Output = ApiServer> + Send + 'static,
{
    let (client, server) = mock_api::pair();
    let lock = LeaseLock::new(
        Api::<Lease>::namespaced(client, "mooring"),
        "mooring-operator",
        "pod-a",
        Duration::from_secs(15),
    );
    let scripted = tokio::spawn(script(server));
    let won = tokio::time::timeout(mock_api::STEP_TIMEOUT, lock.try_acquire_or_renew(now()))
        .await
        .expect("leader election hung on an unexpected request")
        .expect("leader election failed");
    drop(scripted.await.expect("script panicked"));
    won
}

#[tokio::test]
async fn creates_a_missing_lease_and_leads() {
    let won = attempt(|mut server| async move {
        server.expect(Method::GET, LEASE).await.not_found();
        let create = server.expect(Method::POST, LEASES).await;
        assert_eq!(create.body["spec"]["holderIdentity"], "pod-a");
        assert_eq!(create.body["spec"]["leaseDurationSeconds"], 15);
        assert_eq!(create.body["spec"]["leaseTransitions"], 0);
        let body = create.body.clone();
        create.reply(StatusCode::CREATED, &body);
        server
    })
    .await;
    assert!(won);
}

#[tokio::test]
async fn stands_by_while_another_holder_renews() {
    let won = attempt(|mut server| async move {
        // Renewed 5 s ago with a 15 s lease: still valid; nothing is written.
        server.expect(Method::GET, LEASE).await.reply(
            StatusCode::OK,
            &lease("pod-b", "2026-01-01T00:00:55.000000Z", 3),
        );
        server
    })
    .await;
    assert!(!won);
}

#[tokio::test]
async fn takes_over_an_expired_lease_with_optimistic_concurrency() {
    let won = attempt(|mut server| async move {
        server.expect(Method::GET, LEASE).await.reply(
            StatusCode::OK,
            &lease("pod-b", "2026-01-01T00:00:30.000000Z", 3),
        );
        let replace = server.expect(Method::PUT, LEASE).await;
        assert_eq!(
            replace.body["metadata"]["resourceVersion"], "41",
            "the write must be conditional"
        );
        assert_eq!(replace.body["spec"]["holderIdentity"], "pod-a");
        assert_eq!(replace.body["spec"]["leaseTransitions"], 4);
        assert_eq!(
            replace.body["spec"]["renewTime"],
            "2026-01-01T00:01:00.000000Z"
        );
        let body = replace.body.clone();
        replace.reply(StatusCode::OK, &body);
        server
    })
    .await;
    assert!(won);
}

#[tokio::test]
async fn renews_its_own_lease_keeping_acquire_time() {
    let won = attempt(|mut server| async move {
        server.expect(Method::GET, LEASE).await.reply(
            StatusCode::OK,
            &lease("pod-a", "2026-01-01T00:00:55.000000Z", 2),
        );
        let replace = server.expect(Method::PUT, LEASE).await;
        assert_eq!(
            replace.body["spec"]["acquireTime"],
            "2026-01-01T00:00:00.000000Z"
        );
        assert_eq!(replace.body["spec"]["leaseTransitions"], 2);
        assert_eq!(
            replace.body["spec"]["renewTime"],
            "2026-01-01T00:01:00.000000Z"
        );
        let body = replace.body.clone();
        replace.reply(StatusCode::OK, &body);
        server
    })
    .await;
    assert!(won);
}

#[tokio::test]
async fn losing_the_race_is_not_leading() {
    let won = attempt(|mut server| async move {
        server.expect(Method::GET, LEASE).await.reply(StatusCode::OK, &lease("pod-b", "2026-01-01T00:00:00.000000Z", 1));
        let conflict = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": "the object has been modified", "reason": "Conflict", "code": 409});
        server.expect(Method::PUT, LEASE).await.reply(StatusCode::CONFLICT, &conflict);
        server
    })
    .await;
    assert!(
        !won,
        "a concurrent writer won: two leaders must never exist"
    );
}
