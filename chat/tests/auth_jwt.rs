//! Bearer JWTs: a JWKS served by the test on 127.0.0.1 with keys generated here; the
//! verification matrix (good, expired, not yet valid, wrong issuer/audience/key, `alg: none`,
//! HS256 with the public key, key rotation), sessions and rate limits per subject, API keys
//! beside JWTs, and the openai SDK with a JWT as its API key.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http_body_util::BodyExt;
use mooring_chat::auth::{Auth, KeyId};
use serde_json::{Value, json};
use tower::ServiceExt;

const ISSUER: &str = "https://idp.example.test/realms/org";
const AUDIENCE: &str = "mooring-chat";

/// A signing key generated for the test, with its public JWK.
enum TestKey {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ec(EcdsaKeyPair),
}

impl TestKey {
    fn rsa() -> Self {
        TestKey::Rsa(aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap())
    }

    fn ec() -> Self {
        TestKey::Ec(EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
    }

    fn alg(&self) -> &'static str {
        match self {
            TestKey::Rsa(_) => "RS256",
            TestKey::Ec(_) => "ES256",
        }
    }

    fn public_bytes(&self) -> Vec<u8> {
        match self {
            TestKey::Rsa(k) => k.public_key().as_ref().to_vec(),
            TestKey::Ec(k) => k.public_key().as_ref().to_vec(),
        }
    }

    fn jwk(&self, kid: &str) -> Value {
        match self {
            TestKey::Rsa(k) => {
                let public = k.public_key();
                json!({
                    "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                    "n": B64.encode(public.modulus().big_endian_without_leading_zero()),
                    "e": B64.encode(public.exponent().big_endian_without_leading_zero()),
                })
            }
            TestKey::Ec(k) => {
                // An uncompressed P-256 point: 0x04 || x || y.
                let point = k.public_key().as_ref();
                json!({
                    "kty": "EC", "use": "sig", "alg": "ES256", "crv": "P-256", "kid": kid,
                    "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
                })
            }
        }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            TestKey::Rsa(k) => {
                let mut out = vec![0; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut out)
                    .unwrap();
                out
            }
            TestKey::Ec(k) => k.sign(&rng, message).unwrap().as_ref().to_vec(),
        }
    }

    /// A compact JWT of `claims`, signed by this key under `kid`.
    fn token(&self, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": self.alg(), "typ": "JWT", "kid": kid});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature = self.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(signature))
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(sub: &str) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now(), "exp": now() + 600})
}

