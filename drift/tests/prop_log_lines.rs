//! Property tests of the prediction-log line parser: any bytes (a corrupt or foreign file in
//! the sink) are counted, never a panic; every record the logger writes reads back equal.

use std::collections::BTreeMap;

use mooring_drift::log::reader::parse_lines;
use mooring_drift::log::{FeatureValue, Prediction, PredictionRecord, ReadQuery, ReadStats};
use proptest::prelude::*;

/// Failing cases are kept beside this file (`prop_log_lines.proptest-regressions`) and
/// replayed first.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 128;
    }
    config
}

fn query() -> ReadQuery {
    ReadQuery {
        model: "m".into(),
        ..ReadQuery::default()
    }
}

fn feature_value() -> impl Strategy<Value = FeatureValue> {
    prop_oneof![
        any::<f64>().prop_map(FeatureValue::from),
        ".{0,12}".prop_map(FeatureValue::Text),
        Just(FeatureValue::Missing),
    ]
}

fn finite() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |f| f.is_finite())
}

fn record() -> impl Strategy<Value = PredictionRecord> {
    (
        any::<i64>(),
        prop_oneof![Just("m".to_string()), ".{0,6}"],
        ".{0,6}",
        ".{0,10}",
        prop::collection::btree_map(".{0,8}", feature_value(), 0..5),
        prop::option::of(prop::collection::btree_map(
            "[a-z]{1,6}",
            prop::collection::vec(finite(), 0..4),
            0..3,
        )),
        prop::option::of(any::<i64>()),
        prop::option::of(".{0,8}"),
        prop::option::of(prop::collection::vec(finite(), 0..4)),
    )
        .prop_map(
            |(
                ts_ms,
                model,
                version,
                request_id,
                features,
                raw_inputs,
                class_index,
                label,
                probabilities,
            )| {
                PredictionRecord {
                    ts_ms,
                    model,
                    version,
                    request_id,
                    protocol: "rest_v2".into(),
                    features,
                    raw_inputs,
                    prediction: Prediction {
                        class_index,
                        label,
                        probabilities,
                        outputs: None,
                    },
                }
            },
        )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_are_counted_never_a_panic(
        parts in prop::collection::vec(prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            Just(b"\n".to_vec()),
            Just(br#"{"ts_ms":1,"model":"m","version":"1","request_id":"r","protocol":"p"}"#.to_vec()),
            Just(br#"{"ts_ms":1,"model":"m","features":{"a":[1]}}"#.to_vec()),
        ], 0..12),
    ) {
        let bytes = parts.concat();
        let (mut records, mut stats) = (Vec::new(), ReadStats::default());
        parse_lines(&bytes, &query(), &mut records, &mut stats);
        let non_blank = bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .count();
        prop_assert_eq!(stats.lines, non_blank);
        prop_assert!(records.len() + stats.invalid_lines + stats.truncated_lines <= stats.lines);
        prop_assert!(stats.truncated_lines <= 1, "only the last line can be cut short");
    }

    #[test]
    fn logged_records_read_back_equal(records in prop::collection::vec(record(), 0..6), cut in any::<bool>()) {
        let mut bytes = Vec::new();
        for r in &records {
            serde_json::to_writer(&mut bytes, r).unwrap();
            bytes.push(b'\n');
        }
        // A crash mid-write leaves half a line at the end: skipped and counted.
        if cut && let Some(r) = records.first() {
            let line = serde_json::to_vec(r).unwrap();
            bytes.extend_from_slice(&line[..line.len() / 2]);
        }
        let (mut read, mut stats) = (Vec::new(), ReadStats::default());
        parse_lines(&bytes, &query(), &mut read, &mut stats);
        let expected: Vec<&PredictionRecord> = records.iter().filter(|r| r.model == "m").collect();
        prop_assert_eq!(read.iter().collect::<Vec<_>>(), expected);
        prop_assert_eq!(stats.invalid_lines, 0);
    }
}

#[test]
fn a_feature_that_is_not_a_scalar_makes_the_line_invalid() {
    let bytes = b"{\"ts_ms\":1,\"model\":\"m\",\"version\":\"1\",\"request_id\":\"r\",\"protocol\":\"p\",\"features\":{\"a\":[1]}}\n";
    let (mut read, mut stats) = (Vec::new(), ReadStats::default());
    parse_lines(bytes, &query(), &mut read, &mut stats);
    assert_eq!((read.len(), stats.invalid_lines), (0, 1));
}

#[test]
fn a_probability_reads_back_to_the_bit() {
    // Found by `logged_records_read_back_equal`: without serde_json's `float_roundtrip` the
    // parser may land one ulp off the value it wrote.
    let mut r = PredictionRecord::now("m", "1", "r", "rest_v2");
    r.prediction.probabilities = Some(vec![-2.6406200309594183e-212]);
    r.features = BTreeMap::from([("x".to_string(), FeatureValue::Number(0.1 + 0.2))]);
    let mut line = serde_json::to_vec(&r).unwrap();
    line.push(b'\n');
    let (mut read, mut stats) = (Vec::new(), ReadStats::default());
    parse_lines(&line, &query(), &mut read, &mut stats);
    assert_eq!(read, vec![r]);
}
