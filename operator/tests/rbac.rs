//! The chart's hand-written RBAC (`charts/mooring/templates/rbac.yaml`) grants exactly what the
//! operator's code calls: no call without a rule (a 403 on a real cluster), no rule without a
//! call (least privilege).
//!
//! Two sides meet in `CALLS`, the table of every permission and the code that needs it:
//! - `rules_are_the_table`: the rules of rbac.yaml, flattened to (role, group, resource, verb),
//!   equal the table's.
//! - `table_is_the_code`: the rows marked `Scanned` equal what a scan of `operator/src`
//!   (test code left out) finds: every `Api<K>` binding's calls (`get`, `get_opt`, `list`,
//!   `create`, `replace`, `patch`, `patch_status`, `delete`, …) and every watch
//!   (`Controller::new`, `.owns`, `.watches`, `watcher`) give the kind's resource and verbs.
//!   A server-side apply (`Patch::Apply`) also needs `create`: the API server authorizes the
//!   creation of a missing object as `create`. The other rows (`Text`) are calls the scan cannot
//!   type (kube's event `Recorder`, owner references): their text must be in the file named.
//!
//! The scan is a heuristic, not a type checker: it knows a receiver's kind from an annotation
//! in the same file (`deployments: Api<Deployment>`, `api: &Api<Lease>`, `Api::<Pod>::…`).
//! A call on an `Api` it cannot type fails the test and says what to annotate. So a new
//! controller (e.g. `drift_monitor/` creating Jobs) fails here until its rows and its rules
//! are added.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;
use serde_yaml::Value;

/// Which Role of the chart holds a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    /// The workload rules: a ClusterRole, or with `watchNamespace` a Role of that namespace.
    Workload,
    /// The leader-election Role in the release namespace.
    Lease,
}

/// How the test finds the call in the code.
enum Evidence {
    /// Found by the scan of `Api` calls and watches.
    Scanned,
    /// A call the scan cannot type: this text must be in this file (under operator/src).
    Text(&'static str, &'static str),
}

struct Call {
    role: Role,
    group: &'static str,
    resource: &'static str,
    verbs: &'static [&'static str],
    /// The code that makes the call, for people.
    #[allow(dead_code)]
    code: &'static str,
    evidence: Evidence,
}

