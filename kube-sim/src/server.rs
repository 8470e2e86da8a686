//! The HTTP side: a tower `Service` that kube's `Client` sends its requests to.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use serde_json::{Value, json};

use crate::fields::{self, FieldSet};
use crate::log::{self, Verb};
use crate::resources::{self, ResourceType, Target};
use crate::select::Selector;
use crate::store::{ChangeType, Key};
use crate::{Inner, OutageKind, State};

pub type SimBody = UnsyncBoxBody<Bytes, Infallible>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The simulated API server as one client sees it.
#[derive(Clone)]
pub struct SimService {
    inner: Arc<Inner>,
    client: Arc<str>,
}

impl SimService {
    pub fn new(inner: Arc<Inner>, client: &str) -> Self {
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
        (Ok(Target::Resource { .. }), Verb::Watch) => match watch(&inner, &client, &parsed) {
            Ok(response) => response,
            Err(e) => e.response(),
        },
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
        return create(state, *resource, &ns, body, &manager);
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
        Method::PUT => replace(state, &key, sub, body, &manager),
        Method::PATCH => patch(state, &key, sub, body, p, &manager),
        Method::DELETE => delete(state, &key, &body),
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

/// The managed-fields entries of an object.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    subresource: Option<String>,
    api_version: String,
    time: String,
    fields: FieldSet,
}

fn entries_of(object: &Value) -> Vec<Entry> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or("").into(),
                    operation: e["operation"].as_str().unwrap_or("").into(),
                    subresource: e["subresource"].as_str().map(str::to_string),
                    api_version: e["apiVersion"].as_str().unwrap_or("").into(),
                    time: e["time"].as_str().unwrap_or("").into(),
                    fields: fields::from_fields_v1(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn set_entries(object: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": fields::to_fields_v1(&e.fields),
            });
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    if list.is_empty() {
        if let Some(m) = object["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        object["metadata"]["managedFields"] = Value::Array(list);
    }
}

/// Keep only what a write to `sub` may change: for the main resource of a type with a
/// status subresource, the status is the stored one; for `/status`, only the status.
fn mask(rt: &ResourceType, old: Option<&Value>, mut new: Value, sub: Option<&str>) -> Value {
    match (sub, old) {
        (Some(_), Some(old)) => {
            let mut out = old.clone();
            match new.get_mut("status").map(Value::take) {
                Some(status) => out["status"] = status,
                None => {
                    if let Some(m) = out.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            // Metadata other than these is ignored on the status subresource.
            out
        }
        (None, old) if rt.status_subresource => {
            if let Some(m) = new.as_object_mut() {
                m.remove("status");
                if let Some(s) = old.and_then(|o| o.get("status")) {
                    m.insert("status".into(), s.clone());
                }
            }
            new
        }
        _ => new,
    }
}

/// Record an update operation by `manager`: it owns what it changed; nobody owns what is
/// gone.
fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    sub: Option<&str>,
    now: &str,
) {
    let mut entries = old.map(entries_of).unwrap_or_default();
    let mut changed = FieldSet::new();
    let scope = scoped(new, sub);
    for path in fields::fields_of(&scope) {
        let before = old.and_then(|o| fields::get(o, &path));
        if before != fields::get(new, &path) {
            changed.insert(path);
        }
    }
    finish_entries(
        &mut entries,
        new,
        changed,
        manager,
        "Update",
        sub,
        now,
        false,
    );
    set_entries(new, &entries);
}

/// The part of `object` a write to `sub` covers, for field sets.
fn scoped(object: &Value, sub: Option<&str>) -> Value {
    let mut v = object.clone();
    if let Some(m) = v.as_object_mut() {
        if sub.is_some() {
            m.retain(|k, _| k == "status");
        } else {
            m.remove("status");
        }
    }
    v
}

#[allow(clippy::too_many_arguments)]
fn finish_entries(
    entries: &mut Vec<Entry>,
    new: &Value,
    owned: FieldSet,
    manager: &str,
    operation: &str,
    sub: Option<&str>,
    now: &str,
    replace_set: bool,
) {
    let api_version = new["apiVersion"].as_str().unwrap_or("").to_string();
    let is_mine = |e: &Entry| {
        e.manager == manager && e.operation == operation && e.subresource.as_deref() == sub
    };
    if operation == "Update" {
        for e in entries.iter_mut().filter(|e| !is_mine(e)) {
            e.fields.retain(|p| !owned.contains(p));
        }
    }
    match entries.iter_mut().find(|e| is_mine(e)) {
        Some(e) => {
            if replace_set {
                e.fields = owned;
            } else {
                e.fields.extend(owned);
            }
            e.time = now.into();
            e.api_version = api_version;
        }
        None => entries.push(Entry {
            manager: manager.into(),
            operation: operation.into(),
            subresource: sub.map(str::to_string),
            api_version,
            time: now.into(),
            fields: owned,
        }),
    }
    for e in entries.iter_mut() {
        e.fields.retain(|p| fields::get(new, p).is_some());
    }
    entries.retain(|e| !e.fields.is_empty());
}

fn create(state: &mut State, resource: usize, ns: &str, mut body: Value, manager: &str) -> Answer {
    let rt = resources::get(resource);
    if !body.is_object() {
        return Err(ApiError::bad_request("the body must be an object"));
    }
    let name = match (
        body["metadata"]["name"].as_str(),
        body["metadata"]["generateName"].as_str(),
    ) {
        (Some(n), _) if !n.is_empty() => n.to_string(),
        (_, Some(prefix)) => format!("{prefix}{}", state.store.suffix(5)),
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!(
                    "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                    rt.qualified_kind()
                ),
            ));
        }
    };
    let key = Key {
        resource,
        namespace: ns.into(),
        name: name.clone(),
    };
    check_write_faults(state, &key, &body)?;
    if state.store.get(&key).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.qualified_plural()),
        )
        .about(rt, &name));
    }
    if rt.status_subresource
        && let Some(m) = body.as_object_mut()
    {
        m.remove("status");
    }
    if let Some(m) = body["metadata"].as_object_mut() {
        m.remove("managedFields");
        m.remove("resourceVersion");
    }
    body["apiVersion"] = json!(rt.api_version());
    let now = state.store.now();
    record_update(None, &mut body, manager, None, &now);
    Ok((StatusCode::CREATED, state.store.insert(key, body)))
}

