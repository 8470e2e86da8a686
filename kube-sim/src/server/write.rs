//! The writes: create, replace, patch (server-side apply, merge, JSON), delete, and the
//! managed fields they keep.

use http::StatusCode;
use serde_json::{Value, json};

use super::{Answer, ApiError, Parsed, check_write_faults};
use crate::State;
use crate::fields::{self, FieldSet};
use crate::resources::{self, ResourceType};
use crate::store::Key;

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
pub(crate) fn record_update(
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

pub(super) fn create(
    state: &mut State,
    resource: usize,
    ns: &str,
    mut body: Value,
    manager: &str,
) -> Answer {
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

pub(super) fn replace(
    state: &mut State,
    key: &Key,
    sub: Option<&str>,
    body: Value,
    manager: &str,
) -> Answer {
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

pub(super) fn patch(
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
            // A map left empty by the removal goes too, unless the applied object has it (as
            // the real server removes a map whose `.` the manager owned alone).
            for depth in (1..path.len()).rev() {
                let prefix = &path[..depth];
                let empty = fields::get(&new, prefix)
                    .and_then(|v| v.as_object())
                    .is_some_and(|m| m.is_empty());
                if !empty || fields::get(&applied_with_meta, prefix).is_some() {
                    break;
                }
                fields::remove(&mut new, prefix);
            }
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

pub(super) fn delete(state: &mut State, key: &Key, body: &Value) -> Answer {
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