const CALLS: &[Call] = &[
    Call {
        role: Role::Workload,
        group: "mooring.dev",
        resource: "modeldeployments",
        verbs: &["list", "watch"],
        code: "controller/mod.rs `run`: Controller::new watches ModelDeployments",
        evidence: Evidence::Scanned,
    },
    Call {
        role: Role::Workload,
        group: "mooring.dev",
        resource: "modeldeployments/status",
        verbs: &["patch"],
        code: "controller/apply.rs `status`: server-side apply of the status subresource",
        evidence: Evidence::Scanned,
    },
    Call {
        role: Role::Workload,
        group: "mooring.dev",
        resource: "modeldeployments/finalizers",
        verbs: &["update"],
        code: "controller/mod.rs: children carry `controller_owner_ref` (blockOwnerDeletion), \
               which OwnerReferencesPermissionEnforcement (OpenShift) checks as update of the \
               owner's finalizers",
        evidence: Evidence::Text("controller/mod.rs", ".controller_owner_ref("),
    },
    Call {
        role: Role::Workload,
        group: "mooring.dev",
        resource: "chatservices",
        verbs: &["list", "watch"],
        code: "chat_service/mod.rs `run`: the ChatService controller watches ChatServices",
        evidence: Evidence::Scanned,
    },
    Call {
        role: Role::Workload,
        group: "mooring.dev",
        resource: "chatservices/status",
        verbs: &["get", "patch"],
        code: "chat_service/mod.rs `reconcile_steps` (get: the status as last written, not the \
               watch cache's), `finish` (server-side apply of the status subresource)",
        evidence: Evidence::Scanned,
    },
    Call {
        role: Role::Workload,
        group: "mooring.dev",
        resource: "chatservices/finalizers",
        verbs: &["update"],
        code: "chat_service/mod.rs: children carry `controller_owner_ref` (blockOwnerDeletion), \
               checked by OwnerReferencesPermissionEnforcement as update of the finalizers",
        evidence: Evidence::Text("chat_service/mod.rs", ".controller_owner_ref("),
    },
    Call {
        role: Role::Workload,
        group: "apps",
        resource: "deployments",
        verbs: &["get", "list", "watch", "create", "patch"],
        code: "controller/apply.rs `children` (server-side apply), `foreign_children` (get); \
               controller/mod.rs `run` (the owned-Deployment watch)",
        evidence: Evidence::Scanned,
    },
    Call {
        role: Role::Workload,
        group: "mooring.dev",
        resource: "modeldeployments",
        verbs: &["get", "patch", "create"],
        code: "drift_monitor/mod.rs `reconcile_steps` (get the target); drift_monitor/apply.rs \
               `rollback_request` (server-side apply of the rollback-request annotation)",
        evidence: Evidence::Scanned,
    },
    Call {
        role: Role::Workload,
        group: "mooring.dev",
        resource: "driftmonitors",
        verbs: &["list", "watch"],
        code: "drift_monitor/mod.rs `run`: Controller::new watches DriftMonitors",
        evidence: Evidence::Scanned,
    },
    Call {
        role: Role::Workload,
        group: "mooring.dev",
        resource: "driftmonitors/status",
        verbs: &["patch"],
        code: "drift_monitor/apply.rs `status`: server-side apply of the status subresource",
        evidence: Evidence::Scanned,
    },
    Call {
        role: Role::Workload,
        group: "batch",
        resource: "jobs",
        verbs: &["list", "watch", "create", "patch", "delete"],
        code: "drift_monitor/apply.rs `job` (apply), `jobs_of` (list), `delete_job` (history \
               limits); drift_monitor/mod.rs `run` (.owns)",
        evidence: Evidence::Scanned,
    },
    Call {
        role: Role::Workload,
        group: "autoscaling",
        resource: "horizontalpodautoscalers",
        verbs: &["create", "patch", "delete"],
        code: "controller/apply.rs `children`: the HPA of spec.autoscaling, deleted when dropped",
        evidence: Evidence::Scanned,
    },
    Call {
        role: Role::Workload,
        group: "policy",
        resource: "poddisruptionbudgets",
        verbs: &["create", "patch", "delete"],
        code: "controller/apply.rs `children`: the PDB of a ModelDeployment with replicas > 1",
        evidence: Evidence::Scanned,
    },
    Call {
        role: Role::Workload,
        group: "",
        resource: "services",
        verbs: &["get", "list", "watch", "create", "patch"],
        code: "controller/apply.rs `children` (server-side apply), `foreign_children` (get); \
               controller/mod.rs `run` (.owns)",
        evidence: Evidence::Scanned,
    },
    Call {
        role: Role::Workload,
        group: "",
        resource: "pods",
        verbs: &["list"],
        code: "controller/apply.rs `pods_of_version`: crash-loop detection for auto-rollback",
        evidence: Evidence::Scanned,
    },
    Call {
        role: Role::Workload,
        group: "",
        resource: "secrets",
        verbs: &["get"],
        code: "controller/fetch.rs `get_secret`: the MLflow token / basic-auth Secret",
        evidence: Evidence::Scanned,
    },
    Call {
        role: Role::Workload,
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
        code: "controller/events.rs `publish`: kube's Recorder creates Events, patches repeats",
        evidence: Evidence::Text("controller/events.rs", "recorder.publish("),
    },
    Call {
        role: Role::Lease,
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "update"],
        code: "leader.rs `LeaseLock`: get_opt, create, replace",
        evidence: Evidence::Scanned,
    },
];

/// Kinds the operator may call, with their API group and resource.
const KINDS: &[(&str, &str, &str)] = &[
    ("ModelDeployment", "mooring.dev", "modeldeployments"),
    ("DriftMonitor", "mooring.dev", "driftmonitors"),
    ("ChatService", "mooring.dev", "chatservices"),
    ("Deployment", "apps", "deployments"),
    ("Job", "batch", "jobs"),
    ("CronJob", "batch", "cronjobs"),
    ("Service", "", "services"),
    ("Pod", "", "pods"),
    ("Secret", "", "secrets"),
    ("ConfigMap", "", "configmaps"),
    ("Lease", "coordination.k8s.io", "leases"),
    (
        "HorizontalPodAutoscaler",
        "autoscaling",
        "horizontalpodautoscalers",
    ),
    ("PodDisruptionBudget", "policy", "poddisruptionbudgets"),
];

