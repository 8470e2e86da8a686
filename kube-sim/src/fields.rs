//! Field sets for server-side apply, in the `FieldsV1` path notation (`f:spec`,
//! `k:{"name":"main"}`), and the patch formats.
//!
//! Simplifications: lists are atomic (owned and replaced as a whole) except lists whose
//! every element is an object with a `name` (containers, env, ports, volumes,
//! volumeMounts, ...), merged by `name`, and `conditions`, merged by `type`. Ownership is
//! tracked for leaves and for merged list elements; maps are not owned as such.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// A path of `FieldsV1` segments.
pub type Path = Vec<String>;
pub type FieldSet = BTreeSet<Path>;

/// The merge key of a list under `field`, if it is merged rather than atomic.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    let key = if field == "conditions" {
        "type"
    } else {
        "name"
    };
    (!items.is_empty()
        && items
            .iter()
            .all(|i| i.get(key).is_some_and(Value::is_string)))
    .then_some(key)
}

fn element_segment(key: &str, item: &Value) -> String {
    let mut m = Map::new();
    m.insert(key.to_string(), item[key].clone());
    format!("k:{}", Value::Object(m))
}

/// The fields `value` sets. Metadata that the server owns is never part of a field set.
pub fn fields_of(value: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    if let Value::Object(map) = value {
        for (k, v) in map {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            let mut path = vec![format!("f:{k}")];
            if k == "metadata" {
                if let Value::Object(meta) = v {
                    for (mk, mv) in meta {
                        if matches!(
                            mk.as_str(),
                            "labels" | "annotations" | "ownerReferences" | "finalizers"
                        ) {
                            path.push(format!("f:{mk}"));
                            collect(mk, mv, &mut path, &mut set);
                            path.pop();
                        }
                    }
                }
                continue;
            }
            collect(k, v, &mut path, &mut set);
        }
    }
    set
}

fn collect(field: &str, value: &Value, path: &mut Path, set: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                path.push(format!("f:{k}"));
                collect(k, v, path, set);
                path.pop();
            }
        }
        Value::Array(items) => match merge_key(field, items) {
            Some(key) => {
                for item in items {
                    path.push(element_segment(key, item));
                    set.insert(path.clone());
                    if let Value::Object(map) = item {
                        for (k, v) in map {
                            path.push(format!("f:{k}"));
                            collect(k, v, path, set);
                            path.pop();
                        }
                    }
                    path.pop();
                }
            }
            None => {
                set.insert(path.clone());
            }
        },
        _ => {
            set.insert(path.clone());
        }
    }
}

fn find_element(items: &[Value], seg: &str) -> Option<usize> {
    let key: Map<String, Value> = serde_json::from_str(seg.strip_prefix("k:")?).ok()?;
    items
        .iter()
        .position(|i| key.iter().all(|(k, v)| i.get(k) == Some(v)))
}

/// The value at `path`, if present.
pub fn get<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = value;
    for seg in path {
        cur = if let Some(k) = seg.strip_prefix("f:") {
            cur.as_object()?.get(k)?
        } else {
            let items = cur.as_array()?;
            &items[find_element(items, seg)?]
        };
    }
    Some(cur)
}

/// Remove the field or list element at `path`.
pub fn remove(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = value;
    for seg in parents {
        let next = if let Some(k) = seg.strip_prefix("f:") {
            cur.as_object_mut().and_then(|m| m.get_mut(k))
        } else {
            match cur.as_array_mut() {
                Some(items) => match find_element(items, seg) {
                    Some(i) => items.get_mut(i),
                    None => None,
                },
                None => None,
            }
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(k) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(k);
        }
    } else if let Some(items) = cur.as_array_mut()
        && let Some(i) = find_element(items, last)
    {
        items.remove(i);
    }
}

/// Merge an applied configuration into the live object: maps merge per key, merged lists
/// per element (applied elements first, in their order, then the live ones not applied),
/// everything else is replaced.
pub fn merge_applied(live: &mut Value, applied: &Value, field: &str) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, av) in a {
                match l.get_mut(k) {
                    Some(lv) => merge_applied(lv, av, k),
                    None => {
                        l.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(a)) if merge_key(field, a).is_some() => {
            let key = merge_key(field, a).unwrap_or("name");
            let mut out = Vec::new();
            for ai in a {
                let seg = element_segment(key, ai);
                match find_element(l, &seg) {
                    Some(i) => {
                        let mut li = l[i].clone();
                        merge_applied(&mut li, ai, "");
                        out.push(li);
                    }
                    None => out.push(ai.clone()),
                }
            }
            for li in l.iter() {
                if li.get(key).is_some_and(Value::is_string)
                    && find_element(a, &element_segment(key, li)).is_none()
                {
                    out.push(li.clone());
                }
            }
            *l = out;
        }
        (l, a) => *l = a.clone(),
    }
}

/// The `FieldsV1` tree of a field set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Value::Object(Map::new());
    for path in set {
        let mut cur = &mut root;
        for seg in path {
            cur = cur
                .as_object_mut()
                .expect("fields tree of objects")
                .entry(seg.clone())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        if let Some(m) = cur.as_object_mut() {
            m.entry(".").or_insert_with(|| Value::Object(Map::new()));
        }
    }
    strip_leaf_dots(&mut root);
    root
}

/// Leaves are `{}` in `FieldsV1`; `.` marks an owned node that also has children.
fn strip_leaf_dots(v: &mut Value) {
    if let Value::Object(m) = v {
        if m.len() == 1 && m.contains_key(".") {
            m.clear();
            return;
        }
        for (_, c) in m.iter_mut() {
            strip_leaf_dots(c);
        }
    }
}

