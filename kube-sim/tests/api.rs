//! The API server's semantics, through a real `kube::Client` and `kube::Api`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use mooring_crds::ModelDeployment;
use mooring_kube_sim::{OutageKind, Sim, Verb};
use serde_json::json;

fn code(err: kube::Error) -> (u16, String, String) {
    match err {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("not an API error: {other:?}"),
    }
}

fn lease(name: &str, holder: &str) -> Lease {
    Lease {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            ..Default::default()
        }),
    }
}

#[tokio::test(start_paused = true)]
async fn create_get_replace_with_optimistic_concurrency() {
    let sim = Sim::new();
    let leases: Api<Lease> = Api::namespaced(sim.client("a"), "ns");
    let created = leases
        .create(&PostParams::default(), &lease("lock", "a"))
        .await
        .unwrap();
    assert!(created.uid().is_some());
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.creation_timestamp().is_some());
    let (c, reason, message) = code(
        leases
            .create(&PostParams::default(), &lease("lock", "b"))
            .await
            .unwrap_err(),
    );
    assert_eq!((c, reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(
        message,
        "leases.coordination.k8s.io \"lock\" already exists"
    );

    let mut mine = leases.get("lock").await.unwrap();
    let mut theirs = mine.clone();
    mine.spec.as_mut().unwrap().holder_identity = Some("a2".into());
    let replaced = leases
        .replace("lock", &PostParams::default(), &mine)
        .await
        .unwrap();
    assert_ne!(replaced.resource_version(), created.resource_version());
    assert_eq!(replaced.metadata.generation, Some(2));
    theirs.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let (c, reason, _) = code(
        leases
            .replace("lock", &PostParams::default(), &theirs)
            .await
            .unwrap_err(),
    );
    assert_eq!((c, reason.as_str()), (409, "Conflict"));

    let (c, reason, _) = code(leases.get("missing").await.unwrap_err());
    assert_eq!((c, reason.as_str()), (404, "NotFound"));
    assert!(leases.get_opt("missing").await.unwrap().is_none());

    // A write that changes nothing is no write.
    let again = leases
        .replace("lock", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(again.resource_version(), replaced.resource_version());

    leases
        .delete("lock", &DeleteParams::default())
        .await
        .unwrap();
    assert!(sim.get::<Lease>("ns", "lock").is_none());
    let version = sim.client("a").apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
}

fn cm(data: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": data})
}

#[tokio::test(start_paused = true)]
async fn server_side_apply_tracks_ownership() {
    let sim = Sim::new();
    let cms: Api<ConfigMap> = Api::namespaced(sim.client("a"), "ns");
    let alice = PatchParams::apply("alice");
    let bob = PatchParams::apply("bob");
    cms.patch(
        "cfg",
        &alice,
        &Patch::Apply(cm(json!({"a": "1", "b": "2"}))),
    )
    .await
    .unwrap();
    // Same value: shared ownership, no conflict.
    cms.patch("cfg", &bob, &Patch::Apply(cm(json!({"a": "1", "c": "3"}))))
        .await
        .unwrap();
    // A different value for a field someone else owns: conflict without force.
    let (c, reason, message) = code(
        cms.patch("cfg", &bob, &Patch::Apply(cm(json!({"b": "x"}))))
            .await
            .unwrap_err(),
    );
    assert_eq!((c, reason.as_str()), (409, "Conflict"));
    assert!(
        message.contains("conflict with \"alice\": .data.b"),
        "{message}"
    );
    // Nothing changed.
    let data = cms.get("cfg").await.unwrap().data.unwrap();
    assert_eq!(data.get("b").map(String::as_str), Some("2"));

    // Bob forces b and stops applying c (which only he owned) and a (which alice also owns).
    cms.patch(
        "cfg",
        &bob.clone().force(),
        &Patch::Apply(cm(json!({"b": "x"}))),
    )
    .await
    .unwrap();
    let got = cms.get("cfg").await.unwrap();
    let data = got.data.clone().unwrap();
    assert_eq!(
        data,
        BTreeMap::from([("a".into(), "1".into()), ("b".into(), "x".into())])
    );
    let managers: Vec<String> = got
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, vec!["alice".to_string(), "bob".to_string()]);

    // Alice stops applying b: she no longer owns it, bob does, so it stays; a goes.
    cms.patch("cfg", &alice, &Patch::Apply(cm(json!({"d": "4"}))))
        .await
        .unwrap();
    let data = cms.get("cfg").await.unwrap().data.unwrap();
    assert_eq!(
        data,
        BTreeMap::from([("b".into(), "x".into()), ("d".into(), "4".into())])
    );

    // A merge patch (an update) takes over the field it changes.
    cms.patch(
        "cfg",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"d": "5"}})),
    )
    .await
    .unwrap();
    let (c, _, message) = code(
        cms.patch("cfg", &alice, &Patch::Apply(cm(json!({"d": "4"}))))
            .await
            .unwrap_err(),
    );
    assert_eq!(c, 409);
    assert!(message.contains("conflict with \"a\""), "{message}");
}

