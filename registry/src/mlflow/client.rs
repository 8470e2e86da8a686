//! HTTP to MLflow: auth, timeouts, and retries with exponential backoff on connection
//! errors, 429 and 5xx (never on other 4xx: those stay wrong however often they are sent).
//!
//! A call that creates something ([`Retry::Once`]) is retried only when it surely did not
//! reach MLflow (no connection, 429): after a timeout or a 5xx it may have taken effect, and
//! sending it again would create a second run or version. Its caller looks first (see
//! `register::create_once`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::{Error, RegistryConfig, Result};

/// The longest single backoff delay, however many retries are configured.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
enum Auth {
    None,
    Bearer(String),
    Basic(String, String),
}

/// Whether a call may be sent again after a failure that may have taken effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads, and writes whose repetition changes nothing.
    Idempotent,
    /// Creations: retried only when the request surely did not take effect.
    Once,
}

/// What MLflow answered to a failed call: HTTP status, its `error_code` and `message`.
#[derive(Debug)]
pub(crate) enum Failure {
    Http {
        status: u16,
        code: String,
        message: String,
    },
    Transport {
        message: String,
        /// The request may have reached MLflow (a timeout, a connection lost mid-answer).
        maybe_applied: bool,
        /// Sending it again cannot help (an invalid request, a redirect loop).
        fatal: bool,
    },
}