fn check_rv(rt: &ResourceType, key: &Key, old: &Value, body: &Value) -> Result<(), ApiError> {
    match body["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() && Some(rv) != old["metadata"]["resourceVersion"].as_str() => {
            Err(ApiError::conflict(rt, &key.name))
        }
        _ => Ok(()),
    }
}

/// Store the result of an update-type write (replace, merge patch, JSON patch).
fn write_update(
    state: &mut State,
    key: &Key,
    old: &Value,
    candidate: Value,
    sub: Option<&str>,
    manager: &str,
) -> Answer {
    let rt = resources::get(key.resource);
    let mut new = mask(rt, Some(old), candidate, sub);
    if let Some(m) = new["metadata"].as_object_mut() {
        m.insert(
            "managedFields".into(),
            old["metadata"]["managedFields"].clone(),
        );
        if m["managedFields"].is_null() {
            m.remove("managedFields");
        }
    }
    let now = state.store.now();
    record_update(Some(old), &mut new, manager, sub, &now);
    let stored = state
        .store
        .update(key, new)
        .ok_or_else(|| ApiError::not_found(rt, &key.name))?;
    Ok((StatusCode::OK, stored))
}

fn replace(state: &mut State, key: &Key, sub: Option<&str>, body: Value, manager: &str) -> Answer {
    let rt = resources::get(key.resource);
    let old = state
        .store
        .get(key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(rt, &key.name))?;
    if !body.is_object() || !body["metadata"].is_object() {
        return Err(ApiError::bad_request(
            "the body must be an object with metadata",
        ));
    }
    if body["metadata"]["name"].as_str() != Some(&key.name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({})",
            body["metadata"]["name"], key.name
        )));
    }
    check_rv(rt, key, &old, &body)?;
    write_update(state, key, &old, body, sub, manager)
}

fn patch(
    state: &mut State,
    key: &Key,
    sub: Option<&str>,
    body: Value,
    p: &Parsed,
    manager: &str,
) -> Answer {
    let rt = resources::get(key.resource);
    let old = state.store.get(key).cloned();
    let ct = p.content_type.as_str();
    if ct.starts_with("application/apply-patch") {
        let Some(manager) = p.query.get("fieldManager") else {
            return Err(ApiError::bad_request(
                "PATCH for server-side apply requires a fieldManager",
            ));
        };
        let force = p.query.get("force").is_some_and(|f| f == "true");
        return apply(state, key, old, sub, body, manager, force);
    }
    let old = old.ok_or_else(|| ApiError::not_found(rt, &key.name))?;
    let mut candidate = old.clone();
    if ct.starts_with("application/json-patch+json") {
        fields::json_patch(&mut candidate, &body).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("the JSON patch failed: {e}"),
            )
        })?;
    } else if ct.starts_with("application/merge-patch+json")
        || ct.starts_with("application/strategic-merge-patch+json")
    {
        check_rv(rt, key, &old, &body)?;
        fields::merge_patch(&mut candidate, &body);
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {ct}"),
        ));
    }
    write_update(state, key, &old, candidate, sub, manager)
}