/// A JWKS endpoint on 127.0.0.1 whose content the test changes; counts its requests.
#[derive(Clone, Default)]
struct JwksServer {
    keys: Arc<Mutex<Vec<Value>>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(keys: Vec<Value>) -> (Self, String) {
        let server = JwksServer::default();
        *server.keys.lock().unwrap() = keys;
        let state = server.clone();
        let router = axum::Router::new().route(
            "/jwks.json",
            get(move || {
                let state = state.clone();
                async move {
                    state.hits.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({"keys": *state.keys.lock().unwrap()}))
                }
            }),
        );
        let base = common::serve(router).await;
        (server, format!("{base}/jwks.json"))
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn jwt_flags(jwks_url: &str) -> Vec<String> {
    [
        "--auth-jwt-issuer",
        ISSUER,
        "--auth-jwt-audience",
        AUDIENCE,
        "--auth-jwt-jwks-url",
        jwks_url,
    ]
    .map(String::from)
    .to_vec()
}

fn whoami(auth: Auth) -> axum::Router {
    axum::Router::new()
        .route(
            "/whoami",
            get(|key: KeyId| async move { format!("{} {}", key.as_str(), key) }),
        )
        .layer(axum::middleware::from_fn_with_state(auth, Auth::middleware))
}

struct Reply {
    status: StatusCode,
    challenge: Option<String>,
    body: String,
}

async fn call(app: &axum::Router, bearer: Option<&str>) -> Reply {
    let mut request = Request::get("/whoami");
    if let Some(token) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        challenge,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn auth(flags: &[String]) -> Auth {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Auth::new(&common::args(&flags).auth).unwrap()
}

#[tokio::test]
async fn the_verification_matrix_answers_as_expected() {
    let rsa = TestKey::rsa();
    let ec = TestKey::ec();
    let stranger = TestKey::rsa();
    let (_jwks, url) = JwksServer::start(vec![rsa.jwk("rsa-1"), ec.jwk("ec-1")]).await;
    let app = whoami(auth(&jwt_flags(&url)));

    // Good tokens, both algorithms: the caller is the subject; logs see only a hash label.
    let good = call(
        &app,
        Some(&rsa.token("rsa-1", &claims("alice@example.org"))),
    )
    .await;
    assert_eq!(good.status, StatusCode::OK, "{}", good.body);
    let (owner, label) = good.body.split_once(' ').unwrap();
    assert_eq!(owner, "jwt:alice@example.org");
    assert!(
        label.starts_with("sub-") && label.len() == 16 && !label.contains("alice"),
        "{label}"
    );
    let good_ec = call(&app, Some(&ec.token("ec-1", &claims("bob")))).await;
    assert_eq!(good_ec.status, StatusCode::OK, "{}", good_ec.body);
    assert!(good_ec.body.starts_with("jwt:bob "));
    // Inside the leeway (30 s) a just-expired token still passes.
    let mut skewed = claims("alice");
    skewed["exp"] = json!(now() - 5);
    assert_eq!(
        call(&app, Some(&rsa.token("rsa-1", &skewed))).await.status,
        StatusCode::OK
    );

    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims("mallory-secret-subject");
        change(&mut c);
        c
    };
    let header_none = B64.encode(json!({"alg": "none", "typ": "JWT"}).to_string());
    let payload = B64.encode(claims("mallory-secret-subject").to_string());
    let alg_none = format!("{header_none}.{payload}.");
    // HS256 keyed with the RSA public key: the classic algorithm confusion.
    let hs_header = B64.encode(json!({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).to_string());
    let hs_input = format!("{hs_header}.{payload}");
    let hmac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &rsa.public_bytes());
    let hs_sig = aws_lc_rs::hmac::sign(&hmac_key, hs_input.as_bytes());
    let hs256 = format!("{hs_input}.{}", B64.encode(hs_sig.as_ref()));
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            rsa.token("rsa-1", &with(&|c| c["exp"] = json!(now() - 3600))),
            "expired",
        ),
        (
            "not yet valid",
            rsa.token("rsa-1", &with(&|c| c["nbf"] = json!(now() + 3600))),
            "not valid yet",
        ),
        (
            "wrong issuer",
            rsa.token("rsa-1", &with(&|c| c["iss"] = json!("https://evil.test"))),
            "wrong issuer",
        ),
        (
            "wrong audience",
            rsa.token("rsa-1", &with(&|c| c["aud"] = json!("another-app"))),
            "wrong audience",
        ),
        (
            "no exp",
            rsa.token(
                "rsa-1",
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
            "required claim",
        ),
        (
            "no subject",
            rsa.token(
                "rsa-1",
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("sub");
                }),
            ),
            "no subject",
        ),
        (
            "wrong key, known kid",
            stranger.token("rsa-1", &claims("mallory-secret-subject")),
            "bad signature",
        ),
        (
            "wrong key, unknown kid",
            stranger.token("stranger", &claims("mallory-secret-subject")),
            "unknown signing key",
        ),
        ("alg none", alg_none, "unsupported signing algorithm"),
        (
            "HS256 with the public key",
            hs256,
            "unsupported signing algorithm",
        ),
    ];
    for (name, token, reason) in cases {
        let reply = call(&app, Some(&token)).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{name}: {}",
            reply.body
        );
        assert_eq!(
            reply.challenge.as_deref(),
            Some(r#"Bearer error="invalid_token""#),
            "{name}"
        );
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{name}: {message}");
        assert!(
            !message.contains("mallory"),
            "{name} leaks the subject: {message}"
        );
        assert_eq!(body["error"]["code"], "invalid_api_key", "{name}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{name}");
    }

    let missing = call(&app, None).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.challenge.as_deref(), Some("Bearer"));
    // With JWTs only, anything that is not a JWT is refused as a key.
    assert_eq!(
        call(&app, Some("sk-not-a-jwt")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn rotated_keys_are_fetched_once_for_a_new_kid_and_refetches_are_rate_limited() {
    let old = TestKey::rsa();
    let new = TestKey::ec();
    let (jwks, url) = JwksServer::start(vec![old.jwk("2026-01")]).await;
    let flags = jwt_flags(&url);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = whoami(Auth::start(&common::args(&flags).auth).await.unwrap());
    assert_eq!(
        call(&app, Some(&old.token("2026-01", &claims("a"))))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(jwks.hits(), 1, "the JWKS was read at start");

    // The provider rotates: a token with the new kid makes the server re-read the set.
    jwks.keys.lock().unwrap().push(new.jwk("2026-02"));
    assert_eq!(
        call(&app, Some(&new.token("2026-02", &claims("a"))))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(jwks.hits(), 2);

    // Unknown kids right after: refused without hammering the provider.
    for i in 0..5 {
        let reply = call(&app, Some(&new.token(&format!("bogus-{i}"), &claims("a")))).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(jwks.hits(), 2, "re-reads for unknown kids are rate-limited");
    // Both keys still verify.
    for (key, kid) in [(&old, "2026-01"), (&new, "2026-02")] {
        assert_eq!(
            call(&app, Some(&key.token(kid, &claims("a")))).await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn api_keys_and_jwts_work_together_and_a_jwks_file_is_accepted() {
    let key = TestKey::ec();
    let dir = tempfile::tempdir().unwrap();
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, json!({"keys": [key.jwk("k1")]}).to_string()).unwrap();
    let keys_path = dir.path().join("keys");
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"service-secret"))
    };
    std::fs::write(&keys_path, format!("sha256:{digest} batch-job\n")).unwrap();
    let args = common::args(&[
        "--api-keys-file",
        keys_path.to_str().unwrap(),
        "--auth-jwt-issuer",
        ISSUER,
        "--auth-jwt-audience",
        AUDIENCE,
        "--auth-jwt-jwks-file",
        jwks_path.to_str().unwrap(),
    ]);
    let app = whoami(Auth::start(&args.auth).await.unwrap());
    let by_key = call(&app, Some("service-secret")).await;
    assert_eq!(by_key.body, "batch-job batch-job");
    let by_jwt = call(&app, Some(&key.token("k1", &claims("carol")))).await;
    assert!(by_jwt.body.starts_with("jwt:carol "), "{}", by_jwt.body);
    assert_eq!(
        call(&app, Some("wrong-secret")).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Half a JWT configuration is a start-up error, not an open door.
    let half = common::args(&["--auth-jwt-issuer", ISSUER]);
    assert!(Auth::new(&half.auth).is_err());
}

#[tokio::test]
async fn sessions_and_rate_limits_belong_to_the_subject() {
    let key = TestKey::rsa();
    let (_jwks, url) = JwksServer::start(vec![key.jwk("k")]).await;
    let mut flags = jwt_flags(&url);
    flags.extend(
        [
            "--rate-limit-per-second",
            "0.001",
            "--rate-limit-burst",
            "3",
        ]
        .map(String::from),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let backend = Arc::new(common::ScriptedBackend::default());
    let (service, _registry) = common::service_with(backend.clone(), None, &flags);
    let router = service.router();
    let alice = key.token("k", &claims("alice"));
    let bob = key.token("k", &claims("bob"));
    let send = |token: String, method: &str, uri: &str, body: Option<&str>| {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
            .unwrap();
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8(bytes.to_vec()).unwrap())
        }
    };
    let body = r#"{"prompt": "plans", "session_id": "alice-1"}"#;
    let (status, text) = send(alice.clone(), "POST", "/api/v1/chat", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, _) = send(bob.clone(), "GET", "/api/v1/sessions/alice-1", None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another subject sees nothing"
    );
    let (status, _) = send(bob.clone(), "POST", "/api/v1/chat", Some(body)).await;
    assert_ne!(
        status,
        StatusCode::OK,
        "another subject cannot write into it"
    );
    let (status, text) = send(alice.clone(), "GET", "/api/v1/sessions/alice-1", None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, text) = send(alice.clone(), "GET", "/api/v1/sessions", None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("alice-1"), "{text}");
    // Alice has used her burst of 3; Bob's bucket is his own.
    let (status, _) = send(alice.clone(), "GET", "/api/v1/sessions", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, text) = send(bob, "GET", "/api/v1/sessions", None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(!text.contains("alice-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_uses_a_jwt_as_its_api_key() {
    let python = common::require_env("MOORING_TEST_PYTHON");
    let key = TestKey::rsa();
    let (_jwks, url) = JwksServer::start(vec![key.jwk("k")]).await;
    let flags = jwt_flags(&url);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let backend = Arc::new(common::ScriptedBackend::default());
    let (service, _registry) = common::service_with(backend, None, &flags);
    let base = common::serve(service.router()).await;
    let token = key.token("k", &claims("dave"));
    let script = r#"
import json, sys, openai
base, token = sys.argv[1], sys.argv[2]
good = openai.OpenAI(base_url=base, api_key=token, max_retries=0)
reply = good.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "hi"}], extra_headers={"X-Session-Id": "dave-1"})
bad = openai.OpenAI(base_url=base, api_key=token[:-4] + "AAAA", max_retries=0)
try:
    bad.models.list()
    refused = None
except openai.AuthenticationError as e:
    refused = e.body.get("message") if isinstance(e.body, dict) else str(e.body)
print(json.dumps({"content": reply.choices[0].message.content, "refused": refused}))
"#;
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args(["-c", script, &format!("{base}/v1"), &token])
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
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(out["content"], "echo: hi (turns: 1)");
    let refused = out["refused"].as_str().unwrap();
    assert!(refused.contains("bad signature"), "{refused}");
}