/// The field set of a `FieldsV1` tree.
pub fn from_fields_v1(tree: &Value) -> FieldSet {
    fn walk(v: &Value, path: &mut Path, set: &mut FieldSet) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, c) in m {
                    if k == "." {
                        set.insert(path.clone());
                    } else {
                        path.push(k.clone());
                        walk(c, path, set);
                        path.pop();
                    }
                }
            }
            _ => {
                if !path.is_empty() {
                    set.insert(path.clone());
                }
            }
        }
    }
    let mut set = FieldSet::new();
    walk(tree, &mut Vec::new(), &mut set);
    set
}

/// The paths of `set` as the API server spells them in conflict messages.
pub fn display(path: &[String]) -> String {
    path.iter()
        .map(|s| match s.strip_prefix("f:") {
            Some(k) => format!(".{k}"),
            None => format!("[{}]", s.trim_start_matches("k:")),
        })
        .collect()
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// RFC 6902 JSON patch: `add`, `remove`, `replace`, `test`, `copy`, `move`.
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    fn pointer_parent<'a>(
        target: &'a mut Value,
        path: &str,
    ) -> Result<(&'a mut Value, String), String> {
        let (parent, last) = path
            .rsplit_once('/')
            .ok_or_else(|| format!("invalid path {path:?}"))?;
        let last = last.replace("~1", "/").replace("~0", "~");
        let parent = target
            .pointer_mut(parent)
            .ok_or_else(|| format!("path {path:?} not found"))?;
        Ok((parent, last))
    }
    fn add(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
        if path.is_empty() {
            *target = value;
            return Ok(());
        }
        let (parent, last) = pointer_parent(target, path)?;
        match parent {
            Value::Object(m) => {
                m.insert(last, value);
            }
            Value::Array(a) if last == "-" => a.push(value),
            Value::Array(a) => {
                let i: usize = last.parse().map_err(|_| format!("bad index {last:?}"))?;
                if i > a.len() {
                    return Err(format!("index {i} out of range"));
                }
                a.insert(i, value);
            }
            _ => return Err(format!("path {path:?} has no container")),
        }
        Ok(())
    }
    fn remove_at(target: &mut Value, path: &str) -> Result<Value, String> {
        let (parent, last) = pointer_parent(target, path)?;
        match parent {
            Value::Object(m) => m
                .remove(&last)
                .ok_or_else(|| format!("path {path:?} not found")),
            Value::Array(a) => {
                let i: usize = last.parse().map_err(|_| format!("bad index {last:?}"))?;
                (i < a.len())
                    .then(|| a.remove(i))
                    .ok_or_else(|| format!("index {i} out of range"))
            }
            _ => Err(format!("path {path:?} not found")),
        }
    }
    for op in ops.as_array().ok_or("a JSON patch is an array")? {
        let path = op["path"].as_str().ok_or("op without path")?;
        match op["op"].as_str() {
            Some("add") => add(target, path, op["value"].clone())?,
            Some("remove") => {
                remove_at(target, path)?;
            }
            Some("replace") => {
                remove_at(target, path)?;
                add(target, path, op["value"].clone())?;
            }
            Some("test") => {
                if target.pointer(path) != Some(&op["value"]) {
                    return Err(format!("test of {path:?} failed"));
                }
            }
            Some("copy") | Some("move") => {
                let from = op["from"].as_str().ok_or("op without from")?;
                let value = if op["op"] == "move" {
                    remove_at(target, from)?
                } else {
                    target
                        .pointer(from)
                        .cloned()
                        .ok_or_else(|| format!("path {from:?} not found"))?
                };
                add(target, path, value)?;
            }
            other => return Err(format!("unknown op {other:?}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_sets_round_trip_through_fields_v1() {
        let obj = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "x", "labels": {"a": "1"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "main", "image": "i", "args": ["a", "b"]}
            ]}}}
        });
        let set = fields_of(&obj);
        let paths: Vec<String> = set.iter().map(|p| display(p)).collect();
        assert!(
            paths.contains(&".metadata.labels.a".to_string()),
            "{paths:?}"
        );
        assert!(
            paths.contains(&".spec.template.spec.containers[{\"name\":\"main\"}].args".to_string())
        );
        assert!(!paths.iter().any(|p| p.contains("name\":\"x")));
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
    }

    #[test]
    fn merge_keyed_lists_merge_by_name() {
        let mut live = json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]});
        merge_applied(
            &mut live,
            &json!({"env": [{"name": "B", "value": "3"}]}),
            "",
        );
        assert_eq!(
            live,
            json!({"env": [{"name": "B", "value": "3"}, {"name": "A", "value": "1"}]})
        );
        remove(&mut live, &["f:env".into(), "k:{\"name\":\"A\"}".into()]);
        assert_eq!(live, json!({"env": [{"name": "B", "value": "3"}]}));
    }

    #[test]
    fn patches() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut v, &json!({"a": {"b": null, "d": 3}}));
        assert_eq!(v, json!({"a": {"c": 2, "d": 3}, "l": [1, 2]}));
        json_patch(
            &mut v,
            &json!([{"op": "add", "path": "/l/-", "value": 3}, {"op": "replace", "path": "/a/c", "value": 5}, {"op": "remove", "path": "/a/d"}]),
        )
        .unwrap();
        assert_eq!(v, json!({"a": {"c": 5}, "l": [1, 2, 3]}));
        assert!(json_patch(&mut v, &json!([{"op": "test", "path": "/a/c", "value": 1}])).is_err());
    }
}
