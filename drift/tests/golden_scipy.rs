//! Golden tests: our statistics against SciPy's answers.
//!
//! `tests/golden/generate.py` is run at test time with `$MOORING_TEST_PYTHON` (a Python with
//! numpy + scipy; `make test` provides it), so the expectations always come from SciPy
//! itself and nothing stale is committed.

use std::collections::BTreeMap;
use std::process::Command;

use mooring_drift::stats::{Column, TestChoice, TestKind, run_test};
use serde_json::Value;

fn golden_cases() -> Vec<Value> {
    let python = std::env::var("MOORING_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("MOORING_TEST_PYTHON is not set: it must name a python with numpy and scipy; run `make test`")
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/generate.py");
    let out = Command::new(&python)
        .arg(script)
        .output()
        .expect("run the golden-case generator");
    assert!(
        out.status.success(),
        "generate.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("generator prints JSON");
    eprintln!("golden cases from scipy {}", doc["scipy"]);
    doc["cases"].as_array().expect("cases").clone()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn counts(v: &Value) -> Column {
    let map: BTreeMap<String, u64> = v
        .as_object()
        .expect("object")
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().expect("count")))
        .collect();
    Column::Categorical(map)
}

fn expected(case: &Value, key: &str) -> f64 {
    // JSON has no infinity: the generator writes non-finite numbers as strings.
    match &case[key] {
        Value::String(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{key} = {s:?} in {}", case["name"])),
        v => v
            .as_f64()
            .unwrap_or_else(|| panic!("{key} is not a number in {}", case["name"])),
    }
}

fn assert_rel(name: &str, what: &str, got: f64, want: f64, rel: f64) {
    let ok = if want.is_infinite() {
        got == want
    } else {
        (got - want).abs() <= rel * want.abs().max(1e-300) || got == want
    };
    assert!(
        ok,
        "{name}: {what} = {got:e}, scipy says {want:e} (relative tolerance {rel:e})"
    );
}

fn assert_abs(name: &str, what: &str, got: f64, want: f64, abs: f64) {
    assert!(
        (got - want).abs() <= abs,
        "{name}: {what} = {got:e}, scipy says {want:e} (tolerance {abs:e})"
    );
}

fn run(kind: TestKind, r: &Column, c: &Column) -> mooring_drift::stats::TestOutcome {
    run_test(
        TestChoice {
            test: kind,
            threshold: kind.default_threshold(),
        },
        r,
        c,
    )
    .expect("test runs")
}

#[test]
fn statistics_match_scipy() {
    let cases = golden_cases();
    assert!(cases.len() >= 20, "expected the full golden set");
    for case in &cases {
        let name = case["name"].as_str().expect("name");
        match case["kind"].as_str() {
            Some("ks") => {
                let r = Column::numeric(floats(&case["reference"]));
                let c = Column::numeric(floats(&case["current"]));
                let ks = run(TestKind::Ks, &r, &c);
                assert_rel(
                    name,
                    "KS statistic",
                    ks.statistic,
                    expected(case, "statistic"),
                    1e-9,
                );
                assert_abs(
                    name,
                    "KS p-value",
                    ks.p_value.unwrap(),
                    expected(case, "p_value"),
                    1e-6,
                );
                let w = run(TestKind::Wasserstein, &r, &c);
                assert_rel(
                    name,
                    "normed Wasserstein",
                    w.statistic,
                    expected(case, "wasserstein_normed"),
                    1e-9,
                );
                let js = run(TestKind::Jensenshannon, &r, &c);
                assert_rel(
                    name,
                    "Jensen-Shannon",
                    js.statistic,
                    expected(case, "jensenshannon"),
                    1e-9,
                );
                let psi = run(TestKind::Psi, &r, &c);
                assert_rel(name, "PSI", psi.statistic, expected(case, "psi"), 1e-9);
            }
            Some("chi") => {
                let r = counts(&case["reference_counts"]);
                let c = counts(&case["current_counts"]);
                let gof = run(TestKind::Chisquare, &r, &c);
                assert_rel(
                    name,
                    "chisquare statistic",
                    gof.statistic,
                    expected(case, "chisquare_statistic"),
                    1e-9,
                );
                assert_abs(
                    name,
                    "chisquare p",
                    gof.p_value.unwrap(),
                    expected(case, "chisquare_p"),
                    1e-9,
                );
                let ct = run(TestKind::Chi2Contingency, &r, &c);
                assert_rel(
                    name,
                    "contingency statistic",
                    ct.statistic,
                    expected(case, "contingency_statistic"),
                    1e-9,
                );
                assert_abs(
                    name,
                    "contingency p",
                    ct.p_value.unwrap(),
                    expected(case, "contingency_p"),
                    1e-9,
                );
                let js = run(TestKind::Jensenshannon, &r, &c);
                assert_rel(
                    name,
                    "Jensen-Shannon",
                    js.statistic,
                    expected(case, "jensenshannon"),
                    1e-9,
                );
            }
            other => panic!("{name}: unknown case kind {other:?}"),
        }
    }
}
