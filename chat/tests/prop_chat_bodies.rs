//! Property tests of chat request bodies: whatever arrives at `/v1/chat/completions`,
//! `/api/v1/chat`, `/api/v1/generate` and `/api/v1/generate-secure` (bytes, JSON of any
//! shape, nearly valid requests), the answer is a success or a 4xx in OpenAI's error shape,
//! never a panic or a 5xx; a valid request's answer holds what the backend said.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::ScriptedBackend;
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Failing cases are kept beside this file and replayed first.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 96;
    }
    config
}

const ENDPOINTS: &[&str] = &[
    "/v1/chat/completions",
    "/api/v1/chat",
    "/api/v1/generate",
    "/api/v1/generate-secure",
];

/// One service for every case: building its guard and caches dominates a case's time.
fn router() -> axum::Router {
    static ROUTER: std::sync::LazyLock<axum::Router> = std::sync::LazyLock::new(|| {
        let backend = Arc::new(ScriptedBackend::default());
        common::service_with(backend, None, &[]).0.router()
    });
    ROUTER.clone()
}

fn post(router: &axum::Router, uri: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let request = Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, bytes.to_vec())
    })
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{0,10}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Requests with the real field names and values of any kind.
fn nearly_valid() -> impl Strategy<Value = Value> {
    let role = prop_oneof![
        Just(json!("user")),
        Just(json!("system")),
        Just(json!("assistant")),
        Just(json!("tool")),
        any_json()
    ];
    let message = (
        role,
        prop_oneof!["\\PC{0,40}".prop_map(Value::from), any_json()],
    )
        .prop_map(|(role, content)| json!({"role": role, "content": content}));
    (
        prop::collection::vec(message, 0..4),
        prop_oneof!["\\PC{0,40}".prop_map(Value::from), any_json()],
        prop::option::of(any::<bool>()),
        prop::option::of(prop_oneof![(0i64..64).prop_map(Value::from), any_json()]),
        prop::option::of(any_json()),
        prop::option::of(prop_oneof![
            "[a-z0-9-]{0,12}".prop_map(Value::from),
            any_json()
        ]),
    )
        .prop_map(|(messages, prompt, stream, max_tokens, stop, session)| {
            let mut body = json!({"model": "scripted", "messages": messages, "prompt": prompt});
            if let Some(stream) = stream {
                body["stream"] = json!(stream);
            }
            if let Some(m) = max_tokens {
                body["max_tokens"] = m;
            }
            if let Some(s) = stop {
                body["stop"] = s;
            }
            if let Some(s) = session {
                body["session_id"] = s;
            }
            body
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_body_gets_a_success_or_a_4xx_in_openais_error_shape(
        endpoint in prop::sample::select(ENDPOINTS),
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            any_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            nearly_valid().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        ],
    ) {
        let (status, body) = post(&router(), endpoint, body);
        prop_assert!(
            status.is_success() || status.is_client_error(),
            "{endpoint}: {status} {}", String::from_utf8_lossy(&body)
        );
        if status.is_client_error() {
            let value: Value = serde_json::from_slice(&body)
                .map_err(|e| TestCaseError::fail(format!("{endpoint}: the error is not JSON: {e}")))?;
            prop_assert!(value["error"]["message"].is_string(), "{endpoint}: {value}");
        }
    }

    #[test]
    fn a_valid_prompt_is_answered_with_what_the_backend_said(prompt in "[A-Za-z0-9 ,.?é]{1,60}") {
        prop_assume!(!prompt.trim().is_empty());
        let body = json!({"model": "scripted", "messages": [{"role": "user", "content": prompt}]});
        let (status, body) = post(&router(), "/v1/chat/completions", serde_json::to_vec(&body).unwrap());
        prop_assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let value: Value = serde_json::from_slice(&body).unwrap();
        let content = value["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string();
        prop_assert!(content.starts_with("echo: "), "{content}");
    }
}
