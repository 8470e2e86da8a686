//! Property tests of the prediction-log line parser: any bytes (a corrupt or foreign file in
//! the sink) are counted, never a panic; every record the logger writes reads back equal.

use std::collections::BTreeMap;

use mooring_drift::check::current_columns;
use mooring_drift::log::reader::parse_lines;
use mooring_drift::log::{
    FeatureValue, LogColumns, Prediction, PredictionRecord, ReadQuery, ReadStats,
};
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

/// A JSON number as text, in every form the grammar allows (and a few it does not).
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?",
        Just("-0".to_string()),
        Just("01".to_string()),
        Just("1.".to_string()),
        Just("1e999".to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
    ]
}

/// A JSON string literal with plain text and escapes, some of them invalid.
fn string_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zé m]{0,4}",
        Just(r#"\""#.to_string()),
        Just(r"\\".to_string()),
        Just(r"\/".to_string()),
        Just(r"\n\t\r\b\f".to_string()),
        Just(r"\u006d".to_string()),
        Just(r"\u00e9".to_string()),
        Just(r"\ud83d\ude00".to_string()),
        Just(r"\ud800".to_string()),
        Just(r"\udc00x".to_string()),
        Just(r"\x".to_string()),
        Just("\t".to_string()),
    ];
    prop::collection::vec(piece, 0..4).prop_map(|p| format!("\"{}\"", p.concat()))
}

/// Any JSON value (and near-JSON), nested a little.
fn value_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        number_text(),
        string_text(),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((string_text(), inner), 0..4).prop_map(|v| {
                let fields: Vec<String> = v.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// One field of a log line: usually a well-typed one, sometimes anything.
fn field_text() -> impl Strategy<Value = String> {
    let f64s = prop::collection::vec(number_text(), 0..3)
        .prop_map(|v| format!("[{}]", v.join(",")))
        .boxed();
    let arrays = prop::collection::vec((string_text(), f64s.clone()), 0..3)
        .prop_map(|v| {
            let e: Vec<String> = v.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("{{{}}}", e.join(","))
        })
        .boxed();
    let feature = prop_oneof![
        number_text(),
        string_text(),
        Just("null".to_string()),
        Just("true".to_string()),
        value_text(),
    ];
    let features = prop::collection::vec((string_text(), feature), 0..4).prop_map(|v| {
        let e: Vec<String> = v.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
        format!("{{{}}}", e.join(","))
    });
    let prediction_field = prop_oneof![
        prop_oneof![number_text(), Just("null".into())]
            .prop_map(|v| format!(r#""class_index":{v}"#)),
        prop_oneof![string_text(), Just("null".into())].prop_map(|v| format!(r#""label":{v}"#)),
        prop_oneof![f64s.clone(), Just("null".into())]
            .prop_map(|v| format!(r#""probabilities":{v}"#)),
        prop_oneof![arrays.clone(), Just("null".into())].prop_map(|v| format!(r#""outputs":{v}"#)),
        (string_text(), value_text()).prop_map(|(k, v)| format!("{k}:{v}")),
    ];
    let prediction =
        prop::collection::vec(prediction_field, 0..4).prop_map(|v| format!("{{{}}}", v.join(",")));
    prop_oneof![
        4 => prop_oneof![number_text(), Just("-0".into())].prop_map(|v| format!(r#""ts_ms":{v}"#)),
        4 => prop_oneof![Just(r#""m""#.to_string()), Just(r#""\u006d""#.to_string()), string_text()].prop_map(|v| format!(r#""model":{v}"#)),
        3 => string_text().prop_map(|v| format!(r#""version":{v}"#)),
        3 => string_text().prop_map(|v| format!(r#""request_id":{v}"#)),
        3 => string_text().prop_map(|v| format!(r#""protocol":{v}"#)),
        3 => features.prop_map(|v| format!(r#""features":{v}"#)),
        1 => prop_oneof![arrays, Just("null".into())].prop_map(|v| format!(r#""raw_inputs":{v}"#)),
        2 => prediction.prop_map(|v| format!(r#""prediction":{v}"#)),
        1 => value_text().prop_map(|v| format!(r#""features":{v}"#)),
        1 => (string_text(), value_text()).prop_map(|(k, v)| format!("{k}:{v}")),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// The reader's fast path and serde_json read every line alike: the same records, the
    /// same lines refused.
    #[test]
    fn lines_of_any_shape_read_as_serde_json_reads_them(
        lines in prop::collection::vec((prop::collection::vec(field_text(), 0..9), " ?", " ?"), 1..6),
    ) {
        let lines: Vec<String> = lines
            .into_iter()
            .map(|(fields, a, b)| format!("{a}{{{}}}{b}", fields.join(&format!(",{a}"))))
            .collect();
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        let mut invalid = 0;
        for line in &lines {
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
            match serde_json::from_str::<PredictionRecord>(line) {
                Ok(r) if r.model == "m" => expected.push(r),
                Ok(_) => {}
                Err(_) => invalid += 1,
            }
        }
        let (mut read, mut stats) = (Vec::new(), ReadStats::default());
        parse_lines(&bytes, &query(), &mut read, &mut stats);
        prop_assert_eq!(&read, &expected, "{:#?}", lines);
        prop_assert_eq!(stats.invalid_lines, invalid);
        // To the bit: -0.0 and 0.0 are equal but not the same feature value.
        let bits = |rs: &[PredictionRecord]| -> Vec<u64> {
            rs.iter()
                .flat_map(|r| r.features.values())
                .filter_map(|v| match v { FeatureValue::Number(x) => Some(x.to_bits()), _ => None })
                .collect()
        };
        prop_assert_eq!(bits(&read), bits(&expected));
    }
}

proptest! {
    #![proptest_config(config())]

    /// Lines of any shape read into the drift check's columns give the columns of the
    /// records the record reader reads from them, and the same line counts.
    #[test]
    fn lines_read_into_columns_as_into_records(
        lines in prop::collection::vec((prop::collection::vec(field_text(), 0..9), " ?"), 1..6),
        logged in prop::collection::vec(record(), 0..4),
    ) {
        let mut bytes = Vec::new();
        for (fields, a) in &lines {
            bytes.extend_from_slice(format!("{a}{{{}}}\n", fields.join(",")).as_bytes());
        }
        for r in &logged {
            serde_json::to_writer(&mut bytes, r).unwrap();
            bytes.push(b'\n');
        }
        let (mut records, mut record_stats) = (Vec::new(), ReadStats::default());
        parse_lines(&bytes, &query(), &mut records, &mut record_stats);
        let (mut columns, mut column_stats) = (LogColumns::default(), ReadStats::default());
        parse_lines(&bytes, &query(), &mut columns, &mut column_stats);
        prop_assert_eq!(column_stats, record_stats);
        let seen = |c: &LogColumns| {
            let texts = c.texts();
            let classes: Vec<_> = c
                .class_index()
                .iter()
                .zip(c.label())
                .map(|(i, l)| (*i, l.map(|id| texts[id as usize].to_string())))
                .collect();
            format!("{} {:?} {classes:?}", c.len(), current_columns(c))
        };
        prop_assert_eq!(seen(&columns), seen(&LogColumns::from_records(&records)));
    }
}
