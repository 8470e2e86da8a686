//! A scripted Kubernetes API server for tests: each expected request is checked (method,
//! path, query, body) and answered in order; an unexpected extra request makes the code
//! under test wait for an answer that never comes, which the test's timeout turns into a
//! failure.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::Value;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// A generous bound for one scripted exchange; tests fail instead of hanging.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `reconcile` against `server` as `script` drives it; both must finish within
/// [`STEP_TIMEOUT`]. The script hands the server back, so it stays up until the reconcile is
/// done: a request beyond the script then goes unanswered and the reconcile hangs into the
/// timeout, rather than failing quietly (as an Event would).
pub async fn run_scripted<R, F>(
    server: ApiServer,
    reconcile: R,
    script: impl FnOnce(ApiServer) -> F,
) -> R::Output
where
    R: std::future::Future,
    F: std::future::Future<Output = ApiServer> + Send + 'static,
{
    let scripted = tokio::spawn(script(server));
    let outcome = tokio::time::timeout(STEP_TIMEOUT, reconcile)
        .await
        .expect("reconcile hung: it sent a request the script did not expect");
    let server = tokio::time::timeout(STEP_TIMEOUT, scripted)
        .await
        .expect("script unfinished")
        .expect("script panicked");
    drop(server);
    outcome
}

pub struct ApiServer {
    handle: Handle,
}

/// One request received.
pub struct Exchange {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub body: Value,
    send: tower_test::mock::SendResponse<Response<Body>>,
}

impl Exchange {
    /// Answer with `status` and a JSON body.
    pub fn reply(self, status: StatusCode, body: &Value) {
        let bytes = serde_json::to_vec(body).expect("JSON");
        self.send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(bytes))
                .expect("response"),
        );
    }

    /// Answer 200 with the request's own body (what an apply returns, near enough).
    pub fn echo(self) {
        let body = self.body.clone();
        self.reply(StatusCode::OK, &body);
    }

    /// Answer 404 Not Found, as the API server does.
    pub fn not_found(self) {
        let status = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "not found", "reason": "NotFound", "code": 404
        });
        self.reply(StatusCode::NOT_FOUND, &status);
    }

    /// Assert this is a server-side apply under the operator's field manager.
    pub fn assert_apply(&self) {
        assert_eq!(self.method, Method::PATCH, "{}", self.path);
        assert_eq!(
            self.query.get("fieldManager").map(String::as_str),
            Some("mooring-operator"),
            "{}",
            self.path
        );
        assert_eq!(
            self.query.get("force").map(String::as_str),
            Some("true"),
            "{}",
            self.path
        );
    }
}

/// A client talking to a scripted API server.
pub fn pair() -> (Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer { handle })
}

impl ApiServer {
    /// The next request, which must be `method` on `path` (without the query).
    pub async fn expect(&mut self, method: Method, path: &str) -> Exchange {
        let next = tokio::time::timeout(STEP_TIMEOUT, self.handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request came; expected {method} {path}"))
            .unwrap_or_else(|| panic!("client gone; expected {method} {path}"));
        let (request, send) = next;
        let uri = request.uri().clone();
        assert_eq!(
            (request.method(), uri.path()),
            (&method, path),
            "unexpected request {} {uri}",
            request.method()
        );
        let query = url_query(uri.query().unwrap_or(""));
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON request body")
        };
        Exchange {
            method,
            path: path.to_string(),
            query,
            body,
            send,
        }
    }
}

impl ApiServer {
    /// The next request, whatever it is (for tests that answer every request alike);
    /// `None` once the client is gone.
    pub async fn next_any(&mut self) -> Option<Exchange> {
        let (request, send) = self.handle.next_request().await?;
        let uri = request.uri().clone();
        let method = request.method().clone();
        let query = url_query(uri.query().unwrap_or(""));
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON request body")
        };
        Some(Exchange {
            method,
            path: uri.path().to_string(),
            query,
            body,
            send,
        })
    }
}

fn url_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                k.to_string(),
                v.replace("%2F", "/")
                    .replace("%3D", "=")
                    .replace("%2C", ","),
            )
        })
        .collect()
}
