//! API keys (Bearer auth, 401 shape, KeyId, hashed keys file, reload) and per-key rate limits.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use clap::{CommandFactory, Parser};
use http_body_util::BodyExt;
use mooring_chat::auth::{Auth, AuthArgs, KeyId};
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use tower::ServiceExt;

/// The keys-file column for a secret, as `printf %s "$KEY" | sha256sum` makes it.
fn hash(secret: &str) -> String {
    use sha2::Digest;
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(secret.as_bytes()))
    )
}

fn write_keys(path: &Path, lines: &[String]) {
    let mut file = std::fs::File::create(path).unwrap();
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
}

fn app(auth: Auth) -> Router {
    Router::new()
        .route("/whoami", get(|key: KeyId| async move { key.to_string() }))
        .layer(axum::middleware::from_fn_with_state(auth, Auth::middleware))
}

async fn call(app: &Router, bearer: Option<&str>) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut request = Request::get("/whoami");
    if let Some(key) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

fn keys_args(path: &Path) -> AuthArgs {
    AuthArgs {
        api_keys_file: Some(path.into()),
        ..AuthArgs::default()
    }
}

#[tokio::test]
async fn without_a_keys_file_everyone_is_anonymous() {
    let app = app(Auth::new(&AuthArgs::default()).unwrap());
    assert_eq!(call(&app, None).await.2, "anonymous");
    assert_eq!(call(&app, Some("anything")).await.2, "anonymous");
}

