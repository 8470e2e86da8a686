//! Per-feature drift tests with Evidently's defaults, and the histograms shown in reports.
//!
//! A feature is numeric when every value on both sides is a number, categorical otherwise.
//! Default test (Evidently's data-drift preset), with `n_unique` counted over reference and
//! current together:
//!
//! | reference rows | numeric, `n_unique > 5` | numeric ≤ 5 values, or categorical |
//! |---|---|---|
//! | ≤ 1000 | `ks` (p < 0.05) | `chisquare` (p < 0.05) |
//! | > 1000 | `wasserstein` (normed, ≥ 0.1) | `jensenshannon` (≥ 0.1) |
//!
//! `psi` (≥ 0.1) and `chi2_contingency` (p < 0.05) are available on request. (Evidently
//! uses a two-proportion z-test for binary categoricals on small references; we use
//! chi-square there too.)

pub mod binning;
pub mod distance;
pub mod kolmogorov;
pub mod ks;
pub mod sort;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Reference sizes up to this use the p-value tests by default.
pub const SMALL_REFERENCE_ROWS: usize = 1000;
/// Numeric columns with at most this many distinct values are treated as categorical.
pub const MAX_CATEGORICAL_UNIQUE: usize = 5;

/// A statistical test for one feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestKind {
    /// Two-sample Kolmogorov–Smirnov; drift when p < threshold (default 0.05).
    Ks,
    /// Wasserstein distance normed by the reference std; drift when ≥ threshold (0.1).
    Wasserstein,
    /// Chi-square goodness of fit to the reference proportions; drift when p < threshold.
    Chisquare,
    /// Chi-square test of the reference/current contingency table; drift when p < threshold.
    Chi2Contingency,
    /// Jensen–Shannon distance of binned shares; drift when ≥ threshold (0.1).
    Jensenshannon,
    /// Population stability index of binned shares; drift when ≥ threshold (0.1).
    Psi,
}

impl TestKind {
    pub const ALL: [TestKind; 6] = [
        TestKind::Ks,
        TestKind::Wasserstein,
        TestKind::Chisquare,
        TestKind::Chi2Contingency,
        TestKind::Jensenshannon,
        TestKind::Psi,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TestKind::Ks => "ks",
            TestKind::Wasserstein => "wasserstein",
            TestKind::Chisquare => "chisquare",
            TestKind::Chi2Contingency => "chi2_contingency",
            TestKind::Jensenshannon => "jensenshannon",
            TestKind::Psi => "psi",
        }
    }

    /// p-value tests flag drift below the threshold, distances at or above it.
    pub fn is_p_value(self) -> bool {
        matches!(
            self,
            TestKind::Ks | TestKind::Chisquare | TestKind::Chi2Contingency
        )
    }

    pub fn default_threshold(self) -> f64 {
        if self.is_p_value() { 0.05 } else { 0.1 }
    }

    /// Tests that need numbers on both sides.
    pub fn needs_numeric(self) -> bool {
        matches!(self, TestKind::Ks | TestKind::Wasserstein)
    }
}

impl fmt::Display for TestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TestKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TestKind::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = TestKind::ALL.iter().map(|t| t.name()).collect();
                format!("unknown test {s:?} (expected one of {})", names.join(", "))
            })
    }
}

/// One column of values with NaN/missing values already removed.
#[derive(Clone, Debug)]
pub enum Column {
    /// Sorted numbers.
    Numeric(Vec<f64>),
    /// Count per distinct value.
    Categorical(BTreeMap<String, u64>),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Numeric(v) => v.len(),
            Column::Categorical(c) => c.values().sum::<u64>() as usize,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Build from raw values: numeric when all parse as numbers.
    pub fn numeric(mut values: Vec<f64>) -> Column {
        values.retain(|v| !v.is_nan());
        sort::sort_floats(&mut values);
        Column::Numeric(values)
    }

    /// The categorical view of this column (numbers rendered in their shortest form).
    pub fn to_categorical(&self) -> BTreeMap<String, u64> {
        match self {
            Column::Categorical(c) => c.clone(),
            Column::Numeric(v) => {
                let mut out = BTreeMap::new();
                for x in v {
                    *out.entry(format_number(*x)).or_insert(0) += 1;
                }
                out
            }
        }
    }
}

/// Numbers as category keys: `1` not `1.0`, so `1` in a CSV and `1.0` in JSON agree.
pub fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// Which test a feature uses and its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TestChoice {
    pub test: TestKind,
    pub threshold: f64,
}

/// Evidently's default test for a feature.
pub fn default_test(reference: &Column, current: &Column) -> TestKind {
    let numeric = matches!(
        (reference, current),
        (Column::Numeric(_), Column::Numeric(_))
    );
    let categorical_like = !numeric || n_unique(reference, current) <= MAX_CATEGORICAL_UNIQUE;
    match (reference.len() <= SMALL_REFERENCE_ROWS, categorical_like) {
        (true, false) => TestKind::Ks,
        (true, true) => TestKind::Chisquare,
        (false, false) => TestKind::Wasserstein,
        (false, true) => TestKind::Jensenshannon,
    }
}

