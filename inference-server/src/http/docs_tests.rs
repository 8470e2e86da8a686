//! Keeps the documentation honest: every `curl` command of the READMEs and of the iris and
//! chat example manifests runs against the real router (the bundled iris model, and chat mode over
//! a stand-in backend), and must answer what the docs say — 2xx, or the status of a
//! `# NNN …` comment line right after it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use clap::Parser;
use futures::stream;
use http_body_util::BodyExt;
use mooring_chat::backend::{
    Backend, BackendError, EventStream, FinishReason, GenerationRequest, StreamEvent, Usage,
};
use tower::ServiceExt;

/// The API key the docs' examples send (`Authorization: Bearer $KEY`).
const DOC_KEY: &str = "$KEY";

/// One `curl` command of a document.
#[derive(Debug)]
struct Curl {
    /// Where it is, for failure messages.
    origin: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    /// The status a `# NNN` comment after the command documents.
    documented_status: Option<u16>,
}

/// A line of a shell block, or of a `#` comment in a YAML manifest.
fn shell_text(line: &str, yaml: bool) -> &str {
    let line = line.trim_start();
    if yaml {
        line.strip_prefix('#').unwrap_or("").trim_start()
    } else {
        line
    }
}

/// Splits a shell command into words: single quotes are literal, double quotes group, an
/// unquoted `#` starting a word begins a comment.
fn words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let w = word.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    w.push(q);
                }
            }
            '#' if word.is_none() => break,
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// Every `curl` command of `file` that talks to the local server.
fn curls(file: &Path) -> Vec<Curl> {
    let text = std::fs::read_to_string(file).unwrap();
    let yaml = file.extension().is_some_and(|e| e == "yaml");
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = shell_text(lines[i], yaml);
        let Some(start) = line.find("curl ") else {
            i += 1;
            continue;
        };
        let first = i + 1;
        // Join continuation lines and lines inside an open quote.
        let mut command = line[start..].to_string();
        while (command.ends_with('\\') || command.matches('\'').count() % 2 == 1)
            && i + 1 < lines.len()
        {
            command = command.trim_end_matches('\\').to_string();
            i += 1;
            command.push('\n');
            command.push_str(shell_text(lines[i], yaml));
        }
        i += 1;
        let documented_status = lines.get(i).and_then(|next| {
            let next = next.trim_start().strip_prefix('#')?.trim_start();
            let code: String = next.chars().take_while(char::is_ascii_digit).collect();
            (code.len() == 3).then(|| code.parse().unwrap())
        });
        let words = words(&command);
        let Some(url) = words.iter().find(|w| w.contains("localhost:8080")) else {
            continue;
        };
        let mut curl = Curl {
            origin: format!("{}:{first}", file.display()),
            method: String::new(),
            path: url[url.find("localhost:8080").unwrap() + "localhost:8080".len()..].into(),
            headers: Vec::new(),
            body: None,
            documented_status,
        };
        let mut method = None;
        let mut args = words.iter().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "-X" => method = args.next().cloned(),
                "-H" => {
                    let header = args.next().expect("-H takes a header");
                    let (name, value) = header.split_once(':').expect("name: value");
                    curl.headers.push((name.trim().into(), value.trim().into()));
                }
                "-d" => curl.body = args.next().cloned(),
                _ => {}
            }
        }
        curl.method =
            method.unwrap_or_else(|| if curl.body.is_some() { "POST" } else { "GET" }.to_string());
        found.push(curl);
    }
    found
}

/// A stand-in for the chat model: answers every conversation with the same few words.
struct DocBackend;

#[async_trait::async_trait]
impl Backend for DocBackend {
    async fn generate(&self, _: GenerationRequest) -> Result<EventStream, BackendError> {
        let events = vec![
            Ok(StreamEvent::Delta("Your name ".into())),
            Ok(StreamEvent::Delta("is Ada.".into())),
            Ok(StreamEvent::Done {
                finish_reason: FinishReason::Stop,
                usage: Usage::new(12, 2),
            }),
        ];
        Ok(Box::pin(stream::iter(events)))
    }

    async fn reachable(&self) -> Result<(), BackendError> {
        Ok(())
    }

    fn model_name(&self) -> &str {
        "smollm2"
    }

    fn kind(&self) -> &'static str {
        "doc"
    }
}