type Permission = (Role, String, String, String);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn table() -> BTreeSet<Permission> {
    CALLS
        .iter()
        .flat_map(|c| {
            c.verbs
                .iter()
                .map(|v| (c.role, c.group.into(), c.resource.into(), v.to_string()))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The chart side

/// rbac.yaml with its template directives neutralised, so it parses as YAML: lines that are
/// only a directive (`{{- if … }}`, comments) go, inline expressions become `TEMPLATE`.
fn untemplate(text: &str) -> String {
    let comments = Regex::new(r"(?s)\{\{-?\s*/\*.*?\*/\s*-?\}\}").unwrap();
    let inline = Regex::new(r"\{\{-?[^}]*-?\}\}").unwrap();
    let text = comments.replace_all(text, "");
    text.lines()
        .filter(|l| {
            let t = l.trim();
            !(t.starts_with("{{") && t.ends_with("}}"))
        })
        .map(|l| inline.replace_all(l, "TEMPLATE").into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn chart_roles() -> Vec<Value> {
    let path = root().join("charts/mooring/templates/rbac.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    untemplate(&text)
        .split("\n---")
        .map(|doc| serde_yaml::from_str::<Value>(doc).unwrap_or_else(|e| panic!("{e}\n{doc}")))
        .filter(|doc| doc.get("rules").is_some())
        .collect()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .map(|x| x.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn chart_permissions() -> BTreeSet<Permission> {
    let mut out = BTreeSet::new();
    for role in chart_roles() {
        let name = role["metadata"]["name"].as_str().unwrap_or_default();
        let which = if name.ends_with("-leader-election") {
            Role::Lease
        } else {
            Role::Workload
        };
        for rule in role["rules"].as_sequence().expect("rules is a list") {
            for group in strings(rule.get("apiGroups")) {
                for resource in strings(rule.get("resources")) {
                    for verb in strings(rule.get("verbs")) {
                        let p = (which, group.clone(), resource.clone(), verb);
                        assert!(out.insert(p.clone()), "{p:?} granted twice in rbac.yaml");
                    }
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The code side

/// The non-test Rust sources under operator/src, relative path → text without test items
/// and comments.
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                if name != "tests" {
                    walk(&path, base, out);
                }
            } else if name.ends_with(".rs")
                && !matches!(
                    name.as_str(),
                    "tests.rs" | "mock_tests.rs" | "mock_api.rs" | "fixtures.rs"
                )
                && !name.ends_with("_tests.rs")
            {
                let rel = path
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                let text = std::fs::read_to_string(&path).unwrap();
                out.insert(rel, strip_comments(&strip_test_items(&text)));
            }
        }
    }
    let base = root().join("operator/src");
    let mut out = BTreeMap::new();
    walk(&base, &base, &mut out);
    out
}

/// `text` without its `#[cfg(test)]` items (a `mod x;` line or a braced block).
fn strip_test_items(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let semi = after.find(';');
        let brace = after.find('{');
        rest = match (semi, brace) {
            (Some(s), b) if b.is_none_or(|b| s < b) => &after[s + 1..],
            (_, Some(b)) => {
                let mut depth = 0usize;
                let mut end = after.len();
                for (i, c) in after[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                &after[end..]
            }
            _ => "",
        };
    }
    out.push_str(rest);
    out
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            // Not inside a string such as "http://…" (good enough for this code base).
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn kind(name: &str) -> Option<(&'static str, &'static str)> {
    let last = name.rsplit("::").next().unwrap_or(name);
    KINDS
        .iter()
        .find(|(k, _, _)| *k == last)
        .map(|(_, g, r)| (*g, *r))
}

/// What the scan finds in operator/src: each permission with the places that need it.
fn scanned() -> BTreeMap<Permission, Vec<String>> {
    let mut out: BTreeMap<Permission, Vec<String>> = BTreeMap::new();
    for (file, text) in sources() {
        for (p, places) in scan(&file, &text) {
            out.entry(p).or_default().extend(places);
        }
    }
    out
}

/// The permissions the calls in one source file need, with their `operator/src/file:line`.
fn scan(file: &str, text: &str) -> BTreeMap<Permission, Vec<String>> {
    const METHODS: &str = "get|get_opt|get_status|get_metadata|list|list_metadata|watch|create|\
                           replace|replace_status|patch|patch_status|delete|delete_collection|entry";
    const KIND: &str = r"([A-Za-z0-9_:]+)";
    let typed = Regex::new(&format!(
        r"\b([a-z_][a-z0-9_]*)\s*:\s*&?\s*Api\s*<\s*{KIND}\s*>"
    ))
    .unwrap();
    let bound = Regex::new(&format!(
        r"\blet\s+([a-z_][a-z0-9_]*)\s*=\s*Api::<\s*{KIND}\s*>"
    ))
    .unwrap();
    // `pods.list(`, `self.api\n    .replace(`
    let call = Regex::new(&format!(r"\b([a-z_][a-z0-9_]*)\s*\.\s*({METHODS})\s*\(")).unwrap();
    // `Api::<Job>::namespaced(client, ns).create(`, no binding in between
    let chained = Regex::new(&format!(
        r"Api::<\s*{KIND}\s*>::(?:namespaced|all|default_namespaced)\s*\([^;]*?\)\s*\.\s*({METHODS})\s*\("
    ))
    .unwrap();
    let watch = Regex::new(
        r"(?:Controller::new|\.owns|\.watches|\bwatcher|\bmetadata_watcher)\s*\(\s*([a-z_][a-z0-9_]*)",
    )
    .unwrap();

    let mut kinds: BTreeMap<String, String> = BTreeMap::new();
    for c in typed.captures_iter(text).chain(bound.captures_iter(text)) {
        let (ident, k) = (c[1].to_string(), c[2].to_string());
        if let Some(old) = kinds.insert(ident.clone(), k.clone()) {
            assert_eq!(
                old, k,
                "operator/src/{file}: `{ident}` is an Api of two kinds; the RBAC scan cannot tell them apart"
            );
        }
    }
    let line_of = |at: usize| text[..at].lines().count();
    let resource = |k: &str, at: usize| -> (String, String) {
        let (g, r) = kind(k).unwrap_or_else(|| {
            panic!(
                "operator/src/{file}:{}: Api<{k}>: a kind operator/tests/rbac.rs does not know: \
                 add it to KINDS (or, for a generic helper, list its calls as Text rows)",
                line_of(at)
            )
        });
        (g.to_string(), r.to_string())
    };
    let kind_of = |ident: &str, at: usize| -> String {
        kinds.get(ident).cloned().unwrap_or_else(|| {
            panic!(
                "operator/src/{file}:{}: cannot tell the kind of `{ident}`; annotate it as Api<Kind>",
                line_of(at)
            )
        })
    };
    let role = |r: &str| {
        if r == "leases" {
            Role::Lease
        } else {
            Role::Workload
        }
    };
    let mut out: BTreeMap<Permission, Vec<String>> = BTreeMap::new();
    let mut add = |k: &str, subresource: &str, verbs: &[&str], at: usize| {
        let (group, res) = resource(k, at);
        for v in verbs {
            out.entry((
                role(&res),
                group.clone(),
                format!("{res}{subresource}"),
                v.to_string(),
            ))
            .or_default()
            .push(format!("operator/src/{file}:{}", line_of(at)));
        }
    };
    let mut method_call = |k: &str, method: &str, at: usize, args_at: usize| {
        let (subresource, verbs): (&str, &[&str]) = match method {
            "get" | "get_opt" | "get_metadata" => ("", &["get"]),
            "get_status" => ("/status", &["get"]),
            "list" | "list_metadata" => ("", &["list"]),
            "watch" => ("", &["watch"]),
            "create" => ("", &["create"]),
            "replace" => ("", &["update"]),
            "replace_status" => ("/status", &["update"]),
            "patch" => ("", &["patch"]),
            "patch_status" => ("/status", &["patch"]),
            "delete" => ("", &["delete"]),
            "delete_collection" => ("", &["deletecollection"]),
            // kube's Entry: a get, then create or replace on commit.
            "entry" => ("", &["get", "create", "update"]),
            other => unreachable!("{other}"),
        };
        add(k, subresource, verbs, at);
        // A server-side apply may create the object: the API server authorizes that as
        // `create`. (The status subresource is never created.)
        let rest = &text[args_at..];
        let args = &rest[..rest
            .find(".await")
            .or_else(|| rest.find(';'))
            .unwrap_or(rest.len())];
        if method == "patch" && args.contains("Patch::Apply") {
            add(k, "", &["create"], at);
        }
    };
    for c in call.captures_iter(text) {
        let ident = &c[1];
        if !kinds.contains_key(ident) {
            continue; // not an Api (a map, a store, a string)
        }
        let m = c.get(0).unwrap();
        method_call(&kind_of(ident, m.start()), &c[2], m.start(), m.end());
    }
    for c in chained.captures_iter(text) {
        let m = c.get(0).unwrap();
        method_call(&c[1], &c[2], m.start(), m.end());
    }
    for c in watch.captures_iter(text) {
        let at = c.get(0).unwrap().start();
        add(&kind_of(&c[1], at), "", &["list", "watch"], at);
    }
    out
}

fn show(set: &BTreeSet<Permission>) -> String {
    set.iter()
        .map(|(role, g, r, v)| format!("  {role:?} {g:?} {r} {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------

#[test]
fn rules_are_the_table() {
    let chart = chart_permissions();
    let table = table();
    let missing: BTreeSet<_> = table.difference(&chart).cloned().collect();
    let extra: BTreeSet<_> = chart.difference(&table).cloned().collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "rbac.yaml lacks rules for calls the code makes:\n{}\nrbac.yaml grants what no call needs:\n{}",
        show(&missing),
        show(&extra)
    );
}

#[test]
fn table_is_the_code() {
    let scanned = scanned();
    let found: BTreeSet<Permission> = scanned.keys().cloned().collect();
    let listed: BTreeSet<Permission> = CALLS
        .iter()
        .filter(|c| matches!(c.evidence, Evidence::Scanned))
        .flat_map(|c| {
            c.verbs
                .iter()
                .map(|v| (c.role, c.group.into(), c.resource.into(), v.to_string()))
        })
        .collect();
    let unlisted: Vec<String> = found
        .difference(&listed)
        .map(|p| format!("  {p:?} at {}", scanned[p].join(", ")))
        .collect();
    let uncalled: BTreeSet<_> = listed.difference(&found).cloned().collect();
    assert!(
        unlisted.is_empty() && uncalled.is_empty(),
        "calls in operator/src missing from CALLS (add a row and a rule in rbac.yaml):\n{}\n\
         rows of CALLS no code calls any more (drop the row and the rule):\n{}",
        unlisted.join("\n"),
        show(&uncalled)
    );
    let sources = sources();
    for c in CALLS {
        if let Evidence::Text(file, needle) = c.evidence {
            let text = sources.get(file).unwrap_or_else(|| {
                panic!("operator/src/{file} does not exist (row {})", c.resource)
            });
            assert!(
                text.contains(needle),
                "operator/src/{file} no longer contains {needle:?}: does the code still need {} {:?}?",
                c.resource,
                c.verbs
            );
        }
    }
}

/// The scan itself: it types receivers, sees through `self.` and line breaks and chained
/// `Api::<K>::…(…)` calls, counts a server-side apply as patch + create, and ignores maps,
/// comments and test code; the template stripping leaves parseable YAML.
#[test]
fn scan_understands_the_code_shapes() {
    let text = r#"
        struct Lock { api: Api<Lease> }
        fn f(pods: &Api<Pod>, deployments: Api<Deployment>) {
            let map = HashMap::new(); map.get(&k); map.delete(&k);
            pods.list(&lp).await;
            self.api
                .replace(&n, &pp, &l).await;
            deployments.patch(&n, &p, &Patch::Apply(&d)).await;
            deployments.patch(&n, &p, &Patch::Merge(&d)).await;
            Api::<Job>::namespaced(client.clone(), &ns).delete(&n, &dp).await;
            // secrets.delete(&n)
        }
        #[cfg(test)]
        mod tests { fn f(secrets: Api<Secret>) { secrets.delete("x"); } }
    "#;
    let stripped = strip_comments(&strip_test_items(text));
    assert!(!stripped.contains("secrets"), "{stripped}");
    let found: BTreeSet<String> = scan("x.rs", &stripped)
        .into_keys()
        .map(|(role, g, r, v)| format!("{role:?} {g}/{r} {v}"))
        .collect();
    let want: BTreeSet<String> = [
        "Workload /pods list",
        "Lease coordination.k8s.io/leases update",
        "Workload apps/deployments patch",
        "Workload apps/deployments create",
        "Workload batch/jobs delete",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(found, want);

    let untemplated = untemplate(
        "{{- /*\nnote\n*/}}\n{{- $k := 1 }}\nkind: {{ $k }}\nmetadata:\n  labels:\n    {{- include \"x\" . | nindent 4 }}\nrules: [{{ include \"n\" . | quote }}]\n",
    );
    let doc: Value = serde_yaml::from_str(&untemplated).unwrap();
    assert_eq!(doc["kind"].as_str(), Some("TEMPLATE"));
    assert_eq!(doc["rules"][0].as_str(), Some("TEMPLATE"));
}