fn n_unique(a: &Column, b: &Column) -> usize {
    match (a, b) {
        (Column::Numeric(x), Column::Numeric(y)) => {
            distinct_merged(x, y, MAX_CATEGORICAL_UNIQUE + 1)
        }
        _ => {
            let mut keys: Vec<String> = a.to_categorical().into_keys().collect();
            keys.extend(b.to_categorical().into_keys());
            keys.sort();
            keys.dedup();
            keys.len()
        }
    }
}

/// Distinct values of two sorted samples together, counting no further than `cap`.
fn distinct_merged(x: &[f64], y: &[f64], cap: usize) -> usize {
    let (mut i, mut j, mut count) = (0, 0, 0);
    while (i < x.len() || j < y.len()) && count < cap {
        let v = match (x.get(i), y.get(j)) {
            (Some(&a), Some(&b)) => a.min(b),
            (Some(&a), None) => a,
            (None, Some(&b)) => b,
            (None, None) => unreachable!(),
        };
        count += 1;
        while i < x.len() && x[i] <= v {
            i += 1;
        }
        while j < y.len() && y[j] <= v {
            j += 1;
        }
    }
    count
}

/// The outcome of one test on one feature.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TestOutcome {
    pub test: TestKind,
    /// The test statistic (KS D, chi-square) or the distance itself.
    pub statistic: f64,
    /// For p-value tests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// `exact` / `asymptotic`, for KS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<ks::KsMethod>,
    pub threshold: f64,
    pub drifted: bool,
}

impl TestOutcome {
    /// The number compared with the threshold: the p-value or the distance.
    pub fn score(&self) -> f64 {
        self.p_value.unwrap_or(self.statistic)
    }
}

/// Run `choice` on two non-empty columns. Fails when a numeric test meets text.
pub fn run_test(
    choice: TestChoice,
    reference: &Column,
    current: &Column,
) -> Result<TestOutcome, String> {
    let TestChoice { test, threshold } = choice;
    let numeric = match (reference, current) {
        (Column::Numeric(r), Column::Numeric(c)) => Some((r.as_slice(), c.as_slice())),
        _ => None,
    };
    if test.needs_numeric() && numeric.is_none() {
        return Err(format!("test {test} needs numeric values on both sides"));
    }
    let (statistic, p_value, method) = match test {
        TestKind::Ks => {
            let (r, c) = numeric.expect("checked above");
            let res = ks::ks_2samp_sorted(r, c);
            (res.statistic, Some(res.p_value), Some(res.method))
        }
        TestKind::Wasserstein => {
            let (r, c) = numeric.expect("checked above");
            (distance::wasserstein_normed_sorted(r, c), None, None)
        }
        TestKind::Chisquare => {
            let (s, p) =
                distance::chisquare_gof(&reference.to_categorical(), &current.to_categorical());
            (s, Some(p), None)
        }
        TestKind::Chi2Contingency => {
            let (s, p) =
                distance::chi2_contingency(&reference.to_categorical(), &current.to_categorical());
            (s, Some(p), None)
        }
        TestKind::Jensenshannon => {
            let (r, c) = binned_shares(reference, current, false);
            (distance::jensen_shannon(&r, &c), None, None)
        }
        TestKind::Psi => {
            let (r, c) = binned_shares(reference, current, true);
            (distance::psi(&r, &c), None, None)
        }
    };
    let drifted = match p_value {
        Some(p) => p < threshold,
        None => statistic >= threshold,
    };
    Ok(TestOutcome {
        test,
        statistic,
        p_value,
        method,
        threshold,
        drifted,
    })
}

/// Evidently's `get_binned_data`: Sturges bins for numeric columns with more than 20
/// distinct reference values, per-value shares otherwise.
fn binned_shares(reference: &Column, current: &Column, floor: bool) -> (Vec<f64>, Vec<f64>) {
    let (mut r, mut c) = match (reference, current) {
        (Column::Numeric(rv), Column::Numeric(cv)) if binning::distinct_sorted(rv) > 20 => {
            let (_, r, c) = binning::binned_numeric(rv, cv);
            (r, c)
        }
        _ => {
            let (_, r, c) =
                binning::binned_categories(&reference.to_categorical(), &current.to_categorical());
            (r, c)
        }
    };
    if floor {
        binning::floor_zeros(&mut r);
        binning::floor_zeros(&mut c);
    }
    (r, c)
}

/// Reference and current shares per bin, for the report's histograms.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Histogram {
    /// `edges.len() == reference.len() + 1`.
    Numeric {
        edges: Vec<f64>,
        reference: Vec<f64>,
        current: Vec<f64>,
    },
    Categorical {
        categories: Vec<String>,
        reference: Vec<f64>,
        current: Vec<f64>,
    },
}

/// Histogram of both columns on shared bins (Sturges for numbers, one bar per category).
pub fn histogram(reference: &Column, current: &Column) -> Histogram {
    match (reference, current) {
        (Column::Numeric(r), Column::Numeric(c))
            if binning::distinct_sorted(r) > MAX_CATEGORICAL_UNIQUE =>
        {
            let (edges, reference, current) = binning::binned_numeric(r, c);
            Histogram::Numeric {
                edges,
                reference,
                current,
            }
        }
        _ => {
            let (categories, reference, current) =
                binning::binned_categories(&reference.to_categorical(), &current.to_categorical());
            Histogram::Categorical {
                categories,
                reference,
                current,
            }
        }
    }
}
