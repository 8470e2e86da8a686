//! ChatService scenarios through the real operator (`process::operate`) against the simulated
//! cluster, in virtual time, with the real local registry holding the bundled `smollm2` GGUF
//! entry: an alias move rolls the chat pods out to the new GGUF, and a version whose pods
//! crash-loop is rolled back, with the same pin semantics as a ModelDeployment.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use mooring_crds::ChatService;
use mooring_crds::model_deployment::PinSource;
use mooring_kube_sim::{PodBehaviour, Sim};

const NAME: &str = "assistant";

/// `examples/chat-service.yaml`, pointed at this world's registry.
fn assistant(world: &World) -> ChatService {
    let text = std::fs::read_to_string(repo().join("examples/chat-service.yaml")).unwrap();
    let mut chat: ChatService = serde_yaml::from_str(&text).unwrap();
    chat.metadata.namespace = Some(NS.into());
    chat.spec
        .registry
        .as_mut()
        .unwrap()
        .local
        .as_mut()
        .unwrap()
        .path = world.registry.path();
    chat.spec
        .registry
        .as_mut()
        .unwrap()
        .local
        .as_mut()
        .unwrap()
        .persistent_volume_claim = None;
    chat
}

/// `kubectl create secret generic chat-keys --from-literal=keys=…`, as the example says.
fn create_keys_secret(world: &World) {
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "chat-keys", "namespace": NS},
        "stringData": {"keys": "sha256:0000000000000000000000000000000000000000000000000000000000000000 alice\n"},
    }))
    .unwrap();
    world.sim.put_as("kubectl", &secret);
}

/// A new version `v` of smollm2 (the same GGUF, as a registered copy would be).
fn add_version(world: &World, v: &str) {
    let model = world.registry.dir.path().join("smollm2");
    std::fs::create_dir_all(model.join(v)).unwrap();
    for entry in std::fs::read_dir(model.join("1")).unwrap() {
        let entry = entry.unwrap();
        let target = model.join(v).join(entry.file_name());
        if entry.file_type().unwrap().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), target).unwrap();
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `mooring alias set smollm2 production <v>` on the local registry.
fn set_alias(world: &World, v: &str) {
    let file = world.registry.dir.path().join("smollm2/aliases.json");
    std::fs::write(file, format!("{{\"production\": \"{v}\"}}")).unwrap();
}

fn chat(world: &World) -> Option<ChatService> {
    world.sim.get::<ChatService>(NS, NAME)
}

fn cond(chat: &ChatService, type_: &str) -> Option<(String, String)> {
    chat.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn serving(chat: &ChatService, v: &str) -> bool {
    chat.status
        .as_ref()
        .is_some_and(|s| s.version.as_deref() == Some(v))
        && cond(chat, "Ready").is_some_and(|(s, _)| s == "True")
        && cond(chat, "BackendReachable").is_some_and(|(s, _)| s == "True")
}

fn template_version(world: &World) -> Option<String> {
    world
        .sim
        .get::<Deployment>(NS, NAME)?
        .spec?
        .template
        .metadata?
        .annotations?
        .get("mooring.dev/model-version")
        .cloned()
}

async fn until(world: &World, what: &str, f: impl Fn(&ChatService) -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(c) = chat(world)
            && f(&c)
        {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "never: {what}\nlast status: {:#?}",
                chat(world).and_then(|c| c.status)
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn events(world: &World) -> Vec<(String, String)> {
    world
        .sim
        .list::<k8s_openapi::api::events::v1::Event>(Some(NS))
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("ChatService"))
        .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
        .collect()
}

/// Apply → Ready on version 1 with its URL; the alias moves to 2 → a rolling update of the
/// chat pods → Ready on 2.
#[tokio::test(start_paused = true)]
async fn an_alias_move_of_the_gguf_rolls_the_chat_pods_out() {
    let world = World::new(Sim::new(), "1");
    let _op = world.start_operator("op-a", None);
    create_keys_secret(&world);
    world.sim.put_as("kubectl", &assistant(&world));
    until(&world, "ready on 1", |c| serving(c, "1")).await;
    let status = chat(&world).unwrap().status.unwrap();
    assert_eq!(
        status.url.as_deref(),
        Some("http://assistant.default.svc:8080/v1")
    );
    assert!(world.sim.get::<Service>(NS, NAME).is_some());
    let container = world
        .sim
        .get::<Deployment>(NS, NAME)
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .remove(0);
    // No spec.image: the operator's chat build, not the ModelDeployments' one without chat.
    assert_eq!(container.image.as_deref(), Some(CHAT_IMAGE));
    let args = container.args.unwrap();
    assert!(
        args.windows(2)
            .any(|w| w == ["--chat-gguf-model", "smollm2@1"]),
        "{args:?}"
    );

    add_version(&world, "2");
    set_alias(&world, "2");
    until(&world, "ready on 2", |c| serving(c, "2")).await;
    assert_eq!(template_version(&world).as_deref(), Some("2"));
    let events = events(&world);
    assert!(
        events
            .iter()
            .filter(|(_, r)| r == "RolloutComplete")
            .count()
            >= 2,
        "{events:?}"
    );
}

/// Version 2's pods crash-loop → rolled back to 1 with a pin, `Degraded=True`; an hour later
/// still on 1; the alias moves on to 3 → the pin clears → 3 rolls out.
#[tokio::test(start_paused = true)]
async fn a_crash_looping_gguf_version_is_rolled_back() {
    let sim = Sim::new();
    sim.set_pod_behaviour(|pod: &Pod| {
        let version = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("mooring.dev/model-version").cloned());
        match version.as_deref() {
            Some("2") => PodBehaviour::CrashLoop,
            _ => PodBehaviour::Ready {
                after: Duration::from_secs(20),
            },
        }
    });
    let world = World::new(sim, "1");
    let _op = world.start_operator("op-a", None);
    create_keys_secret(&world);
    world.sim.put_as("kubectl", &assistant(&world));
    until(&world, "ready on 1", |c| serving(c, "1")).await;
    add_version(&world, "2");
    set_alias(&world, "2");
    until(&world, "rolled back to 1", |c| {
        c.status.as_ref().is_some_and(|s| {
            s.rollback_pin.as_ref().is_some_and(|p| {
                p.version == "1" && p.replaces_version == "2" && p.set_by == PinSource::AutoRollback
            }) && s.version.as_deref() == Some("1")
        }) && cond(c, "Degraded").is_some_and(|(s, r)| s == "True" && r == "RolledBack")
    })
    .await;
    until(&world, "the pods run 1 again", |_| {
        template_version(&world).as_deref() == Some("1")
    })
    .await;
    let events = events(&world);
    assert!(
        events.contains(&("Warning".into(), "RolledBack".into())),
        "{events:?}"
    );
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(
        template_version(&world).as_deref(),
        Some("1"),
        "no flapping"
    );

    add_version(&world, "3");
    set_alias(&world, "3");
    until(&world, "pin cleared, ready on 3", |c| {
        serving(c, "3") && c.status.as_ref().unwrap().rollback_pin.is_none()
    })
    .await;
}