fn md(replicas: i32) -> serde_json::Value {
    json!({
        "apiVersion": "mooring.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "iris"},
        "spec": {"model": {"name": "iris-classifier", "alias": "production"},
                 "registry": {"local": {"path": "/models"}}, "replicas": replicas},
        "status": {"version": "ignored"},
    })
}

#[tokio::test(start_paused = true)]
async fn status_subresource_and_generation() {
    let sim = Sim::new();
    let mds: Api<ModelDeployment> = Api::namespaced(sim.client("op"), "ns");
    let pp = PatchParams::apply("op").force();
    let created = mds.patch("iris", &pp, &Patch::Apply(md(1))).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.status.is_none(),
        "status is ignored on the main resource"
    );

    let status = json!({"apiVersion": "mooring.dev/v1alpha1", "kind": "ModelDeployment",
        "spec": {"replicas": 7}, "status": {"version": "1"}});
    let after = mds
        .patch_status("iris", &pp, &Patch::Apply(&status))
        .await
        .unwrap();
    assert_eq!(after.status.unwrap().version.as_deref(), Some("1"));
    assert_eq!(after.spec.replicas, 1, "spec is ignored on /status");
    assert_eq!(
        after.metadata.generation,
        Some(1),
        "a status write keeps the generation"
    );

    let changed = mds.patch("iris", &pp, &Patch::Apply(md(3))).await.unwrap();
    assert_eq!(changed.metadata.generation, Some(2));
    assert_eq!(
        changed.status.unwrap().version.as_deref(),
        Some("1"),
        "the status is kept"
    );
    let labelled = mds
        .patch(
            "iris",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(2),
        "metadata does not count"
    );
    let writes = sim.count(|r| {
        r.subresource.as_deref() == Some("status") && r.verb == Verb::Apply && r.succeeded()
    });
    assert_eq!(writes, 1);
}

