//! One drift check: current columns from the logged rows, reference columns from a CSV,
//! a test per feature, the dataset verdict and prediction drift.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::log::{Cell, LogColumns, ReadStats};
use crate::stats::{self, Column, Histogram, TestChoice, TestKind, TestOutcome};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("reference dataset {source_name}: {reason}")]
    Reference { source_name: String, reason: String },
    #[error(
        "no logged feature appears in the reference (logged: {logged}; reference columns: {reference})"
    )]
    NoCommonFeatures { logged: String, reference: String },
    #[error("feature {feature:?}: {reason}")]
    Test { feature: String, reason: String },
}

/// Named columns of the reference dataset.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub rows: usize,
    pub columns: BTreeMap<String, Column>,
}

impl Dataset {
    /// Parse a CSV with a header row. A column is numeric when every non-empty cell parses
    /// as a number; empty cells and `nan` are missing values and are dropped.
    pub fn from_csv(bytes: &[u8], source_name: &str) -> Result<Dataset, CheckError> {
        let err = |reason: String| CheckError::Reference {
            source_name: source_name.to_string(),
            reason,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(bytes);
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| err(format!("unreadable header: {e}")))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        if headers.is_empty() || headers.iter().all(String::is_empty) {
            return Err(err("no header row".into()));
        }
        let mut cells: Vec<Vec<String>> = vec![Vec::new(); headers.len()];
        let mut rows = 0;
        for (i, rec) in reader.records().enumerate() {
            let rec = rec.map_err(|e| err(format!("row {}: {e}", i + 2)))?;
            for (col, cell) in cells.iter_mut().zip(rec.iter()) {
                col.push(cell.trim().to_string());
            }
            rows += 1;
        }
        if rows == 0 {
            return Err(err("no data rows".into()));
        }
        let columns = headers
            .into_iter()
            .zip(cells)
            .map(|(name, values)| (name, column_from_text(values)))
            .collect();
        Ok(Dataset { rows, columns })
    }
}

fn is_missing(cell: &str) -> bool {
    cell.is_empty() || cell.eq_ignore_ascii_case("nan") || cell.eq_ignore_ascii_case("null")
}

fn column_from_text(values: Vec<String>) -> Column {
    let present: Vec<&String> = values.iter().filter(|v| !is_missing(v)).collect();
    let numbers: Option<Vec<f64>> = present.iter().map(|v| v.parse::<f64>().ok()).collect();
    match numbers {
        Some(n) => Column::numeric(n),
        None => {
            let mut counts = BTreeMap::new();
            for v in present {
                *counts.entry(v.clone()).or_insert(0) += 1;
            }
            Column::Categorical(counts)
        }
    }
}

/// Per-feature test overrides: `feature → (test, threshold)`; `*` applies to every feature.
#[derive(Clone, Debug, Default)]
pub struct TestOverrides {
    pub per_feature: BTreeMap<String, (Option<TestKind>, Option<f64>)>,
    /// Threshold per test kind, replacing the default (0.05 for p-values, 0.1 otherwise).
    pub thresholds: BTreeMap<TestKind, f64>,
}

impl TestOverrides {
    fn choose(&self, feature: &str, reference: &Column, current: &Column) -> TestChoice {
        let specific = self.per_feature.get(feature);
        let wildcard = self.per_feature.get("*");
        let test = specific
            .and_then(|(t, _)| *t)
            .or_else(|| wildcard.and_then(|(t, _)| *t))
            .unwrap_or_else(|| stats::default_test(reference, current));
        let threshold = specific
            .and_then(|(_, th)| *th)
            .or_else(|| wildcard.and_then(|(_, th)| *th))
            .or_else(|| self.thresholds.get(&test).copied())
            .unwrap_or_else(|| test.default_threshold());
        TestChoice { test, threshold }
    }
}

