//! Plain-text tables and value formatting for people; `--output json` bypasses this.

use std::collections::BTreeMap;

use mooring_registry::{ModelVersion, TensorSpec, time::rfc3339_from_ms};

/// Left-aligned columns separated by two spaces, header first.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(cell);
            l.extend(std::iter::repeat_n(
                ' ',
                widths[i].saturating_sub(cell.chars().count()),
            ));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

pub(crate) fn created(v: &ModelVersion) -> String {
    v.created_at_ms
        .map_or_else(|| "-".to_string(), rfc3339_from_ms)
}

pub(crate) fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(",")
    }
}

pub(crate) fn tensors(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|t| {
            let shape: Vec<String> = t.shape.iter().map(i64::to_string).collect();
            format!("{} {}[{}]", t.name, t.datatype, shape.join(","))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `param.` tags are training parameters; everything else is a plain tag.
pub(crate) fn split_params(
    tags: &BTreeMap<String, String>,
) -> (BTreeMap<&str, &str>, BTreeMap<&str, &str>) {
    let mut params = BTreeMap::new();
    let mut plain = BTreeMap::new();
    for (k, v) in tags {
        match k.strip_prefix("param.") {
            Some(p) => params.insert(p, v.as_str()),
            None => plain.insert(k.as_str(), v.as_str()),
        };
    }
    (params, plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let t = table(
            &["A", "LONGER"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A    LONGER\nxyz  1\nq    22\n");
    }
}
