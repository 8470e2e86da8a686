//! A pod built from a ChatService spec really serves: `inference-server serve` is started with
//! exactly the args and environment the operator's builder emits — its volumes materialised as
//! directories, its Secrets as files and variables — and the official `openai` SDK chats with
//! it, against the local SmolLM2 fetched from a registry and against llama-server.
//!
//! Needs the services of `scripts/test.sh` (MOORING_TEST_GGUF, MOORING_TEST_LLAMA_URL,
//! MOORING_TEST_PYTHON).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use mooring_crds::ChatService;
use mooring_operator::chat_service::{children, validate};
use mooring_operator::controller::resolve::VersionInfo;
use mooring_registry::Registry;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn require_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `scripts/test.sh` (it starts the services and exports it)")
    })
}

/// A copy of the bundled `models/smollm2` entry (its aliases, metadata and recorded digests)
/// with the GGUF the setup script fetched: the digest check runs against the real file.
fn registry_with_smollm2(dir: &Path) -> PathBuf {
    let root = dir.join("registry");
    let bundled = repo().join("models/smollm2");
    std::fs::create_dir_all(root.join("smollm2/1")).unwrap();
    std::fs::copy(
        bundled.join("aliases.json"),
        root.join("smollm2/aliases.json"),
    )
    .unwrap();
    for file in ["version.json", "sha256sums"] {
        std::fs::copy(
            bundled.join("1").join(file),
            root.join("smollm2/1").join(file),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink(
        require_env("MOORING_TEST_GGUF"),
        root.join("smollm2/1/SmolLM2-135M-Instruct.Q4_1.gguf"),
    )
    .unwrap();
    root
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// The pod's container, run as a process: each volume mount becomes a directory under `root`
/// (Secret volumes filled from `secrets`), each `secretKeyRef` variable gets its value from
/// `secrets`, and the ports become free local ones.
struct Pod {
    child: Child,
    base: String,
    mounts: BTreeMap<String, PathBuf>,
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_pod(
    build: &mooring_operator::controller::children::DesiredChildren,
    root: &Path,
    secrets: &BTreeMap<(&str, &str), String>,
) -> Pod {
    let pod = build
        .deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    let container: &Container = &pod.containers[0];
    let mut mounts = BTreeMap::new();
    for m in container.volume_mounts.iter().flatten() {
        let local = root.join(format!("volume-{}", m.name));
        std::fs::create_dir_all(&local).unwrap();
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == m.name)
            .expect("every mount has its volume");
        if let Some(secret) = &volume.secret {
            let name = secret.secret_name.as_deref().unwrap();
            for item in secret.items.iter().flatten() {
                let value = &secrets[&(name, item.key.as_str())];
                std::fs::write(local.join(&item.path), value).unwrap();
            }
        }
        mounts.insert(m.mount_path.clone(), local);
    }
    let (http, grpc) = (free_port(), free_port());
    // Paths inside the pod (`/var/cache/mooring`, `/etc/mooring/api-keys/keys`) become the
    // directories standing in for their volumes.
    let local_path = |arg: &str| -> String {
        // A host path the test made (the registry in a temp dir, which may well lie under
        // /tmp, a pod mount too) is already what the pod would see.
        if arg.starts_with('/') && Path::new(arg).exists() {
            return arg.to_string();
        }
        for (pod_path, local) in &mounts {
            match arg.strip_prefix(pod_path.as_str()) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                    return format!("{}{rest}", local.display());
                }
                _ => {}
            }
        }
        arg.to_string()
    };
    let mut args: Vec<String> = Vec::new();
    let emitted = container.args.clone().unwrap();
    let mut it = emitted.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--http-port" => {
                it.next();
                args.extend(["--http-port".into(), http.to_string()]);
            }
            "--grpc-port" => {
                it.next();
                args.extend(["--grpc-port".into(), grpc.to_string()]);
            }
            other => args.push(local_path(other)),
        }
    }
    args.extend(["--host".into(), "127.0.0.1".into()]);
    let mut command = Command::new(env!("CARGO_BIN_EXE_inference-server"));
    command.args(&args).env_clear();
    for var in ["PATH", "HOME", "ORT_DYLIB_PATH", "LD_LIBRARY_PATH"] {
        if let Ok(v) = std::env::var(var) {
            command.env(var, v);
        }
    }
    for e in container.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => {
                let r = from
                    .secret_key_ref
                    .as_ref()
                    .expect("only Secret references");
                secrets[&(r.name.as_str(), r.key.as_str())].clone()
            }
            _ => String::new(),
        };
        command.env(&e.name, value);
    }
    command.env("MOORING_LOG_FORMAT", "pretty");
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("inference-server starts");
    Pod {
        child,
        base: format!("http://127.0.0.1:{http}"),
        mounts,
    }
}

/// Wait until `/readyz` answers 200, as the readiness probe would.
async fn until_ready(pod: &mut Pod) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Some(status) = pod.child.try_wait().unwrap() {
            panic!("the server exited before it was ready: {status}");
        }
        if let Ok(r) = client.get(format!("{}/readyz", pod.base)).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "not ready in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs chat/tests/py/openai_client.py with `plan`; returns its JSON output.
