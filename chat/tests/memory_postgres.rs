//! The PostgreSQL session store against a real server (MOORING_TEST_POSTGRES_URL, which
//! scripts/test.sh always sets): the store contract, a restart of the chat service that keeps
//! the conversation (through `/api/v1/chat` and the openai SDK), the TTL sweeper, titles,
//! and `GET /api/v1/sessions` pages.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::store_contract::{Factory, Store, limits, run_all};
use http_body_util::BodyExt;
use mooring_chat::memory::SessionStore;
use mooring_chat::memory::postgres_store::PostgresStore;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A URL of the server whose connections work in a schema of their own (tests run at once,
/// and a store with a short TTL sweeps every session of its database), or `None`, with the
/// reason printed, to skip when the server is not configured.
async fn postgres_url() -> Option<String> {
    let Ok(base) = std::env::var("MOORING_TEST_POSTGRES_URL") else {
        eprintln!(
            "skipped: MOORING_TEST_POSTGRES_URL is not set (scripts/test.sh starts PostgreSQL and sets it)"
        );
        return None;
    };
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&base).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let separator = if base.contains('?') { '&' } else { '?' };
    Some(format!(
        "{base}{separator}options=-c%20search_path%3D{schema}"
    ))
}

#[tokio::test]
async fn the_postgres_store_keeps_the_contract() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let make: Factory = Arc::new(move |limits| {
        let url = url.clone();
        Box::pin(
            async move { Arc::new(PostgresStore::connect(&url, limits).await.unwrap()) as Store },
        )
    });
    run_all(make).await;
}

#[tokio::test]
async fn the_sweeper_deletes_expired_rows_and_titles_come_from_the_first_prompt() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let id = format!("sweep-{}", uuid::Uuid::new_v4().simple());
    let store = PostgresStore::connect(&url, limits(5, 1000, 1))
        .await
        .unwrap();
    let long_prompt = "é".repeat(200);
    store.append("k", &id, &long_prompt, "a").await.unwrap();
    store.append("k", &id, "second", "b").await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let title: String = sqlx::query_scalar("SELECT title FROM chat_sessions WHERE id = $1")
        .bind(&id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        title,
        "é".repeat(80),
        "the first prompt, cut to 80 characters"
    );
    // The sweeper runs every TTL (1 s here) and deletes the idle session with its turns.
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_sessions WHERE id = $1")
        .bind(&id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(sessions, 0, "the sweeper deleted the expired session");
    assert_eq!(store.sweep().await.unwrap(), 0);
    let turns: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_turns WHERE session_id = $1")
        .bind(&id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(turns, 0, "the session's turns go with it");
}

async fn send(
    router: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A chat service (scripted backend) whose memory is PostgreSQL, as `serve --chat` builds it.
async fn service(url: &str) -> mooring_chat::ChatService {
    let store = PostgresStore::connect(url, limits(20, 8000, 3600))
        .await
        .unwrap();
    let store: Arc<dyn SessionStore> = Arc::new(store);
    let backend = Arc::new(common::ScriptedBackend::default());
    common::service_with(backend, Some(store), &["--chat-memory-store", "postgres"]).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_the_chat_service_keeps_the_conversation() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let session = format!("restart-{}", uuid::Uuid::new_v4().simple());

    let first = service(&url).await;
    let (status, reply) = send(
        &first.router(),
        "POST",
        "/api/v1/chat",
        Some(json!({"prompt": "my name is Ada", "session_id": session})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    drop(first);

    // A new process: nothing shared but the database.
    let second = service(&url).await;
    let router = second.router();
    let (status, reply) = send(
        &router,
        "POST",
        "/api/v1/chat",
        Some(json!({"prompt": "what is my name?", "session_id": session})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        reply["response"], "echo: what is my name? (turns: 2)",
        "{reply}"
    );

    // The openai SDK continues the same conversation on a third instance.
    let third = service(&url).await;
    let base = common::serve(third.router()).await;
    let python = common::require_env("MOORING_TEST_PYTHON");
    let script = r#"
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
reply = client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "and again?"}], extra_headers={"X-Session-Id": sys.argv[2]})
print(reply.choices[0].message.content)
"#;
    let (base_v1, sid) = (format!("{base}/v1"), session.clone());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args(["-c", script, &base_v1, &sid])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "echo: and again? (turns: 3)"
    );

    let (status, stored) = send(&router, "GET", &format!("/api/v1/sessions/{session}"), None).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
}

#[tokio::test]
async fn the_sessions_endpoint_pages_through_the_callers_sessions() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let owner = format!("pager{}", uuid::Uuid::new_v4().simple());
    let secret = format!("{owner}-secret");
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(secret.as_bytes()))
    };
    std::fs::write(&keys, format!("sha256:{digest} {owner}\n")).unwrap();
    let store: Arc<dyn SessionStore> = Arc::new(
        PostgresStore::connect(&url, limits(20, 8000, 3600))
            .await
            .unwrap(),
    );
    let backend = Arc::new(common::ScriptedBackend::default());
    let (service, _) = common::service_with(
        backend,
        Some(store),
        &["--api-keys-file", keys.to_str().unwrap()],
    );
    let router = service.router();
    let call = |uri: String, body: Option<Value>| {
        let router = router.clone();
        let secret = secret.clone();
        async move {
            let mut request = Request::builder()
                .method(if body.is_some() { "POST" } else { "GET" })
                .uri(uri)
                .header("authorization", format!("Bearer {secret}"));
            if body.is_some() {
                request = request.header("content-type", "application/json");
            }
            let request = request
                .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
                .unwrap();
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let ids: Vec<String> = (0..5).map(|i| format!("{owner}-s{i}")).collect();
    for id in &ids {
        let (status, _) = call(
            "/api/v1/chat".into(),
            Some(json!({"prompt": "hi", "session_id": id})),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let mut seen = Vec::new();
    let mut uri = "/api/v1/sessions?limit=2".to_string();
    loop {
        let (status, page) = call(uri.clone(), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page["count"].as_u64().unwrap() <= 2);
        seen.extend(
            page["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/api/v1/sessions?limit=2&after={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let (status, _) = call("/api/v1/sessions?limit=0".into(), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn serve_chat_flags_build_a_service_on_postgres_with_jwt_sign_in() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, r#"{"keys": []}"#).unwrap();
    let mut flags = vec![
        "--chat-backend",
        "openai",
        "--chat-url",
        "http://127.0.0.1:9",
        "--chat-memory-store",
        "postgres",
        "--auth-jwt-issuer",
        "https://idp.example.test",
        "--auth-jwt-audience",
        "chat",
        "--auth-jwt-jwks-file",
        jwks.to_str().unwrap(),
    ];
    let registry = prometheus::Registry::new();
    let missing_url = mooring_chat::ChatService::build(&common::args(&flags), &registry).await;
    let error = missing_url.err().expect("no URL is an error").to_string();
    assert!(error.contains("--chat-postgres-url"), "{error}");

    flags.extend(["--chat-postgres-url", &url]);
    let service =
        mooring_chat::ChatService::build(&common::args(&flags), &prometheus::Registry::new())
            .await
            .unwrap();
    assert!(service.readiness().await.memory_reachable);
    let (status, body) = send(&service.router(), "GET", "/api/v1/sessions", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}