fn apply(
    state: &mut State,
    key: &Key,
    old: Option<Value>,
    sub: Option<&str>,
    mut body: Value,
    manager: &str,
    force: bool,
) -> Answer {
    let rt = resources::get(key.resource);
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the applied configuration must be an object",
        ));
    }
    if body["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n != key.name)
    {
        return Err(ApiError::bad_request(
            "the name in the body does not match the URL",
        ));
    }
    if body["apiVersion"].as_str() != Some(&rt.api_version())
        || body["kind"].as_str() != Some(rt.kind)
    {
        return Err(ApiError::bad_request(format!(
            "apiVersion and kind must be {} {}",
            rt.api_version(),
            rt.kind
        )));
    }
    if let Some(old) = &old {
        check_rv(rt, key, old, &body)?;
    } else if sub.is_some() {
        return Err(ApiError::not_found(rt, &key.name));
    }
    if let Some(m) = body["metadata"].as_object_mut() {
        for f in [
            "resourceVersion",
            "managedFields",
            "uid",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
        ] {
            m.remove(f);
        }
    }
    let applied_with_meta = scoped(&body, sub);
    let applied_set = fields::fields_of(&applied_with_meta);
    let now = state.store.now();

    let Some(old) = old else {
        let mut new = applied_with_meta;
        new["apiVersion"] = json!(rt.api_version());
        new["kind"] = json!(rt.kind);
        let mut entries = Vec::new();
        finish_entries(
            &mut entries,
            &new,
            applied_set,
            manager,
            "Apply",
            sub,
            &now,
            true,
        );
        set_entries(&mut new, &entries);
        return Ok((StatusCode::CREATED, state.store.insert(key.clone(), new)));
    };

    let mut entries = entries_of(&old);
    let mut conflicts: Vec<(String, String)> = Vec::new();
    let mut forced: Vec<fields::Path> = Vec::new();
    for e in entries.iter().filter(|e| e.manager != manager) {
        for path in e.fields.intersection(&applied_set) {
            if path.last().is_some_and(|s| s.starts_with("k:")) {
                continue;
            }
            if fields::get(&old, path) != fields::get(&applied_with_meta, path) {
                conflicts.push((e.manager.clone(), fields::display(path)));
                forced.push(path.clone());
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let n = conflicts.len();
        let list: Vec<String> = conflicts
            .iter()
            .map(|(m, p)| format!("conflict with \"{m}\": {p}"))
            .collect();
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Apply failed with {n} conflict{}: {}",
                if n == 1 { "" } else { "s" },
                list.join("; ")
            ),
        )
        .about(rt, &key.name));
    }
    for e in entries.iter_mut().filter(|e| e.manager != manager) {
        e.fields.retain(|p| !forced.contains(p));
    }

    let mut new = old.clone();
    fields::merge_applied(&mut new, &applied_with_meta, "");
    let previous: FieldSet = entries
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply" && e.subresource.as_deref() == sub)
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for path in previous.difference(&applied_set) {
        let owned_by_others = entries
            .iter()
            .any(|e| !(e.manager == manager && e.operation == "Apply") && e.fields.contains(path));
        if !owned_by_others {
            fields::remove(&mut new, path);
        }
    }
    let mut new = mask(rt, Some(&old), new, sub);
    finish_entries(
        &mut entries,
        &new,
        applied_set,
        manager,
        "Apply",
        sub,
        &now,
        true,
    );
    set_entries(&mut new, &entries);
    let stored = state
        .store
        .update(key, new)
        .ok_or_else(|| ApiError::not_found(rt, &key.name))?;
    Ok((StatusCode::OK, stored))
}

fn delete(state: &mut State, key: &Key, body: &Value) -> Answer {
    let rt = resources::get(key.resource);
    let old = state
        .store
        .get(key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(rt, &key.name))?;
    if let Some(rv) = body["preconditions"]["resourceVersion"].as_str()
        && Some(rv) != old["metadata"]["resourceVersion"].as_str()
    {
        return Err(ApiError::conflict(rt, &key.name));
    }
    if let Some(uid) = body["preconditions"]["uid"].as_str()
        && Some(uid) != old["metadata"]["uid"].as_str()
    {
        return Err(ApiError::conflict(rt, &key.name));
    }
    if body["propagationPolicy"] == "Orphan" {
        let uid = crate::store::uid_of(&old).to_string();
        state.store.orphan_dependents(&uid);
    }
    let last = state
        .store
        .delete(key)
        .ok_or_else(|| ApiError::not_found(rt, &key.name))?;
    Ok((StatusCode::OK, last))
}