impl Failure {
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            Failure::Http { status, .. } => Some(*status),
            Failure::Transport { .. } => None,
        }
    }

    fn transport(e: &reqwest::Error) -> Self {
        Failure::Transport {
            message: error_chain(e),
            maybe_applied: !e.is_connect(),
            fatal: e.is_builder() || e.is_redirect(),
        }
    }

    /// True when the call failed but may have taken effect in MLflow.
    pub(crate) fn maybe_applied(&self) -> bool {
        match self {
            Failure::Http { status, .. } => *status >= 500,
            Failure::Transport { maybe_applied, .. } => *maybe_applied,
        }
    }

    /// True when sending the same call again may succeed.
    pub(crate) fn transient(&self) -> bool {
        match self {
            Failure::Http { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS.as_u16() || *status >= 500
            }
            Failure::Transport { fatal, .. } => !fatal,
        }
    }

    fn retryable(&self, retry: Retry) -> bool {
        self.transient() && (retry == Retry::Idempotent || !self.maybe_applied())
    }

    fn with_attempts(self, attempts: u32) -> Self {
        match self {
            Failure::Transport {
                message,
                maybe_applied,
                fatal,
            } if attempts > 1 => Failure::Transport {
                message: format!("{message} (gave up after {attempts} attempts)"),
                maybe_applied,
                fatal,
            },
            other => other,
        }
    }

    /// The crate error for this failure of `call` (e.g. `GET registered-models/alias`).
    pub(crate) fn into_error(self, call: &str, base: &Url) -> Error {
        match self {
            Failure::Transport { message, .. } => {
                Error::Unreachable(format!("{call} at {base}: {message}"))
            }
            Failure::Http {
                status,
                code,
                message,
            } => Error::Api {
                call: call.to_string(),
                status: Some(status),
                message: if code.is_empty() {
                    format!("HTTP {status}: {message}")
                } else {
                    format!("HTTP {status} {code}: {message}")
                },
            },
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    pub(crate) base: Url,
    auth: Auth,
    max_retries: u32,
    retry_base_delay: Duration,
    request_timeout: Duration,
    download_timeout: Duration,
}

impl Client {
    pub(crate) fn new(config: &RegistryConfig) -> Result<Self> {
        let base = Url::parse(config.location.trim().trim_end_matches('/')).map_err(|e| {
            Error::invalid_arg(
                "registry location",
                format!("{:?} is not a URL: {e}", config.location),
            )
        })?;
        let auth = match (&config.token, &config.username, &config.password) {
            (Some(t), _, _) => Auth::Bearer(t.clone()),
            (None, Some(u), Some(p)) => Auth::Basic(u.clone(), p.clone()),
            _ => Auth::None,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("mooring-registry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::invalid_arg(
                    "registry location",
                    format!("cannot build an HTTP client: {e}"),
                )
            })?;
        Ok(Self {
            http,
            base,
            auth,
            max_retries: config.max_retries,
            retry_base_delay: config.retry_base_delay,
            request_timeout: config.request_timeout,
            download_timeout: config.download_timeout,
        })
    }

    /// `base` + `path` (path segments are percent-encoded one by one).
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        {
            let mut p = url.path_segments_mut().expect("http(s) URLs have a path");
            p.pop_if_empty();
            for s in segments {
                for part in s.split('/').filter(|x| !x.is_empty()) {
                    p.push(part);
                }
            }
        }
        url
    }

    fn authorize(&self, rb: RequestBuilder) -> RequestBuilder {
        match &self.auth {
            Auth::None => rb,
            Auth::Bearer(t) => rb.bearer_auth(t),
            Auth::Basic(u, p) => rb.basic_auth(u, Some(p)),
        }
    }

    /// The backoff between attempts: exponential from the configured base delay, capped.
    pub(crate) fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.retry_base_delay)
            .with_max_delay(MAX_BACKOFF)
            .with_max_times(self.max_retries as usize)
    }

    /// Send the request `build` makes, retrying the failures `retry` allows; returns the
    /// response of the first success, or the last failure.
    async fn send(
        &self,
        call: &str,
        retry: Retry,
        build: impl Fn() -> RequestBuilder,
    ) -> std::result::Result<reqwest::Response, Failure> {
        let attempts = AtomicU32::new(0);
        let attempt = || async {
            attempts.fetch_add(1, Ordering::Relaxed);
            match self.authorize(build()).send().await {
                Ok(resp) if resp.status().is_success() => Ok(resp),
                Ok(resp) => Err(failure_from(resp).await),
                Err(e) => Err(Failure::transport(&e)),
            }
        };
        attempt
            .retry(self.backoff())
            .sleep(tokio::time::sleep)
            .when(|f: &Failure| f.retryable(retry))
            .notify(|f: &Failure, delay: Duration| {
                let attempt = attempts.load(Ordering::Relaxed);
                tracing::warn!(call, attempt, ?delay, outcome = %describe(f), "MLflow call failed, retrying");
            })
            .await
            .map_err(|f| f.with_attempts(attempts.load(Ordering::Relaxed)))
    }

    /// A JSON call to the REST API (`/api/2.0/mlflow/<endpoint>`).
    /// GET and DELETE are retried; a POST or PATCH only when [`Client::call_idempotent`]
    /// says its repetition changes nothing.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> std::result::Result<T, Failure> {
        let retry = if method == Method::GET || method == Method::DELETE {
            Retry::Idempotent
        } else {
            Retry::Once
        };
        self.call_with(retry, method, endpoint, query, body).await
    }

    /// A write whose repetition changes nothing (an update to fixed values, a creation that
    /// answers RESOURCE_ALREADY_EXISTS the second time): retried like a read.
    pub(crate) async fn call_idempotent<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        body: &serde_json::Value,
    ) -> std::result::Result<T, Failure> {
        self.call_with(Retry::Idempotent, method, endpoint, &[], Some(body))
            .await
    }

    async fn call_with<T: DeserializeOwned>(
        &self,
        retry: Retry,
        method: Method,
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> std::result::Result<T, Failure> {
        let url = self.url(&["api/2.0/mlflow", endpoint]);
        let call = format!("{method} {endpoint}");
        let resp = self
            .send(&call, retry, || {
                let mut rb = self
                    .http
                    .request(method.clone(), url.clone())
                    .timeout(self.request_timeout);
                if !query.is_empty() {
                    rb = rb.query(query);
                }
                if let Some(b) = body {
                    rb = rb.json(b);
                }
                rb
            })
            .await?;
        json_body(resp, "the answer").await
    }

    /// GET an artifact through the proxy (`/api/2.0/mlflow-artifacts/artifacts/<path>`).
    pub(crate) async fn download(&self, path: &str) -> std::result::Result<bytes::Bytes, Failure> {
        let url = self.url(&["api/2.0/mlflow-artifacts/artifacts", path]);
        let resp = self
            .send("GET mlflow-artifacts/artifacts", Retry::Idempotent, || {
                self.http.get(url.clone()).timeout(self.download_timeout)
            })
            .await?;
        resp.bytes().await.map_err(|e| Failure::transport(&e))
    }

    /// PUT an artifact through the proxy.
    pub(crate) async fn upload(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> std::result::Result<(), Failure> {
        let url = self.url(&["api/2.0/mlflow-artifacts/artifacts", path]);
        // A PUT of the same bytes to the same path: repeating it changes nothing.
        self.send("PUT mlflow-artifacts/artifacts", Retry::Idempotent, || {
            self.http
                .put(url.clone())
                .timeout(self.download_timeout)
                .body(body.clone())
        })
        .await
        .map(drop)
    }

    /// List a directory of artifacts through the proxy.
    pub(crate) async fn list_artifacts(
        &self,
        path: &str,
    ) -> std::result::Result<serde_json::Value, Failure> {
        let url = self.url(&["api/2.0/mlflow-artifacts/artifacts"]);
        let resp = self
            .send(
                "GET mlflow-artifacts/artifacts (list)",
                Retry::Idempotent,
                || {
                    self.http
                        .get(url.clone())
                        .timeout(self.request_timeout)
                        .query(&[("path", path)])
                },
            )
            .await?;
        json_body(resp, "the artifact listing").await
    }
}

/// The JSON body of a successful answer; `what` names it in the error.
async fn json_body<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    what: &str,
) -> std::result::Result<T, Failure> {
    let bytes = resp.bytes().await.map_err(|e| Failure::transport(&e))?;
    serde_json::from_slice(&bytes).map_err(|e| Failure::Http {
        status: 200,
        code: "UNEXPECTED_RESPONSE".into(),
        message: format!("cannot parse {what} ({e}): {}", snippet(&bytes)),
    })
}

async fn failure_from(resp: reqwest::Response) -> Failure {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct MlflowError {
        #[serde(default)]
        error_code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<MlflowError>(&bytes) {
        Ok(e) if !e.message.is_empty() || !e.error_code.is_empty() => Failure::Http {
            status,
            code: e.error_code,
            message: e.message,
        },
        _ => Failure::Http {
            status,
            code: String::new(),
            message: snippet(&bytes),
        },
    }
}

fn describe(failure: &Failure) -> String {
    match failure {
        Failure::Http { status, .. } => format!("HTTP {status}"),
        Failure::Transport { message, .. } => message.clone(),
    }
}

/// reqwest's top-level message is vague ("error sending request"); the cause says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

fn snippet(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    if s.len() > 300 {
        format!("{}…", &s[..s.floor_char_boundary(300)])
    } else {
        s.to_string()
    }
}