async fn run_sdk(plan: Value) -> Value {
    let python = require_env("MOORING_TEST_PYTHON");
    let script = repo().join("chat/tests/py/openai_client.py");
    tokio::task::spawn_blocking(move || {
        let output = Command::new(python)
            .arg(script)
            .arg(plan.to_string())
            .output()
            .expect("MOORING_TEST_PYTHON runs");
        assert!(
            output.status.success(),
            "the SDK script failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<Value>(&output.stdout).expect("the script prints JSON")
    })
    .await
    .unwrap()
}

fn chat_service(yaml: &str) -> (ChatService, validate::ValidChat) {
    let mut chat: ChatService = serde_yaml::from_str(yaml).expect("fixture");
    chat.metadata.namespace = Some("ml".into());
    chat.metadata.uid = Some("uid".into());
    let valid = validate::validate_resource(&chat).expect("valid");
    (chat, valid)
}

fn owner() -> OwnerReference {
    OwnerReference {
        name: "assistant".into(),
        uid: "uid".into(),
        ..OwnerReference::default()
    }
}

const QUESTION: &str = "What is the capital of France?";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_built_from_the_spec_serves_the_registry_gguf_with_rotating_keys() {
    // Not under /tmp: that is one of the pod's mount paths.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let registry = registry_with_smollm2(dir.path());
    let yaml = format!(
        "apiVersion: mooring.dev/v1alpha1\nkind: ChatService\nmetadata: {{name: assistant}}\nspec:\n  backend: {{kind: local, model: smollm2@production}}\n  registry: {{local: {{path: {}}}}}\n  systemPrompt: You are a helpful assistant. Answer briefly.\n  generation: {{temperature: 0, maxTokens: 48, threads: 2}}\n  cache: {{exact: false}}\n  auth: {{apiKeysSecretRef: {{name: chat-keys}}}}\n",
        registry.display()
    );
    let (chat, valid) = chat_service(&yaml);
    // What the controller resolves: the alias's version, with its recorded digest.
    let local = mooring_registry::local::LocalRegistry::open(&registry).unwrap();
    let version = local
        .resolve(&"smollm2@production".parse().unwrap())
        .await
        .unwrap();
    let info = VersionInfo::from_registry(&version);
    let built = children::build(&chat, owner(), &valid, Some(&info), "unused");

    let (alice, bob) = ("sk-alice-123", "sk-bob-456");
    let secrets = BTreeMap::from([(
        ("chat-keys", "keys"),
        format!("sha256:{} alice\n", sha256_hex(alice)),
    )]);
    let mut pod = start_pod(&built, dir.path(), &secrets);
    until_ready(&mut pod).await;

    // The server fetched version 1 into the pod's cache volume and checked its digest.
    let cache = &pod.mounts[mooring_operator::controller::children::CACHE_DIR];
    let cached = cache.join("smollm2/1/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(cached.is_file(), "{}", cached.display());

    let plan = |key: &str| {
        json!({
            "base_url": format!("{}/v1", pod.base),
            "api_key": key,
            "model": "smollm2",
            "calls": [
                {"messages": [{"role": "user", "content": QUESTION}], "stream": false},
                {"messages": [{"role": "user", "content": QUESTION}], "stream": true},
            ],
        })
    };
    let out = run_sdk(plan(alice)).await;
    assert_eq!(out["models"], json!(["smollm2"]));
    for result in out["results"].as_array().unwrap() {
        assert!(
            result["content"].as_str().unwrap().contains("Paris"),
            "{result}"
        );
    }

    // Rotating the Secret: the kubelet rewrites the mounted file; no restart.
    let client = reqwest::Client::new();
    let models = |key: &'static str| {
        let client = client.clone();
        let url = format!("{}/v1/models", pod.base);
        async move {
            client
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(models(bob).await, 401);
    let keys_dir = &pod.mounts[children::API_KEYS_DIR];
    let rotated = keys_dir.join(".keys.new");
    std::fs::write(&rotated, format!("sha256:{} bob\n", sha256_hex(bob))).unwrap();
    std::fs::rename(&rotated, keys_dir.join(children::API_KEYS_FILE)).unwrap();
    let started = Instant::now();
    while models(bob).await != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the new key was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(models(alice).await, 401, "the old key is gone");
    let out = run_sdk(plan(bob)).await;
    assert!(
        out["results"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Paris"),
        "{out}"
    );
    assert!(pod.child.try_wait().unwrap().is_none(), "never restarted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_built_from_the_spec_serves_through_llama_server() {
    let llama = require_env("MOORING_TEST_LLAMA_URL");
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let yaml = format!(
        "apiVersion: mooring.dev/v1alpha1\nkind: ChatService\nmetadata: {{name: assistant}}\nspec:\n  backend: {{kind: openai, url: '{llama}', model: smollm2, apiKeySecretRef: {{name: llama, key: key}}}}\n  systemPrompt: You are a helpful assistant. Answer briefly.\n  generation: {{temperature: 0}}\n  cache: {{exact: false}}\n"
    );
    let (chat, valid) = chat_service(&yaml);
    let built = children::build(&chat, owner(), &valid, None, "unused");
    let secrets = BTreeMap::from([(("llama", "key"), "sk-unused-by-llama".to_string())]);
    let mut pod = start_pod(&built, dir.path(), &secrets);
    until_ready(&mut pod).await;
    let out = run_sdk(json!({
        "base_url": format!("{}/v1", pod.base),
        "model": "smollm2",
        "calls": [
            {"messages": [{"role": "user", "content": QUESTION}], "stream": false},
            {"messages": [{"role": "user", "content": QUESTION}], "stream": true},
        ],
    }))
    .await;
    for result in out["results"].as_array().unwrap() {
        assert!(
            result["content"].as_str().unwrap().contains("Paris"),
            "{result}"
        );
    }
}
