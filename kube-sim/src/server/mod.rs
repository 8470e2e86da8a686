//! The HTTP side: a tower `Service` that kube's `Client` sends its requests to.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use serde_json::{Value, json};

use crate::log::{self, Verb};
use crate::resources::{self, ResourceType, Target};
use crate::select::Selector;
use crate::store::Key;
use crate::{Inner, OutageKind, State};

mod watch;
pub(crate) mod write;

/// The response body: JSON, or a stream of watch events.
pub type SimBody = UnsyncBoxBody<Bytes, Infallible>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The simulated API server as one client sees it: a tower `Service` for
/// [`kube::Client::new`] (its response body is a streaming body rather than
/// `kube::client::Body`, which cannot be built streaming outside kube).
#[derive(Clone)]
pub struct SimService {
    inner: Arc<Inner>,
    client: Arc<str>,
}

impl SimService {
    pub(crate) fn new(inner: Arc<Inner>, client: &str) -> Self {
        SimService {
            inner,
            client: client.into(),
        }
    }
}

impl tower::Service<Request<kube::client::Body>> for SimService {
    type Response = Response<SimBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
        let inner = self.inner.clone();
        let client = self.client.clone();
        Box::pin(async move { handle(inner, client, request).await })
    }
}

fn full(bytes: Vec<u8>) -> SimBody {
    http_body_util::Full::new(Bytes::from(bytes)).boxed_unsync()
}

/// An API error, answered as a `Status` object.
pub struct ApiError {
    code: StatusCode,
    reason: &'static str,
    message: String,
    details: Value,
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: json!({}),
        }
    }

    fn about(mut self, rt: &ResourceType, name: &str) -> Self {
        self.details = json!({"name": name, "group": rt.group, "kind": rt.plural});
        self
    }

    fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", rt.qualified_plural()),
        )
        .about(rt, name)
    }

    fn conflict(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                rt.qualified_plural()
            ),
        )
        .about(rt, name)
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    fn status(&self) -> Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "details": self.details,
            "code": self.code.as_u16(),
        })
    }

    fn response(&self) -> Response<SimBody> {
        json_response(self.code, &self.status())
    }
}

fn json_response(code: StatusCode, body: &Value) -> Response<SimBody> {
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(full(serde_json::to_vec(body).expect("JSON")))
        .expect("response")
}

type Answer = Result<(StatusCode, Value), ApiError>;

/// What the request log needs to know about a request.
struct Parsed {
    method: Method,
    target: Result<Target, String>,
    query: BTreeMap<String, String>,
    content_type: String,
}

fn verb_of(p: &Parsed) -> Verb {
    let Ok(Target::Resource { name, .. }) = &p.target else {
        return Verb::Other;
    };
    match (&p.method, name.is_some()) {
        (&Method::GET, true) => Verb::Get,
        (&Method::GET, false)
            if p.query
                .get("watch")
                .is_some_and(|w| w == "true" || w == "1") =>
        {
            Verb::Watch
        }
        (&Method::GET, false) => Verb::List,
        (&Method::POST, _) => Verb::Create,
        (&Method::PUT, _) => Verb::Update,
        (&Method::PATCH, _) if p.content_type.starts_with("application/apply-patch") => Verb::Apply,
        (&Method::PATCH, _) => Verb::Patch,
        (&Method::DELETE, _) => Verb::Delete,
        _ => Verb::Other,
    }
}

async fn handle(
    inner: Arc<Inner>,
    client: Arc<str>,
    request: Request<kube::client::Body>,
) -> Result<Response<SimBody>, BoxError> {
    let (parts, body) = request.into_parts();
    let query: BTreeMap<String, String> =
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let parsed = Parsed {
        method: parts.method.clone(),
        target: resources::parse_path(parts.uri.path()),
        query,
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
    };
    let body = body.collect_bytes().await?;

    let latency = {
        let state = inner.lock();
        state
            .faults
            .latency
            .iter()
            .filter(|(c, _)| c.as_deref().is_none_or(|c| c == &*client))
            .map(|(_, d)| *d)
            .max()
    };
    if let Some(latency) = latency {
        tokio::time::sleep(latency).await;
    }

    let verb = verb_of(&parsed);
    let record = |code: u16| {
        let mut r = log::Request {
            client: client.to_string(),
            verb,
            group: String::new(),
            resource: parts.uri.path().to_string(),
            namespace: None,
            name: None,
            subresource: None,
            field_manager: parsed.query.get("fieldManager").cloned(),
            code,
            at: crate::store::since(inner.start),
        };
        if let Ok(Target::Resource {
            resource,
            namespace,
            name,
            subresource,
        }) = &parsed.target
        {
            let rt = resources::get(*resource);
            r.group = rt.group.into();
            r.resource = rt.plural.into();
            r.namespace = namespace.clone();
            r.name = name.clone();
            r.subresource = subresource.clone();
        }
        inner.lock().log.push(r);
    };

    let out = outage(&inner.lock(), &client);
    if let Some(kind) = out {
        match kind {
            OutageKind::ConnectionError => {
                record(0);
                return Err("simulated API server: connection refused".into());
            }
            OutageKind::ServiceUnavailable => {
                let e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "the server is currently unable to handle the request",
                );
                record(503);
                return Ok(e.response());
            }
        }
    }

    let unsupported = if parsed.query.contains_key("dryRun") {
        Some("dry runs are not simulated")
    } else if parts
        .headers
        .get(http::header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadata") || a.contains("as=Table"))
    {
        Some("metadata-only and table responses are not simulated")
    } else {
        None
    };
    if let Some(why) = unsupported {
        let e = ApiError::bad_request(format!("mooring-kube-sim: {why}"));
        record(400);
        return Ok(e.response());
    }

    let response = match (&parsed.target, verb) {
        (Ok(Target::Version), _) => json_response(
            StatusCode::OK,
            &json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-sim", "gitCommit": "",
                "gitTreeState": "clean", "buildDate": crate::EPOCH, "goVersion": "go1.24",
                "compiler": "gc", "platform": "linux/amd64",
            }),
        ),
        (Err(path), _) => ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
        .response(),
        (Ok(Target::Resource { .. }), Verb::Watch) => {
            match watch::watch(&inner, &client, &parsed) {
                Ok(response) => response,
                Err(e) => e.response(),
            }
        }
        (Ok(target @ Target::Resource { .. }), _) => {
            let answer = inner.mutate(|state| dispatch(state, &client, &parsed, target, &body));
            match answer {
                Ok((code, value)) => json_response(code, &value),
                Err(e) => e.response(),
            }
        }
    };
    record(response.status().as_u16());
    Ok(response)
}

