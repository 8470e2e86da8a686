//! The columnar reader the drift check uses gives exactly the columns the record reader
//! gives: the same rows, features, missing counts, classes and line counts, to the bit.

use std::collections::BTreeMap;

use mooring_drift::check::{CheckConfig, Dataset, current_columns, run_check};
use mooring_drift::log::{
    FeatureValue, LogColumns, PredictionRecord, ReadQuery, S3Options, read_columns, read_records,
};

/// Everything the check reads from the rows, in a form that compares to the bit (`{:?}`
/// prints every float exactly, and tells -0.0 from 0.0).
fn seen(columns: &LogColumns) -> String {
    let texts = columns.texts();
    let classes: Vec<(Option<i64>, Option<&str>)> = columns
        .class_index()
        .iter()
        .zip(columns.label())
        .map(|(i, l)| (*i, l.map(|id| texts[id as usize])))
        .collect();
    let mut classes_sorted = classes.clone();
    classes_sorted.sort();
    format!(
        "{} rows\n{:?}\n{classes_sorted:?}",
        columns.len(),
        current_columns(columns)
    )
}

fn record(model: &str, version: &str, ts_ms: i64, i: usize) -> PredictionRecord {
    let mut r = PredictionRecord::now(model, version, &format!("r\"{i}\\"), "rest_v2");
    r.ts_ms = ts_ms;
    let x = i as f64 * 0.1 - 3.0;
    r.features.insert("x".into(), FeatureValue::Number(x));
    match i % 4 {
        0 => {
            r.features.insert("y".into(), FeatureValue::Missing);
        }
        1 => {
            r.features.insert(
                "y".into(),
                FeatureValue::Text(format!("é\n\"{}\"\u{1F600}", i % 3)),
            );
        }
        2 => {
            r.features.insert("y".into(), FeatureValue::Number(-0.0));
        }
        _ => {}
    }
    if i.is_multiple_of(5) {
        r.raw_inputs = Some(BTreeMap::from([("t".into(), vec![x, 1.0, -x])]));
    }
    if !i.is_multiple_of(3) {
        r.prediction.class_index = Some((i % 3) as i64);
    }
    if i.is_multiple_of(2) {
        r.prediction.label = Some(["setosa", "vir\\ginica"][i % 4 / 2].into());
    }
    r
}

fn line(r: &PredictionRecord) -> String {
    serde_json::to_string(r).unwrap() + "\n"
}

/// Three files: records of two models and versions over time, lines only serde_json
/// reads (keys in another order, escapes the logger does not write, duplicate features),
/// invalid lines and a truncated last line.
fn write_logs(dir: &std::path::Path) {
    let mut files = [String::new(), String::new(), String::new()];
    for i in 0..300 {
        let (model, version) = match i % 7 {
            0 => ("other", "1"),
            1 => ("m", "2"),
            _ => ("m", "1"),
        };
        files[i % 3] += &line(&record(model, version, 1000 + (i as i64 % 50), i));
    }
    files[0] += r#"{"features":{"x":1,"x":"\u0061"},"ts_ms":1040,"model":"\u006d","version":"1","request_id":"r","protocol":"p","prediction":{"label":"setosa"}}"#;
    files[0] += "\n";
    files[1] += "{\"ts_ms\":1,\"model\":\"m\",\"features\":{\"x\":[1]}}\nnot json\n\n";
    files[1] += r#"{"ts_ms":1045,"model":"m","version":"1","request_id":"r","protocol":"p","raw_inputs":{"t":[1,2],"t":[3]},"features":{"x":true,"z":1e5}}"#;
    files[1] += "\n";
    let cut = line(&record("m", "1", 1049, 7));
    files[2] += &cut[..cut.len() / 2];
    for (i, text) in files.iter().enumerate() {
        std::fs::write(dir.join(format!("predictions-{i}.jsonl")), text).unwrap();
    }
}

fn queries() -> Vec<ReadQuery> {
    let q = |version: Option<&str>, since_ms, max_samples| ReadQuery {
        model: "m".into(),
        version: version.map(str::to_string),
        since_ms,
        max_samples,
    };
    vec![
        q(None, None, None),
        q(Some("1"), None, None),
        q(None, Some(1030), None),
        q(Some("1"), Some(1010), Some(40)),
        q(None, None, Some(7)),
        ReadQuery {
            model: "nobody".into(),
            ..ReadQuery::default()
        },
    ]
}

#[tokio::test]
async fn the_columnar_reader_gives_the_columns_of_the_records() {
    let dir = tempfile::tempdir().unwrap();
    write_logs(dir.path());
    let url = format!("file://{}", dir.path().display());
    for query in queries() {
        let (records, record_stats) = read_records(&url, &query, &S3Options::default())
            .await
            .unwrap();
        let (columns, column_stats) = read_columns(&url, &query, &S3Options::default())
            .await
            .unwrap();
        assert_eq!(column_stats, record_stats, "{query:?}");
        assert_eq!(
            (record_stats.invalid_lines, record_stats.truncated_lines),
            (2, 1)
        );
        assert_eq!(
            seen(&columns),
            seen(&LogColumns::from_records(&records)),
            "{query:?}"
        );
    }
}

#[tokio::test]
async fn a_check_on_the_columns_reports_what_it_reported_on_the_records() {
    let dir = tempfile::tempdir().unwrap();
    write_logs(dir.path());
    let url = format!("file://{}", dir.path().display());
    let mut csv = String::from("x,y,t[1],species\n");
    for i in 0..200 {
        csv += &format!(
            "{},{},1,{}\n",
            i as f64 * 0.05,
            ["", "a", "0"][i % 3],
            ["setosa", "x"][i % 2]
        );
    }
    let reference = Dataset::from_csv(csv.as_bytes(), "reference.csv").unwrap();
    let config = CheckConfig {
        min_samples: 10,
        ..CheckConfig::default()
    };
    let query = &queries()[0];
    let (records, stats) = read_records(&url, query, &S3Options::default())
        .await
        .unwrap();
    let (columns, _) = read_columns(&url, query, &S3Options::default())
        .await
        .unwrap();
    let report = |c: &LogColumns| {
        let mut r = run_check("m", None, c, stats.clone(), &reference, &config).unwrap();
        r.generated_at.clear();
        serde_json::to_string(&r).unwrap()
    };
    let from_columns = report(&columns);
    assert!(
        from_columns.contains(r#""prediction":{"name":"species""#),
        "{from_columns}"
    );
    assert_eq!(from_columns, report(&LogColumns::from_records(&records)));
}