#[derive(Parser)]
struct ChatFlags {
    #[command(flatten)]
    chat: mooring_chat::ChatArgs,
}

/// The server `make run` plus `serve --chat` start: the iris model and chat mode, with API
/// keys from `keys` when given.
fn app(keys: Option<&Path>) -> axum::Router {
    use mooring_chat::memory::{MemoryLimits, in_process::InProcessStore};
    let mut argv = vec!["serve".to_string()];
    if let Some(keys) = keys {
        argv.extend(["--api-keys-file".into(), keys.display().to_string()]);
    }
    let args = ChatFlags::parse_from(argv).chat;
    let registry = prometheus::Registry::new();
    let limits = MemoryLimits {
        max_turns: args.chat_memory_max_turns,
        max_chars: args.chat_memory_max_chars,
        ttl: std::time::Duration::from_secs(args.chat_memory_ttl_secs),
    };
    let chat = mooring_chat::ChatService::from_parts(
        &args,
        Arc::new(DocBackend),
        Arc::new(InProcessStore::new(100.try_into().unwrap(), limits)),
        mooring_chat::metrics::ChatMetrics::register(&registry).unwrap(),
        Arc::new(mooring_chat::guard::Guard::from_args(&args.guard).unwrap()),
        mooring_chat::auth::Auth::new(&args.auth).unwrap(),
        mooring_chat::cache::Caches::from_args(&args.cache).unwrap(),
    );
    crate::app(super::tests::iris_and_spam_state(1 << 20)).merge(chat.router())
}

async fn run(app: &axum::Router, curl: &Curl) -> (StatusCode, String) {
    let mut request = Request::builder()
        .method(curl.method.as_str())
        .uri(&curl.path);
    for (name, value) in &curl.headers {
        request = request.header(name, value);
    }
    let body = curl.body.clone().map_or_else(Body::empty, Body::from);
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

#[tokio::test]
async fn every_documented_curl_answers_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(DOC_KEY.as_bytes()))
    };
    std::fs::write(&keys, format!("sha256:{hash} docs\n")).unwrap();
    let mut checked = 0;
    for doc in [
        "README.md",
        "chat/README.md",
        "examples/iris-modeldeployment.yaml",
        "examples/chat-service.yaml",
    ] {
        // One server per document: its sessions are the document's own.
        let (open, keyed) = (app(None), app(Some(&keys)));
        let commands = curls(&repo(doc));
        assert!(!commands.is_empty(), "{doc} has no curl commands");
        for curl in commands {
            // Commands that send a key, or document a 401, talk to a server with API keys.
            let with_keys = curl.documented_status == Some(401)
                || curl
                    .headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
            let target = if with_keys { &keyed } else { &open };
            let (status, body) = run(target, &curl).await;
            match curl.documented_status {
                Some(code) => {
                    let origin = &curl.origin;
                    assert_eq!(status.as_u16(), code, "{origin}: {curl:?}: {body}")
                }
                None => {
                    let origin = &curl.origin;
                    assert!(
                        status.is_success(),
                        "{origin}: {curl:?} answered {status}: {body}"
                    )
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 16, "only {checked} curl commands found");
}

#[test]
fn curl_commands_are_read_like_a_shell_would() {
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("doc.md");
    std::fs::write(
        &doc,
        "```sh\ncurl -s localhost:8080/api/v1/chat -H 'content-type: application/json' \\\n  \
         -d '{\"prompt\": \"a # b\",\n  \"x\": 1}'   # a comment\n# 400 {\"error\": …}\n\
         curl -s -X DELETE localhost:8080/api/v1/sessions/demo\n\
         curl -s example.com/elsewhere\n```\n",
    )
    .unwrap();
    let found = curls(&doc);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].method, "POST");
    assert_eq!(found[0].path, "/api/v1/chat");
    assert_eq!(
        found[0].headers,
        [("content-type".to_string(), "application/json".to_string())]
    );
    assert_eq!(
        found[0].body.as_deref(),
        Some("{\"prompt\": \"a # b\",\n\"x\": 1}")
    );
    assert_eq!(found[0].documented_status, Some(400));
    assert_eq!(
        (found[1].method.as_str(), found[1].path.as_str()),
        ("DELETE", "/api/v1/sessions/demo")
    );
    assert_eq!(found[1].documented_status, None);
}
