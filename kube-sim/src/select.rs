//! Label selectors (`=`, `==`, `!=`, `in`, `notin`, exists, `!` not exists) and field
//! selectors (`metadata.name`, `metadata.namespace`, with `=`, `==`, `!=`).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

/// Split on commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_requirement(term: &str) -> Result<Requirement, String> {
    let set = |rest: &str| -> Result<Vec<String>, String> {
        let inner = rest
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| format!("invalid selector term {term:?}"))?;
        Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
    };
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::Equals(k.trim().into(), v.trim().into()));
    }
    if let Some((k, rest)) = term.split_once(" notin ") {
        return Ok(Requirement::NotIn(k.trim().into(), set(rest)?));
    }
    if let Some((k, rest)) = term.split_once(" in ") {
        return Ok(Requirement::In(k.trim().into(), set(rest)?));
    }
    if let Some(k) = term.strip_prefix('!') {
        return Ok(Requirement::NotExists(k.trim().into()));
    }
    if term.contains(char::is_whitespace) || term.contains('(') {
        return Err(format!("invalid selector term {term:?}"));
    }
    Ok(Requirement::Exists(term.into()))
}

fn matches(req: &Requirement, get: &dyn Fn(&str) -> Option<String>) -> bool {
    match req {
        Requirement::Equals(k, v) => get(k).as_deref() == Some(v),
        Requirement::NotEquals(k, v) => get(k).as_deref() != Some(v),
        Requirement::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
        Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
        Requirement::Exists(k) => get(k).is_some(),
        Requirement::NotExists(k) => get(k).is_none(),
    }
}

impl Selector {
    /// Parse the `labelSelector` and `fieldSelector` query parameters.
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, String> {
        let labels = split_top(labels.unwrap_or(""))
            .into_iter()
            .map(parse_requirement)
            .collect::<Result<_, _>>()?;
        let fields: Vec<Requirement> = split_top(fields.unwrap_or(""))
            .into_iter()
            .map(parse_requirement)
            .collect::<Result<_, _>>()?;
        for f in &fields {
            match f {
                Requirement::Equals(k, _) | Requirement::NotEquals(k, _)
                    if k == "metadata.name" || k == "metadata.namespace" => {}
                other => return Err(format!("unsupported field selector {other:?}")),
            }
        }
        Ok(Selector { labels, fields })
    }

    pub fn matches(&self, object: &Value) -> bool {
        let meta = &object["metadata"];
        let label = |k: &str| meta["labels"][k].as_str().map(str::to_string);
        let field = |k: &str| match k {
            "metadata.name" => meta["name"].as_str().map(str::to_string),
            "metadata.namespace" => meta["namespace"].as_str().map(str::to_string),
            _ => None,
        };
        self.labels.iter().all(|r| matches(r, &label))
            && self.fields.iter().all(|r| matches(r, &field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_and_field_selectors() {
        let pod = json!({"metadata": {"name": "a", "namespace": "ns", "labels": {"app": "web", "tier": "fe"}}});
        let sel = |l: &str, f: &str| Selector::parse(Some(l), Some(f)).unwrap().matches(&pod);
        assert!(sel("", ""));
        assert!(sel("app=web,tier", ""));
        assert!(sel("app==web,tier!=be", "metadata.name=a"));
        assert!(sel("app in (web, api),!missing", "metadata.namespace=ns"));
        assert!(!sel("app notin (web)", ""));
        assert!(!sel("missing", ""));
        assert!(!sel("", "metadata.name!=a"));
        assert!(Selector::parse(None, Some("spec.nodeName=x")).is_err());
    }
}