#[tokio::test]
async fn keys_file_requires_a_valid_bearer_key_and_names_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let bob_hash = hash("bob-secret");
    write_keys(
        &path,
        &[
            "# team keys".into(),
            format!("{} alice", hash("alice-secret")),
            bob_hash.clone(),
        ],
    );
    let app = app(Auth::new(&keys_args(&path)).unwrap());

    let (status, _, body) = call(&app, Some("alice-secret")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "alice"));
    // An unnamed key gets a stable, non-secret id from its hash.
    let (status, _, body) = call(&app, Some("bob-secret")).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, format!("key-{}", &bob_hash[7..19]))
    );

    // The scheme is case-insensitive; a Basic header is not a key.
    let lower = Request::get("/whoami").header(header::AUTHORIZATION, "bearer alice-secret");
    let response = app
        .clone()
        .oneshot(lower.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let basic = Request::get("/whoami").header(header::AUTHORIZATION, "Basic alice-secret");
    let response = app
        .clone()
        .oneshot(basic.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    for bearer in [None, Some("wrong"), Some("")] {
        let (status, headers, body) = call(&app, bearer).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bearer:?}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"]["code"], "invalid_api_key", "{json}");
        assert_eq!(json["error"]["type"], "invalid_request_error");
        assert_eq!(json["error"]["param"], "Authorization", "{json}");
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("Authorization:")
        );
    }
    // The secret itself is not a key: a client sending the hash line gets nothing.
    assert_eq!(
        call(&app, Some(&bob_hash)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn keys_file_is_reloaded_on_change_and_a_broken_edit_keeps_the_old_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    write_keys(&path, &[format!("{} alice", hash("alice-secret"))]);
    let auth = Auth::new(&keys_args(&path)).unwrap();
    let keys = auth.keys().unwrap().clone();
    let app = app(auth);
    assert_eq!(call(&app, Some("alice-secret")).await.0, StatusCode::OK);
    assert!(
        !keys.reload_if_changed().unwrap(),
        "unchanged file is not re-read"
    );

    // Rotate: alice out, carol in (a different length, so the change shows even on
    // file systems with coarse modification times).
    write_keys(&path, &[format!("{} carol-the-new", hash("carol-secret"))]);
    assert!(keys.reload_if_changed().unwrap());
    assert_eq!(
        call(&app, Some("alice-secret")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(call(&app, Some("carol-secret")).await.2, "carol-the-new");

    // A half-written file is refused and the previous keys stay in force.
    write_keys(&path, &["sha256:nothex".into()]);
    assert!(
        keys.reload_if_changed()
            .unwrap_err()
            .to_string()
            .contains("line 1")
    );
    assert_eq!(call(&app, Some("carol-secret")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn background_reloader_picks_up_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    write_keys(&path, &[format!("{} alice", hash("alice-secret"))]);
    let args = AuthArgs {
        reload_seconds: 0.05,
        ..keys_args(&path)
    };
    let app = app(Auth::from_args(&args).unwrap());
    write_keys(&path, &[format!("{} bob-is-here", hash("bob-secret"))]);
    // Bounded wait for the poller (up to 10 s); the assertion is on behaviour, not speed.
    let mut status = StatusCode::UNAUTHORIZED;
    for _ in 0..200 {
        status = call(&app, Some("bob-secret")).await.0;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status,
        StatusCode::OK,
        "reloader never installed the new key"
    );
    assert_eq!(
        call(&app, Some("alice-secret")).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn rate_limit_is_per_key_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    write_keys(
        &path,
        &[
            format!("{} alice", hash("alice-secret")),
            format!("{} bob", hash("bob-secret")),
        ],
    );
    // Burst of 2, then one request per 1000 s: the third request is refused whatever the
    // machine's speed.
    let args = AuthArgs {
        rate_limit_per_second: 0.001,
        rate_limit_burst: 2,
        ..keys_args(&path)
    };
    let app = app(Auth::new(&args).unwrap());
    assert_eq!(call(&app, Some("alice-secret")).await.0, StatusCode::OK);
    assert_eq!(call(&app, Some("alice-secret")).await.0, StatusCode::OK);
    let (status, headers, body) = call(&app, Some("alice-secret")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (990..=1000).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"]["code"], "rate_limit_exceeded");
    // Bob has his own bucket.
    assert_eq!(call(&app, Some("bob-secret")).await.0, StatusCode::OK);
    // Unauthenticated requests are refused before they can drain anyone's bucket.
    assert_eq!(call(&app, Some("nobody")).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn rate_limit_applies_to_the_anonymous_identity_too() {
    let args = AuthArgs {
        rate_limit_per_second: 0.001,
        rate_limit_burst: 1,
        ..AuthArgs::default()
    };
    let app = app(Auth::new(&args).unwrap());
    assert_eq!(call(&app, None).await.0, StatusCode::OK);
    assert_eq!(call(&app, None).await.0, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_route_without_the_middleware_fails_closed() {
    let app = Router::new().route("/whoami", get(|key: KeyId| async move { key.to_string() }));
    assert_eq!(call(&app, None).await.0, StatusCode::INTERNAL_SERVER_ERROR);
}

#[test]
fn bad_settings_name_the_field() {
    let err = Auth::new(&AuthArgs {
        rate_limit_per_second: -1.0,
        ..AuthArgs::default()
    })
    .err()
    .unwrap();
    assert!(
        err.to_string().starts_with("rate-limit-per-second"),
        "{err}"
    );
    let err = Auth::new(&AuthArgs {
        reload_seconds: 0.0,
        ..AuthArgs::default()
    })
    .err()
    .unwrap();
    assert!(
        err.to_string().starts_with("api-keys-reload-seconds"),
        "{err}"
    );
    let err = Auth::new(&keys_args(Path::new("/nonexistent/keys")))
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/keys"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("keys");
    write_keys(&empty, &[]);
    assert!(
        Auth::new(&keys_args(&empty))
            .err()
            .unwrap()
            .to_string()
            .contains("no keys")
    );
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    auth: AuthArgs,
}

#[test]
fn cli_flags_are_consistent_and_parse() {
    Cli::command().debug_assert();
    let cli = Cli::try_parse_from([
        "x",
        "--api-keys-file",
        "/k",
        "--rate-limit-per-second",
        "2.5",
        "--rate-limit-burst",
        "5",
    ])
    .unwrap();
    assert_eq!(cli.auth.api_keys_file.as_deref(), Some(Path::new("/k")));
    assert_eq!(cli.auth.rate_limit_per_second, 2.5);
    assert_eq!(cli.auth.rate_limit_burst, 5);
}

#[test]
fn reloading_outside_a_runtime_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    write_keys(&path, &[hash("alice-secret")]);
    let err = Auth::from_args(&keys_args(&path)).err().unwrap();
    assert!(err.to_string().starts_with("api-keys-file"), "{err}");
}

#[tokio::test]
async fn reloader_stops_when_the_keys_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    write_keys(&path, &[hash("alice-secret")]);
    let keys = mooring_chat::auth::ApiKeys::load(&path).unwrap();
    let task = keys.spawn_reloader(
        &tokio::runtime::Handle::current(),
        Duration::from_millis(10),
    );
    drop(keys);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("reloader still running after its keys were dropped")
        .unwrap();
}
