//! Watch streams: the change history after a resourceVersion, then live changes.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::{ApiError, Parsed, SimBody, outage};
use crate::Inner;
use crate::resources::{self, Target};
use crate::select::Selector;
use crate::store::ChangeType;

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
                    // A change may have landed as the deadline came (select picks either
                    // branch): send it first, so the bookmark never points past an event
                    // this watch did not deliver (the client resumes from the bookmark).
                    self.collect();
                    let ended = self.done;
                    self.done = true;
                    if self.bookmarks && !ended {
                        let rt = resources::get(self.resource);
                        let rv = self.rv;
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

pub(super) fn watch(
    inner: &Arc<Inner>,
    client: &Arc<str>,
    p: &Parsed,
) -> Result<Response<SimBody>, ApiError> {
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
    let streaming = p
        .query
        .get("sendInitialEvents")
        .is_some_and(|s| s == "true");
    let rv = match p.query.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let rv = match rv {
        Some(rv) if !streaming => rv,
        _ => {
            // Start with the current state, as synthetic ADDED events; a streaming list ends
            // them with the bookmark kube's watcher waits for.
            for (_, v) in state.store.list(*resource, namespace.as_deref()) {
                if selector.matches(&v) {
                    pending.push_back(event("ADDED", &v));
                }
            }
            if streaming {
                let rt = resources::get(*resource);
                pending.push_back(event(
                    "BOOKMARK",
                    &json!({
                        "kind": rt.kind, "apiVersion": rt.api_version(),
                        "metadata": {
                            "resourceVersion": state.store.rv.to_string(),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    }),
                ));
            }
            state.store.rv
        }
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