/// The watch parameters and where the stream is.
struct WatchState {
    inner: Arc<Inner>,
    client: Arc<str>,
    resource: usize,
    namespace: Option<String>,
    selector: Selector,
    bookmarks: bool,
    /// The last resourceVersion delivered.
    rv: u64,
    deadline: tokio::time::Instant,
    expiries: u64,
    changes: tokio::sync::watch::Receiver<u64>,
    faults: tokio::sync::watch::Receiver<u64>,
    pending: VecDeque<Value>,
    done: bool,
}

fn event(kind: &str, object: &Value) -> Value {
    json!({"type": kind, "object": object})
}

fn gone(rv: u64, oldest: u64) -> Value {
    event(
        "ERROR",
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {rv} ({oldest})"),
            "reason": "Expired", "code": 410,
        }),
    )
}

impl WatchState {
    /// Queue what happened since `self.rv`; mark the stream done when it must end.
    fn collect(&mut self) {
        let state = self.inner.lock();
        if outage(&state, &self.client).is_some() {
            self.done = true;
            return;
        }
        if state.faults.watch_expiries != self.expiries {
            self.pending.push_back(gone(self.rv, state.store.rv));
            self.done = true;
            return;
        }
        let store = &state.store;
        if self.rv < store.compacted_rv {
            self.pending.push_back(gone(self.rv, store.compacted_rv));
            self.done = true;
            return;
        }
        let start = store.history.partition_point(|c| c.rv <= self.rv);
        for change in store.history.range(start..) {
            if change.resource != self.resource
                || self
                    .namespace
                    .as_ref()
                    .is_some_and(|ns| *ns != change.namespace)
            {
                continue;
            }
            let now = self.selector.matches(&change.object);
            let before = change
                .old
                .as_ref()
                .is_some_and(|o| self.selector.matches(o));
            let kind = match change.kind {
                ChangeType::Added if now => "ADDED",
                ChangeType::Modified if now && before => "MODIFIED",
                ChangeType::Modified if now => "ADDED",
                ChangeType::Modified if before => "DELETED",
                ChangeType::Deleted if before => "DELETED",
                _ => continue,
            };
            self.pending.push_back(event(kind, &change.object));
        }
        self.rv = store.rv;
    }

    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.done {
                return None;
            }
            self.collect();
            if !self.pending.is_empty() || self.done {
                continue;
            }
            tokio::select! {
                _ = self.changes.changed() => {}
                _ = self.faults.changed() => {}
                _ = tokio::time::sleep_until(self.deadline) => {
                    self.done = true;
                    if self.bookmarks {
                        let rt = resources::get(self.resource);
                        let rv = self.inner.lock().store.rv;
                        self.rv = rv;
                        self.pending.push_back(event("BOOKMARK", &json!({
                            "kind": rt.kind, "apiVersion": rt.api_version(),
                            "metadata": {"resourceVersion": rv.to_string()},
                        })));
                    }
                }
            }
        }
    }
}

fn watch(inner: &Arc<Inner>, client: &Arc<str>, p: &Parsed) -> Result<Response<SimBody>, ApiError> {
    let Ok(Target::Resource {
        resource,
        namespace,
        ..
    }) = &p.target
    else {
        unreachable!("watch of a resource");
    };
    let selector = Selector::parse(
        p.query.get("labelSelector").map(String::as_str),
        p.query.get("fieldSelector").map(String::as_str),
    )
    .map_err(ApiError::bad_request)?;
    let timeout = p
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let state = inner.lock();
    let mut pending = VecDeque::new();
    let rv = match p.query.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => {
            // Start with the current state, as synthetic ADDED events.
            for (_, v) in state.store.list(*resource, namespace.as_deref()) {
                if selector.matches(&v) {
                    pending.push_back(event("ADDED", &v));
                }
            }
            state.store.rv
        }
        Some(rv) => rv
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
    };
    let ws = WatchState {
        inner: inner.clone(),
        client: client.clone(),
        resource: *resource,
        namespace: namespace.clone(),
        selector,
        bookmarks: p
            .query
            .get("allowWatchBookmarks")
            .is_some_and(|b| b == "true"),
        rv,
        deadline: tokio::time::Instant::now() + Duration::from_secs(timeout),
        expiries: state.faults.watch_expiries,
        changes: inner.changes.subscribe(),
        faults: inner.faults_epoch.subscribe(),
        pending,
        done: false,
    };
    drop(state);
    let stream = futures::stream::unfold(ws, |mut ws| async move {
        let e = ws.next().await?;
        let mut line = serde_json::to_vec(&e).expect("JSON");
        line.push(b'\n');
        Some((
            Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(line))),
            ws,
        ))
    });
    let body = http_body_util::StreamBody::new(stream).boxed_unsync();
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("response"))
}
