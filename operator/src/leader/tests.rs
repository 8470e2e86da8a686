//! Leader election against a scripted API server, in virtual time.

use std::time::Duration;

use http::{Method, StatusCode};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::{Value, json};

use super::{LeaseLock, hold};
use crate::mock_api::{self, ApiServer};

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/mooring/leases/mooring-operator";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/mooring/leases";

fn lease(holder: &str, renewed: &str, transitions: i32, rv: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "mooring-operator", "namespace": "mooring", "resourceVersion": rv},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed,
                 "acquireTime": "2026-01-01T00:00:00.000000Z", "leaseTransitions": transitions}
    })
}

fn conflict() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": "the object has been modified", "reason": "Conflict", "code": 409})
}

fn lock(client: kube::Client) -> LeaseLock {
    LeaseLock::new(
        Api::<Lease>::namespaced(client, "mooring"),
        "mooring-operator",
        "pod-a",
        Duration::from_secs(15),
    )
}

/// One election attempt of `lock` against `server` answering as `script` says. The
/// script runs only during the attempt, so time can pass between attempts.
async fn attempt<F>(
    lock: &LeaseLock,
    server: ApiServer,
    script: impl FnOnce(ApiServer) -> F,
) -> (bool, ApiServer)
where
    F: std::future::Future<Output = ApiServer> + Send + 'static,
{
    let scripted = tokio::spawn(script(server));
    let won = tokio::time::timeout(mock_api::STEP_TIMEOUT, lock.try_acquire_or_renew())
        .await
        .expect("leader election hung on an unexpected request")
        .expect("leader election failed");
    (won, scripted.await.expect("script panicked"))
}

/// Attempts `gap` apart, each answered by GETs of `leases` (and nothing else).
async fn standby_attempts(leases: Vec<Value>, gap: Duration) -> Vec<bool> {
    let (client, mut server) = mock_api::pair();
    let lock = lock(client);
    let mut won = Vec::new();
    for (i, l) in leases.into_iter().enumerate() {
        if i > 0 {
            tokio::time::advance(gap).await;
        }
        let (w, s) = attempt(&lock, server, |mut server| async move {
            server
                .expect(Method::GET, LEASE)
                .await
                .reply(StatusCode::OK, &l);
            server
        })
        .await;
        won.push(w);
        server = s;
    }
    won
}

/// One attempt of a fresh candidate.
async fn attempts<F>(script: impl FnOnce(ApiServer) -> F) -> Vec<bool>
where
    F: std::future::Future<Output = ApiServer> + Send + 'static,
{
    let (client, server) = mock_api::pair();
    let lock = lock(client);
    vec![attempt(&lock, server, script).await.0]
}