/// Settings of one check.
#[derive(Clone, Debug)]
pub struct CheckConfig {
    pub min_samples: usize,
    pub drift_share: f64,
    pub overrides: TestOverrides,
    /// Reference column holding the class (index or label); `None` tries `prediction`,
    /// `target`, `label`, `class`, `species`.
    pub prediction_column: Option<String>,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            min_samples: 100,
            drift_share: 0.5,
            overrides: TestOverrides::default(),
            prediction_column: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Verdict {
    NoDrift,
    Drift,
    InsufficientData,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Numeric,
    Categorical,
}

/// The result for one feature (or for the predictions).
#[derive(Clone, Debug, Serialize)]
pub struct FeatureReport {
    pub name: String,
    pub kind: Kind,
    #[serde(flatten)]
    pub outcome: TestOutcome,
    pub reference_count: usize,
    pub current_count: usize,
    /// Current rows where this feature was missing, null or NaN (dropped before the test).
    pub current_missing: usize,
    pub histogram: Histogram,
}

/// A feature that could not be tested, and why.
#[derive(Clone, Debug, Serialize)]
pub struct SkippedFeature {
    pub name: String,
    pub reason: String,
}

/// The full report of one check.
#[derive(Clone, Debug, Serialize)]
pub struct FullReport {
    pub verdict: Verdict,
    pub model: String,
    pub version: Option<String>,
    pub generated_at: String,
    pub samples: usize,
    pub reference_samples: usize,
    pub min_samples: usize,
    pub drift_share: f64,
    pub drift_share_threshold: f64,
    pub drifted_features: usize,
    pub tested_features: usize,
    pub features: Vec<FeatureReport>,
    pub skipped: Vec<SkippedFeature>,
    pub prediction: Option<FeatureReport>,
    pub read: ReadStats,
    pub message: Option<String>,
}

/// Run the check on the logged rows `records` against `reference`.
///
/// Defined behaviour at the edges: fewer than `min_samples` records (including none) →
/// `InsufficientData`; missing/NaN values are dropped per feature and counted; a logged
/// feature absent from the reference, or with no values left on one side, is skipped with
/// the reason (and not counted in the share); when no feature can be tested at all the
/// check fails.
pub fn run_check(
    model: &str,
    version: Option<&str>,
    records: &LogColumns,
    read: ReadStats,
    reference: &Dataset,
    config: &CheckConfig,
) -> Result<FullReport, CheckError> {
    let mut report = FullReport {
        verdict: Verdict::InsufficientData,
        model: model.to_string(),
        version: version.map(str::to_string),
        generated_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        samples: records.len(),
        reference_samples: reference.rows,
        min_samples: config.min_samples,
        drift_share: 0.0,
        drift_share_threshold: config.drift_share,
        drifted_features: 0,
        tested_features: 0,
        features: Vec::new(),
        skipped: Vec::new(),
        prediction: None,
        read,
        message: None,
    };
    if records.len() < config.min_samples.max(1) {
        report.message = Some(format!(
            "{} logged samples in the window, fewer than the minimum {}",
            records.len(),
            config.min_samples
        ));
        return Ok(report);
    }
    let (current, missing) = current_columns(records);
    for (name, cur) in &current {
        let Some(refcol) = reference.columns.get(name) else {
            report.skipped.push(SkippedFeature {
                name: name.clone(),
                reason: "not a column of the reference dataset".into(),
            });
            continue;
        };
        if cur.is_empty() || refcol.is_empty() {
            let side = if cur.is_empty() {
                "current window"
            } else {
                "reference"
            };
            report.skipped.push(SkippedFeature {
                name: name.clone(),
                reason: format!("no values in the {side} (all missing)"),
            });
            continue;
        }
        // Free text is compared through its descriptors (see `text`), not as categories.
        if let (Column::Categorical(r), Column::Categorical(c)) = (refcol, cur)
            && crate::text::is_text(r)
        {
            let vocabulary = crate::text::vocabulary(r);
            let reference = crate::text::descriptor_columns(r, &vocabulary);
            let current = crate::text::descriptor_columns(c, &vocabulary);
            for ((suffix, r), c) in crate::text::DESCRIPTORS.iter().zip(reference).zip(current) {
                let feature = format!("{name}.{suffix}");
                let (r, c) = (Column::numeric(r), Column::numeric(c));
                report
                    .features
                    .push(test_feature(&feature, &r, &c, missing[name], config)?);
            }
            continue;
        }
        report
            .features
            .push(test_feature(name, refcol, cur, missing[name], config)?);
    }
    if report.features.is_empty() {
        return Err(CheckError::NoCommonFeatures {
            logged: current.keys().cloned().collect::<Vec<_>>().join(", "),
            reference: reference
                .columns
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    report.tested_features = report.features.len();
    report.drifted_features = report.features.iter().filter(|f| f.outcome.drifted).count();
    report.drift_share = report.drifted_features as f64 / report.tested_features as f64;
    report.verdict = if report.drift_share >= config.drift_share {
        Verdict::Drift
    } else {
        Verdict::NoDrift
    };
    report.prediction = prediction_drift(records, reference, config)?;
    Ok(report)
}

fn test_feature(
    name: &str,
    reference: &Column,
    current: &Column,
    missing: usize,
    config: &CheckConfig,
) -> Result<FeatureReport, CheckError> {
    // A column numeric on one side only (text in the logs, numbers in the CSV) is compared
    // as categories.
    let (r, c) = match (reference, current) {
        (Column::Numeric(_), Column::Numeric(_)) => {
            (Cow::Borrowed(reference), Cow::Borrowed(current))
        }
        _ => (
            Cow::Owned(Column::Categorical(reference.to_categorical())),
            Cow::Owned(Column::Categorical(current.to_categorical())),
        ),
    };
    let (r, c) = (r.as_ref(), c.as_ref());
    let choice = config.overrides.choose(name, r, c);
    let outcome = stats::run_test(choice, r, c).map_err(|reason| CheckError::Test {
        feature: name.to_string(),
        reason,
    })?;
    let kind = match (r, choice.test) {
        (Column::Numeric(_), TestKind::Ks | TestKind::Wasserstein) => Kind::Numeric,
        (Column::Numeric(v), _) if binning_distinct(v) > stats::MAX_CATEGORICAL_UNIQUE => {
            Kind::Numeric
        }
        _ => Kind::Categorical,
    };
    Ok(FeatureReport {
        name: name.to_string(),
        kind,
        outcome,
        reference_count: r.len(),
        current_count: c.len(),
        current_missing: missing,
        histogram: stats::histogram(r, c),
    })
}

fn binning_distinct(v: &[f64]) -> usize {
    stats::binning::distinct_sorted(v)
}

/// Current columns from the logged rows, plus per-feature counts of missing values. A
/// feature is a column when any row has it; rows without it count as neither.
pub fn current_columns(
    records: &LogColumns,
) -> (BTreeMap<String, Column>, BTreeMap<String, usize>) {
    let texts = records.texts();
    let mut columns = BTreeMap::new();
    let mut missing = BTreeMap::new();
    for (name, parts) in records.features() {
        let mut numbers = Vec::new();
        let mut text_counts: HashMap<u32, u64> = HashMap::new();
        let mut absent = 0;
        for cells in parts {
            for cell in cells {
                match *cell {
                    Cell::Number(v) => numbers.push(v),
                    Cell::Text(id) => *text_counts.entry(id).or_insert(0) += 1,
                    Cell::Missing => absent += 1,
                    Cell::Absent => {}
                }
            }
        }
        let col = if text_counts.is_empty() {
            Column::numeric(numbers)
        } else {
            // Mixed numbers and text: the column is categorical.
            let mut cats: BTreeMap<String, u64> = text_counts
                .into_iter()
                .map(|(id, n)| (texts[id as usize].to_string(), n))
                .collect();
            for n in numbers {
                *cats.entry(stats::format_number(n)).or_insert(0) += 1;
            }
            Column::Categorical(cats)
        };
        columns.insert(name.to_string(), col);
        missing.insert(name.to_string(), absent);
    }
    (columns, missing)
}

const PREDICTION_COLUMNS: [&str; 5] = ["prediction", "target", "label", "class", "species"];

/// Drift of the predicted class against the reference's class column, compared as
/// categories: class indices when the reference column is numeric, labels otherwise.
fn prediction_drift(
    records: &LogColumns,
    reference: &Dataset,
    config: &CheckConfig,
) -> Result<Option<FeatureReport>, CheckError> {
    let column = match &config.prediction_column {
        Some(c) => Some(c.as_str()),
        None => PREDICTION_COLUMNS
            .into_iter()
            .find(|c| reference.columns.contains_key(*c)),
    };
    let Some(column) = column else {
        return Ok(None);
    };
    let Some(refcol) = reference.columns.get(column) else {
        return Err(CheckError::Reference {
            source_name: "prediction column".into(),
            reason: format!("--prediction-column {column:?} is not a column of the reference"),
        });
    };
    let by_index = matches!(refcol, Column::Numeric(_));
    #[derive(PartialEq, Eq, Hash)]
    enum Class {
        Index(i64),
        Label(u32),
    }
    let mut by_class: HashMap<Class, u64> = HashMap::new();
    let mut missing = 0;
    for (index, label) in records.class_index().iter().zip(records.label()) {
        let class = match (by_index, label) {
            (false, Some(label)) => Some(Class::Label(*label)),
            _ => index.map(Class::Index),
        };
        match class {
            Some(c) => *by_class.entry(c).or_insert(0) += 1,
            None => missing += 1,
        }
    }
    let texts = records.texts();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (class, n) in by_class {
        let key = match class {
            Class::Index(i) => i.to_string(),
            Class::Label(id) => texts[id as usize].to_string(),
        };
        *counts.entry(key).or_insert(0) += n;
    }
    if counts.is_empty() {
        return Ok(None);
    }
    let r = Column::Categorical(refcol.to_categorical());
    let c = Column::Categorical(counts);
    let mut report = test_feature(column, &r, &c, missing, config)?;
    report.kind = Kind::Categorical;
    Ok(Some(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{FeatureValue, PredictionRecord};

    fn records(n: usize, shift: f64) -> Vec<PredictionRecord> {
        let names = vec!["a".to_string(), "b".to_string()];
        (0..n)
            .map(|i| {
                let x = (i % 50) as f64 + shift;
                PredictionRecord::now("m", "1", "r", "api_v1")
                    .with_features(&names, &[x, (i % 50) as f64])
            })
            .collect()
    }

    /// The check of model `m`'s records against `reference`.
    fn check(recs: &[PredictionRecord], reference: &Dataset, config: &CheckConfig) -> FullReport {
        run_check(
            "m",
            None,
            &LogColumns::from_records(recs),
            ReadStats::default(),
            reference,
            config,
        )
        .unwrap()
    }

    fn reference() -> Dataset {
        let mut csv = String::from("a,b,species\n");
        for i in 0..200 {
            csv += &format!("{},{},{}\n", i % 50, i % 50, ["x", "y"][i % 2]);
        }
        Dataset::from_csv(csv.as_bytes(), "test").unwrap()
    }

    #[test]
    fn empty_window_is_insufficient_data() {
        let r = run_check(
            "m",
            None,
            &LogColumns::default(),
            ReadStats::default(),
            &reference(),
            &CheckConfig::default(),
        )
        .unwrap();
        assert_eq!(r.verdict, Verdict::InsufficientData);
        assert!(r.message.unwrap().contains("0 logged samples"));
    }

    #[test]
    fn a_feature_missing_from_the_reference_is_skipped_with_the_reason() {
        let mut recs = records(200, 0.0);
        for r in &mut recs {
            r.features.insert("extra".into(), FeatureValue::Number(1.0));
        }
        let r = check(&recs, &reference(), &CheckConfig::default());
        assert_eq!(r.tested_features, 2);
        assert_eq!(r.skipped.len(), 1);
        assert_eq!(r.skipped[0].name, "extra");
        assert_eq!(r.verdict, Verdict::NoDrift);
    }

    #[test]
    fn nan_values_are_dropped_and_counted() {
        let mut recs = records(200, 0.0);
        for r in recs.iter_mut().take(30) {
            r.features.insert("a".into(), FeatureValue::from(f64::NAN));
        }
        let r = check(&recs, &reference(), &CheckConfig::default());
        let a = r.features.iter().find(|f| f.name == "a").unwrap();
        assert_eq!(a.current_missing, 30);
        assert_eq!(a.current_count, 170);
    }

    #[test]
    fn a_shift_is_drift_and_overrides_apply() {
        let recs = records(200, 10.0);
        let r = check(&recs, &reference(), &CheckConfig::default());
        assert_eq!(r.verdict, Verdict::Drift);
        assert_eq!(r.drifted_features, 1);
        assert_eq!(r.features[0].outcome.test, TestKind::Ks);
        let mut cfg = CheckConfig::default();
        cfg.overrides
            .per_feature
            .insert("*".into(), (Some(TestKind::Psi), Some(100.0)));
        let r = check(&recs, &reference(), &cfg);
        assert_eq!(r.features[0].outcome.test, TestKind::Psi);
        assert_eq!(r.verdict, Verdict::NoDrift);
    }

    #[test]
    fn constant_columns_compare_without_dividing_by_zero() {
        let names = vec!["a".to_string()];
        let recs: Vec<_> = (0..150)
            .map(|_| PredictionRecord::now("m", "1", "r", "x").with_features(&names, &[3.0]))
            .collect();
        let csv = "a\n".to_string() + &"3\n".repeat(100);
        let reference = Dataset::from_csv(csv.as_bytes(), "t").unwrap();
        let r = check(&recs, &reference, &CheckConfig::default());
        assert_eq!(r.verdict, Verdict::NoDrift);
        assert!(r.features[0].outcome.score().is_finite());
    }

    fn spam_reference() -> Dataset {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/spam-classifier/1/reference.csv"
        );
        Dataset::from_csv(&std::fs::read(path).unwrap(), "reference.csv").unwrap()
    }

    fn text_records(texts: &[String]) -> Vec<PredictionRecord> {
        texts
            .iter()
            .map(|t| {
                let mut r = PredictionRecord::now("spam-classifier", "1", "r", "api_v1");
                r.features
                    .insert("text".into(), FeatureValue::Text(t.clone()));
                r
            })
            .collect()
    }

    #[test]
    fn a_text_feature_is_checked_through_its_descriptors() {
        let reference = spam_reference();
        let Column::Categorical(texts) = &reference.columns["text"] else {
            panic!("the text column is categorical")
        };
        let same: Vec<String> = texts.keys().cloned().collect();
        let config = CheckConfig {
            min_samples: 10,
            ..CheckConfig::default()
        };
        let r = run_check(
            "spam-classifier",
            Some("1"),
            &LogColumns::from_records(&text_records(&same)),
            ReadStats::default(),
            &reference,
            &config,
        )
        .unwrap();
        let names: Vec<&str> = r.features.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["text.length", "text.non_letter_share", "text.oov_share"]
        );
        assert_eq!(r.verdict, Verdict::NoDrift, "{:?}", r.features);

        // Long messages in words the model never saw: every descriptor moves.
        let other: Vec<String> = (0..200)
            .map(|i| {
                format!(
                    "Zahlung {i} überfällig: Konto 4411-{i:04} sofort prüfen, Frist 31.12.2026 #{i}"
                )
            })
            .collect();
        let r = run_check(
            "spam-classifier",
            Some("1"),
            &LogColumns::from_records(&text_records(&other)),
            ReadStats::default(),
            &reference,
            &config,
        )
        .unwrap();
        assert_eq!(r.verdict, Verdict::Drift);
        assert!(
            r.features.iter().all(|f| f.outcome.drifted),
            "{:?}",
            r.features
        );
    }
}