#[tokio::test(start_paused = true)]
async fn list_with_selectors_across_namespaces() {
    let sim = Sim::new();
    let client = sim.client("t");
    for (ns, name, labels) in [
        ("a", "one", json!({"app": "web", "tier": "fe"})),
        ("a", "two", json!({"app": "api"})),
        ("b", "three", json!({"app": "web"})),
    ] {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap(),
        )
        .await
        .unwrap();
    }
    let all: Api<ConfigMap> = Api::all(client.clone());
    let names = |list: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        let mut v: Vec<String> = list.items.iter().map(|c| c.name_any()).collect();
        v.sort();
        v
    };
    assert_eq!(
        names(all.list(&ListParams::default()).await.unwrap()).len(),
        3
    );
    assert_eq!(
        names(
            all.list(&ListParams::default().labels("app=web"))
                .await
                .unwrap()
        ),
        vec!["one", "three"]
    );
    assert_eq!(
        names(
            all.list(&ListParams::default().labels("app in (web,api),!tier"))
                .await
                .unwrap()
        ),
        vec!["three", "two"]
    );
    assert_eq!(
        names(
            all.list(&ListParams::default().labels("app!=web"))
                .await
                .unwrap()
        ),
        vec!["two"]
    );
    let a: Api<ConfigMap> = Api::namespaced(client.clone(), "a");
    assert_eq!(
        names(a.list(&ListParams::default().labels("tier")).await.unwrap()),
        vec!["one"]
    );
    assert_eq!(
        names(
            all.list(&ListParams::default().fields("metadata.name=two"))
                .await
                .unwrap()
        ),
        vec!["two"]
    );
    assert_eq!(sim.list::<ConfigMap>(Some("b")).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn unavailable_for_one_client_only() {
    let sim = Sim::new();
    let a: Api<ConfigMap> = Api::namespaced(sim.client("a"), "ns");
    let b: Api<ConfigMap> = Api::namespaced(sim.client("b"), "ns");
    sim.unavailable(
        Some("a"),
        Duration::from_secs(600),
        OutageKind::ConnectionError,
    );
    assert!(matches!(
        a.list(&ListParams::default()).await,
        Err(kube::Error::Service(_))
    ));
    b.list(&ListParams::default()).await.unwrap();
    sim.unavailable(
        None,
        Duration::from_secs(60),
        OutageKind::ServiceUnavailable,
    );
    assert_eq!(
        code(b.list(&ListParams::default()).await.unwrap_err()).0,
        503
    );
    tokio::time::sleep(Duration::from_secs(61)).await;
    b.list(&ListParams::default()).await.unwrap();
    assert!(a.list(&ListParams::default()).await.is_err());
    tokio::time::sleep(Duration::from_secs(540)).await;
    a.list(&ListParams::default()).await.unwrap();
    let failed = sim.count(|r| r.client == "a" && r.code == 0);
    assert_eq!(failed, 2);
}

#[tokio::test(start_paused = true)]
async fn injected_conflicts_rejections_and_latency() {
    let sim = Sim::new();
    let leases: Api<Lease> = Api::namespaced(sim.client("a"), "ns");
    leases
        .create(&PostParams::default(), &lease("l", "a"))
        .await
        .unwrap();
    sim.conflict_next_writes::<Lease>("ns", "l", 1);
    let mut l = leases.get("l").await.unwrap();
    l.spec.as_mut().unwrap().holder_identity = Some("b".into());
    assert_eq!(
        code(
            leases
                .replace("l", &PostParams::default(), &l)
                .await
                .unwrap_err()
        )
        .0,
        409
    );
    leases
        .replace("l", &PostParams::default(), &l)
        .await
        .unwrap();

    sim.reject_writes::<Lease>("ns", "l", |body| {
        (body["spec"]["holderIdentity"] == "bad")
            .then(|| "spec.holderIdentity: Invalid value: \"bad\": not allowed".to_string())
    });
    let mut l = leases.get("l").await.unwrap();
    l.spec.as_mut().unwrap().holder_identity = Some("bad".into());
    let (c, reason, message) = code(
        leases
            .replace("l", &PostParams::default(), &l)
            .await
            .unwrap_err(),
    );
    assert_eq!((c, reason.as_str()), (422, "Invalid"));
    assert_eq!(
        message,
        "Lease.coordination.k8s.io \"l\" is invalid: spec.holderIdentity: Invalid value: \"bad\": not allowed"
    );
    sim.clear_rejections();
    leases
        .replace("l", &PostParams::default(), &l)
        .await
        .unwrap();

    sim.set_latency(Some("a"), Duration::from_secs(3));
    let before = tokio::time::Instant::now();
    leases.get("l").await.unwrap();
    assert!(before.elapsed() >= Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn finalizers_delay_deletion() {
    let sim = Sim::new();
    let cms: Api<ConfigMap> = Api::namespaced(sim.client("a"), "ns");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "f", "finalizers": ["x/y"]}})).unwrap(),
    )
    .await
    .unwrap();
    cms.delete("f", &DeleteParams::default()).await.unwrap();
    let pending = cms.get("f").await.unwrap();
    assert!(pending.metadata.deletion_timestamp.is_some());
    cms.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(cms.get_opt("f").await.unwrap().is_none());
}