fn outage(state: &State, client: &str) -> Option<OutageKind> {
    let now = tokio::time::Instant::now();
    state
        .faults
        .outages
        .iter()
        .find(|o| o.until > now && o.client.as_deref().is_none_or(|c| c == client))
        .map(|o| o.kind)
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body)
        .or_else(|_| serde_yaml::from_slice(body))
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

fn dispatch(state: &mut State, client: &str, p: &Parsed, target: &Target, body: &[u8]) -> Answer {
    let Target::Resource {
        resource,
        namespace,
        name,
        subresource,
    } = target
    else {
        unreachable!("dispatch of a resource");
    };
    let rt = resources::get(*resource);
    let body = parse_body(body)?;
    if let Some(sub) = subresource
        && (sub != "status" || !rt.status_subresource)
    {
        return Err(ApiError::not_found(
            rt,
            &format!("{}/{sub}", name.as_deref().unwrap_or("")),
        ));
    }
    let status_sub = subresource.is_some();
    let manager = p
        .query
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| client.to_string());
    let ns = namespace.clone().unwrap_or_default();

    if p.method == Method::GET && name.is_none() {
        return list(state, *resource, namespace.as_deref(), p);
    }
    if p.method == Method::POST {
        if namespace.is_none() {
            return Err(ApiError::bad_request(
                "the simulator serves namespaced types only",
            ));
        }
        return write::create(state, *resource, &ns, body, &manager);
    }
    let Some(name) = name else {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ));
    };
    let key = Key {
        resource: *resource,
        namespace: ns,
        name: name.clone(),
    };
    if p.method == Method::GET {
        return state
            .store
            .get(&key)
            .map(|v| (StatusCode::OK, v.clone()))
            .ok_or_else(|| ApiError::not_found(rt, name));
    }
    check_write_faults(state, &key, &body)?;
    let sub = status_sub.then_some("status");
    match p.method {
        Method::PUT => write::replace(state, &key, sub, body, &manager),
        Method::PATCH => write::patch(state, &key, sub, body, p, &manager),
        Method::DELETE => write::delete(state, &key, &body),
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )),
    }
}

fn check_write_faults(state: &mut State, key: &Key, body: &Value) -> Result<(), ApiError> {
    let rt = resources::get(key.resource);
    if let Some((_, n)) = state
        .faults
        .conflicts
        .iter_mut()
        .find(|(k, n)| k == key && *n > 0)
    {
        *n -= 1;
        return Err(ApiError::conflict(rt, &key.name));
    }
    for rejection in state.faults.rejections.iter().filter(|r| &r.key == key) {
        if let Some(cause) = (rejection.check)(body) {
            let mut e = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!(
                    "{} \"{}\" is invalid: {cause}",
                    rt.qualified_kind(),
                    key.name
                ),
            )
            .about(rt, &key.name);
            let field = cause.split(':').next().unwrap_or("").to_string();
            e.details["kind"] = json!(rt.kind);
            e.details["causes"] =
                json!([{"reason": "FieldValueInvalid", "message": cause, "field": field}]);
            return Err(e);
        }
    }
    Ok(())
}

fn list(state: &State, resource: usize, namespace: Option<&str>, p: &Parsed) -> Answer {
    let rt = resources::get(resource);
    let selector = Selector::parse(
        p.query.get("labelSelector").map(String::as_str),
        p.query.get("fieldSelector").map(String::as_str),
    )
    .map_err(ApiError::bad_request)?;
    let items: Vec<Value> = state
        .store
        .list(resource, namespace)
        .into_iter()
        .map(|(_, v)| v)
        .filter(|v| selector.matches(v))
        .collect();
    Ok((
        StatusCode::OK,
        json!({
            "kind": format!("{}List", rt.kind),
            "apiVersion": rt.api_version(),
            "metadata": {"resourceVersion": state.store.rv.to_string()},
            "items": items,
        }),
    ))
}
