//! HTTP to MLflow: auth, timeouts, and retries with exponential backoff on connection
//! errors, 429 and 5xx (never on other 4xx: those stay wrong however often they are sent).

use std::time::Duration;

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

/// What MLflow answered to a failed call: HTTP status, its `error_code` and `message`.
#[derive(Debug)]
pub(crate) enum Failure {
    Http {
        status: u16,
        code: String,
        message: String,
    },
    Transport(String),
}

impl Failure {
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            Failure::Http { status, .. } => Some(*status),
            Failure::Transport(_) => None,
        }
    }

    /// The crate error for this failure of `call` (e.g. `GET registered-models/alias`).
    pub(crate) fn into_error(self, call: &str, base: &Url) -> Error {
        match self {
            Failure::Transport(msg) => Error::Unreachable(format!("{call} at {base}: {msg}")),
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

    /// Send the request `build` makes, retrying transient failures; returns the response of
    /// the first success or non-retryable failure.
    async fn send(
        &self,
        call: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> std::result::Result<reqwest::Response, Failure> {
        let mut attempt = 0;
        loop {
            let outcome = self.authorize(build()).send().await;
            let retryable = match &outcome {
                Ok(resp) => {
                    let s = resp.status();
                    s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error()
                }
                Err(e) => !e.is_builder() && !e.is_redirect(),
            };
            if !retryable || attempt >= self.max_retries {
                return match outcome {
                    Ok(resp) if resp.status().is_success() => Ok(resp),
                    Ok(resp) => Err(failure_from(resp).await),
                    Err(e) => Err(Failure::Transport(if attempt > 0 {
                        format!(
                            "{} (gave up after {} attempts)",
                            error_chain(&e),
                            attempt + 1
                        )
                    } else {
                        error_chain(&e)
                    })),
                };
            }
            let delay = self
                .retry_base_delay
                .saturating_mul(1 << attempt.min(16))
                .min(MAX_BACKOFF);
            tracing::warn!(call, attempt = attempt + 1, ?delay, outcome = %describe(&outcome), "MLflow call failed, retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// A JSON call to the REST API (`/api/2.0/mlflow/<endpoint>`).
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> std::result::Result<T, Failure> {
        let url = self.url(&["api/2.0/mlflow", endpoint]);
        let call = format!("{method} {endpoint}");
        let resp = self
            .send(&call, || {
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
            .send("GET mlflow-artifacts/artifacts", || {
                self.http.get(url.clone()).timeout(self.download_timeout)
            })
            .await?;
        resp.bytes()
            .await
            .map_err(|e| Failure::Transport(error_chain(&e)))
    }

    /// PUT an artifact through the proxy.
    pub(crate) async fn upload(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> std::result::Result<(), Failure> {
        let url = self.url(&["api/2.0/mlflow-artifacts/artifacts", path]);
        self.send("PUT mlflow-artifacts/artifacts", || {
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
            .send("GET mlflow-artifacts/artifacts (list)", || {
                self.http
                    .get(url.clone())
                    .timeout(self.request_timeout)
                    .query(&[("path", path)])
            })
            .await?;
        json_body(resp, "the artifact listing").await
    }
}

/// The JSON body of a successful answer; `what` names it in the error.
async fn json_body<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    what: &str,
) -> std::result::Result<T, Failure> {
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| Failure::Transport(error_chain(&e)))?;
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

fn describe(outcome: &reqwest::Result<reqwest::Response>) -> String {
    match outcome {
        Ok(r) => format!("HTTP {}", r.status()),
        Err(e) => error_chain(e),
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