fn web(env: serde_json::Value, annotations: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "annotations": annotations},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "main", "image": "web:1", "env": env}]},
            },
        },
    })
}

#[tokio::test(start_paused = true)]
async fn apply_merges_named_lists_and_removes_what_is_no_longer_applied() {
    use k8s_openapi::api::apps::v1::Deployment;
    let sim = Sim::new();
    let api: Api<Deployment> = Api::namespaced(sim.client("t"), "ns");
    let op = PatchParams::apply("op").force();
    api.patch(
        "web",
        &op,
        &Patch::Apply(web(
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]),
            json!({"keep": "x", "request": "rollback"}),
        )),
    )
    .await
    .unwrap();
    // Someone else adds an env var to the same container (merged by name).
    api.patch(
        "web",
        &PatchParams::apply("sidecar-injector"),
        &Patch::Apply(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "main", "env": [{"name": "C", "value": "3"}]}]}}},
        })),
    )
    .await
    .unwrap();
    // The operator stops applying B and the annotation `request`.
    let d = api
        .patch(
            "web",
            &op,
            &Patch::Apply(web(
                json!([{"name": "A", "value": "1"}]),
                json!({"keep": "x"}),
            )),
        )
        .await
        .unwrap();
    let container = &d
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let env: Vec<&str> = container
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(env, vec!["A", "C"]);
    assert_eq!(container.image.as_deref(), Some("web:1"));
    assert!(d.annotations().contains_key("keep"));
    assert!(
        !d.annotations().contains_key("request"),
        "the annotation no longer applied is gone"
    );
    assert_eq!(d.metadata.generation, Some(3));
}

#[tokio::test(start_paused = true)]
async fn put_as_owns_fields_and_strategic_merge_is_a_merge() {
    let sim = Sim::new();
    let cms: Api<ConfigMap> = Api::namespaced(sim.client("t"), "ns");
    sim.put_as(
        "kubectl-edit",
        &serde_json::from_value::<ConfigMap>(
            json!({"metadata": {"name": "cfg", "namespace": "ns"}, "data": {"a": "1"}}),
        )
        .unwrap(),
    );
    let (c, _, message) = code(
        cms.patch(
            "cfg",
            &PatchParams::apply("op"),
            &Patch::Apply(cm(json!({"a": "2"}))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(c, 409);
    assert!(message.contains("kubectl-edit"), "{message}");
    cms.patch(
        "cfg",
        &PatchParams::default(),
        &Patch::Strategic(json!({"data": {"b": "2"}})),
    )
    .await
    .unwrap();
    let data = cms.get("cfg").await.unwrap().data.unwrap();
    assert_eq!(data.len(), 2);
}

/// A map whose fields a manager stops applying goes entirely (as the API server removes a
/// map the manager owned alone), instead of lingering as `{}` that no longer parses as the
/// type (found by the operator's rollback-pin scenarios).
#[tokio::test(start_paused = true)]
async fn apply_removes_a_map_it_no_longer_applies() {
    let sim = Sim::new();
    let cms: Api<ConfigMap> = Api::namespaced(sim.client("a"), "ns");
    let params = PatchParams::apply("op");
    let body = |labels: serde_json::Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "cfg", "labels": labels, "annotations": {"keep": "1"}}})
    };
    cms.patch(
        "cfg",
        &params,
        &Patch::Apply(body(json!({"pin": "1", "by": "x"}))),
    )
    .await
    .unwrap();
    let dropped = json!({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "cfg", "annotations": {"keep": "1"}}});
    cms.patch("cfg", &params, &Patch::Apply(dropped))
        .await
        .unwrap();
    let got = cms.get("cfg").await.unwrap();
    assert_eq!(got.metadata.labels, None, "no empty map left behind");
    assert_eq!(got.metadata.annotations.unwrap()["keep"], "1");
    // An empty map the manager does apply stays.
    cms.patch("cfg", &params, &Patch::Apply(body(json!({}))))
        .await
        .unwrap();
    let raw = sim.get::<ConfigMap>("ns", "cfg").unwrap();
    assert_eq!(raw.metadata.annotations.unwrap()["keep"], "1");
}
