//! The drift webhook: the compact report as JSON, signed with HMAC-SHA256 when a secret is
//! configured, retried with backoff within a small budget. Its failure is recorded in the
//! status and an Event; it never fails or blocks the reconcile for long.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::Serialize;
use sha2::{Digest, Sha256};

use mooring_crds::DriftReport;

/// The signature header: `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Mooring-Signature";
const ATTEMPTS: u32 = 3;
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_BASE: Duration = Duration::from_millis(500);

/// The JSON body POSTed to the webhook.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload<'a> {
    /// Always `DriftDetected`.
    pub event: &'static str,
    pub namespace: &'a str,
    pub monitor: &'a str,
    /// The ModelDeployment checked.
    pub target: &'a str,
    /// The version whose traffic drifted.
    pub version: &'a str,
    /// The Job that ran the check.
    pub job_name: &'a str,
    /// What the monitor does about it: `Notify`, `Rollback`, `Promote`, or `Held` /
    /// `Skipped` with the reason in `message`.
    pub action: String,
    pub message: String,
    pub report: &'a DriftReport,
}

/// HMAC-SHA256 (RFC 2104) of `body` under `key`, as lowercase hex.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut k = if key.len() > BLOCK {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(BLOCK, 0);
    let pad = |byte: u8| k.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(body)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    hex::encode(outer)
}

/// The outcome of a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub delivered: bool,
    pub attempts: u32,
    pub error: Option<String>,
}

/// POST `payload` to `url`, signed with `secret` when given; retries connection errors,
/// 429 and 5xx with doubling backoff, at most `ATTEMPTS` tries (virtual time in tests:
/// `tokio::time`).
pub async fn deliver(
    http: &reqwest::Client,
    url: &str,
    secret: Option<&[u8]>,
    payload: &Payload<'_>,
) -> Delivery {
    let body = match serde_json::to_vec(payload) {
        Ok(body) => body,
        Err(e) => {
            return Delivery {
                delivered: false,
                attempts: 0,
                error: Some(e.to_string()),
            };
        }
    };
    let mut attempts = 0;
    let attempt = || {
        attempts += 1;
        let mut request = http
            .post(url)
            .timeout(ATTEMPT_TIMEOUT)
            .header("Content-Type", "application/json")
            .body(body.clone());
        if let Some(key) = secret {
            request = request.header(SIGNATURE_HEADER, format!("sha256={}", sign(key, &body)));
        }
        async move {
            match request.send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => {
                    let status = r.status();
                    Err(Failure {
                        error: format!("{url} answered {status}"),
                        retry: status.is_server_error() || status.as_u16() == 429,
                    })
                }
                Err(e) => Err(Failure {
                    error: format!("{url}: {e}"),
                    retry: true,
                }),
            }
        }
    };
    let outcome = attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(BACKOFF_BASE)
                .with_max_times(ATTEMPTS as usize - 1),
        )
        .sleep(tokio::time::sleep)
        .when(|f: &Failure| f.retry)
        .await;
    Delivery {
        delivered: outcome.is_ok(),
        attempts,
        error: outcome.err().map(|f| f.error),
    }
}

/// Why an attempt failed, and whether another may succeed.
struct Failure {
    error: String,
    retry: bool,
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 of RFC 4231.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            sign(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    fn report() -> DriftReport {
        serde_json::from_value(serde_json::json!({
            "verdict": "Drift", "model": "iris-classifier", "modelVersion": "3",
            "samples": 500, "referenceSamples": 150, "driftShare": 0.75,
            "driftShareThreshold": 0.5
        }))
        .unwrap()
    }

    /// A webhook that fails `failures` times with 503, then records the request.
    async fn server(failures: usize) -> (String, Arc<Mutex<Vec<(HeaderMap, String)>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(Mutex::new(0usize));
        let app = Router::new().route(
            "/hook",
            post({
                let seen = seen.clone();
                move |headers: HeaderMap, body: String| {
                    let seen = seen.clone();
                    let calls = calls.clone();
                    async move {
                        let mut n = calls.lock().unwrap();
                        *n += 1;
                        if *n <= failures {
                            return StatusCode::SERVICE_UNAVAILABLE;
                        }
                        seen.lock().unwrap().push((headers, body));
                        StatusCode::NO_CONTENT
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/hook"), seen)
    }

    fn payload(report: &DriftReport) -> Payload<'_> {
        Payload {
            event: "DriftDetected",
            namespace: "ml",
            monitor: "iris-drift",
            target: "iris",
            version: "3",
            job_name: "iris-drift-1",
            action: "Notify".into(),
            message: "drift share 0.75".into(),
            report,
        }
    }

    #[tokio::test]
    async fn signed_report_is_delivered_after_retries() {
        let (url, seen) = server(2).await;
        let r = report();
        let d = deliver(&reqwest::Client::new(), &url, Some(b"s3cret"), &payload(&r)).await;
        assert_eq!(
            d,
            Delivery {
                delivered: true,
                attempts: 3,
                error: None
            }
        );
        let seen = seen.lock().unwrap();
        let (headers, body) = &seen[0];
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["monitor"], "iris-drift");
        assert_eq!(json["report"]["driftShare"], 0.75);
        assert_eq!(
            headers[SIGNATURE_HEADER].to_str().unwrap(),
            format!("sha256={}", sign(b"s3cret", body.as_bytes()))
        );
    }

    #[tokio::test]
    async fn unreachable_webhook_fails_with_the_reason() {
        let (url, _) = server(10).await;
        let r = report();
        let d = deliver(&reqwest::Client::new(), &url, None, &payload(&r)).await;
        assert!(!d.delivered);
        assert_eq!(d.attempts, 3);
        assert!(d.error.unwrap().contains("503"));
    }
}