#[tokio::test(start_paused = true)]
async fn creates_a_missing_lease_and_leads() {
    let won = attempts(|mut server| async move {
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
    assert_eq!(won, [true]);
}

#[tokio::test(start_paused = true)]
async fn a_remote_renew_time_in_the_past_is_not_expiry_while_the_record_changes() {
    // The holder's clock is an hour behind ours: its renewTime looks ancient, but it renews.
    let leases = vec![
        lease("pod-b", "2025-12-31T23:00:00.000000Z", 3, "41"),
        lease("pod-b", "2025-12-31T23:00:10.000000Z", 3, "42"),
        lease("pod-b", "2025-12-31T23:00:20.000000Z", 3, "43"),
    ];
    let won = standby_attempts(leases, Duration::from_secs(10)).await;
    assert_eq!(
        won,
        [false, false, false],
        "nothing written: the holder is alive"
    );
}

#[tokio::test(start_paused = true)]
async fn takes_over_once_the_lease_went_unchanged_for_a_whole_duration() {
    let (client, mut server) = mock_api::pair();
    let lock = lock(client);
    let stale = lease("pod-b", "2026-01-01T00:00:30.000000Z", 3, "41");
    // First look at 0 s, again at 8 s: not yet a whole 15 s unchanged.
    for at in [0, 8] {
        tokio::time::advance(Duration::from_secs(at)).await;
        let l = stale.clone();
        let (won, s) = attempt(&lock, server, |mut server| async move {
            server
                .expect(Method::GET, LEASE)
                .await
                .reply(StatusCode::OK, &l);
            server
        })
        .await;
        assert!(!won);
        server = s;
    }
    // At 16 s: expired as seen from here.
    tokio::time::advance(Duration::from_secs(8)).await;
    let (won, _) = attempt(&lock, server, |mut server| async move {
        server
            .expect(Method::GET, LEASE)
            .await
            .reply(StatusCode::OK, &stale);
        let replace = server.expect(Method::PUT, LEASE).await;
        assert_eq!(
            replace.body["metadata"]["resourceVersion"], "41",
            "the write must be conditional"
        );
        assert_eq!(replace.body["spec"]["holderIdentity"], "pod-a");
        assert_eq!(replace.body["spec"]["leaseTransitions"], 4);
        let body = replace.body.clone();
        replace.reply(StatusCode::OK, &body);
        server
    })
    .await;
    assert!(won);
}

#[tokio::test(start_paused = true)]
async fn renews_its_own_lease_keeping_acquire_time() {
    let won = attempts(|mut server| async move {
        server.expect(Method::GET, LEASE).await.reply(
            StatusCode::OK,
            &lease("pod-a", "2026-01-01T00:00:55.000000Z", 2, "41"),
        );
        let replace = server.expect(Method::PUT, LEASE).await;
        assert_eq!(
            replace.body["spec"]["acquireTime"],
            "2026-01-01T00:00:00.000000Z"
        );
        assert_eq!(replace.body["spec"]["leaseTransitions"], 2);
        let body = replace.body.clone();
        replace.reply(StatusCode::OK, &body);
        server
    })
    .await;
    assert_eq!(won, [true]);
}

#[tokio::test(start_paused = true)]
async fn a_conflict_on_renewal_rereads_the_lease_before_giving_up() {
    let won = attempts(|mut server| async move {
        let ours = lease("pod-a", "2026-01-01T00:00:55.000000Z", 2, "41");
        server
            .expect(Method::GET, LEASE)
            .await
            .reply(StatusCode::OK, &ours);
        // Someone labelled the Lease in between: 409, but it is still ours.
        server
            .expect(Method::PUT, LEASE)
            .await
            .reply(StatusCode::CONFLICT, &conflict());
        let relabelled = lease("pod-a", "2026-01-01T00:00:55.000000Z", 2, "42");
        server
            .expect(Method::GET, LEASE)
            .await
            .reply(StatusCode::OK, &relabelled);
        let replace = server.expect(Method::PUT, LEASE).await;
        assert_eq!(replace.body["metadata"]["resourceVersion"], "42");
        let body = replace.body.clone();
        replace.reply(StatusCode::OK, &body);
        server
    })
    .await;
    assert_eq!(won, [true]);
}

#[tokio::test(start_paused = true)]
async fn losing_the_race_is_not_leading() {
    let (client, server) = mock_api::pair();
    let lock = lock(client);
    let stale = lease("pod-b", "2026-01-01T00:00:00.000000Z", 1, "41");
    let l = stale.clone();
    let (_, server) = attempt(&lock, server, |mut server| async move {
        server
            .expect(Method::GET, LEASE)
            .await
            .reply(StatusCode::OK, &l);
        server
    })
    .await;
    tokio::time::advance(Duration::from_secs(16)).await;
    let (won, _) = attempt(&lock, server, |mut server| async move {
        server
            .expect(Method::GET, LEASE)
            .await
            .reply(StatusCode::OK, &stale);
        server
            .expect(Method::PUT, LEASE)
            .await
            .reply(StatusCode::CONFLICT, &conflict());
        // pod-c took it first.
        let taken = lease("pod-c", "2026-01-01T00:00:16.000000Z", 2, "42");
        server
            .expect(Method::GET, LEASE)
            .await
            .reply(StatusCode::OK, &taken);
        server
    })
    .await;
    assert!(!won, "two leaders must never exist");
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_gives_up_before_the_lease_expires() {
    let (client, mut server) = mock_api::pair();
    let lock = lock(client);
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let started = tokio::time::Instant::now();
    // The API server receives the renewals but never answers them.
    let silent = tokio::spawn(async move {
        let mut pending = Vec::new();
        loop {
            pending.push(server.expect(Method::GET, LEASE).await);
        }
    });
    let lost = hold(&lock, rx).await;
    silent.abort();
    assert!(lost);
    let held = started.elapsed();
    assert!(
        held >= lock.renew_deadline() && held < Duration::from_secs(15),
        "gave up after {held:?}: after the renew deadline, before a standby may take over"
    );
}
