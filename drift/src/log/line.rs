//! The fast path of reading one log line: a hand-written scanner for the JSON the logger
//! writes, into a [`Row`] that borrows from the line. The record reader turns a row into a
//! [`PredictionRecord`]; the drift check's columnar reader copies only what it needs.
//!
//! serde_json's derive builds every record through its generic visitors and parses floats
//! with its own round-trip algorithm; on a million-line log that was most of a drift
//! check's time. This scanner borrows keys and strings from the line (a string is copied
//! once, into the record, and decoded only when it holds escapes), skips unknown fields
//! without building values, and parses numbers with the standard library (correctly
//! rounded, as `float_roundtrip` is).
//!
//! It is a fast path, not a second definition of the format: whatever it is not sure of —
//! a duplicate or missing field, a value of an unexpected type, a number out of range, a
//! lone surrogate, trailing characters — it declines (`None`), and the caller parses the
//! line with serde_json as before, which then accepts or rejects it. So a line reads the
//! same either way; the property tests in `tests/prop_log_lines.rs` check exactly that.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use super::record::{FeatureValue, Prediction, PredictionRecord};

/// A feature's value as the line holds it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Number(f64),
    Text(Cow<'a, str>),
    Missing,
}

/// One log line, its strings borrowed from the line (owned only when they hold escapes).
/// Arrays of numbers (raw inputs, probabilities, outputs) are ranges of `numbers`. The
/// vectors are reused from line to line.
#[derive(Debug, Default)]
pub struct Row<'a> {
    pub ts_ms: i64,
    pub model: Cow<'a, str>,
    pub version: Cow<'a, str>,
    pub request_id: Cow<'a, str>,
    pub protocol: Cow<'a, str>,
    /// In the order of the line; a name given twice keeps its last value (as a map does).
    pub features: Vec<(Cow<'a, str>, Value<'a>)>,
    /// `None` when absent or `null`.
    pub raw_inputs: Option<Vec<(Cow<'a, str>, Range<usize>)>>,
    pub class_index: Option<i64>,
    pub label: Option<Cow<'a, str>>,
    pub probabilities: Option<Range<usize>>,
    pub outputs: Option<Vec<(Cow<'a, str>, Range<usize>)>>,
    pub numbers: Vec<f64>,
}

impl Row<'_> {
    fn clear(&mut self) {
        self.features.clear();
        self.raw_inputs = None;
        self.class_index = None;
        self.label = None;
        self.probabilities = None;
        self.outputs = None;
        self.numbers.clear();
    }

    fn arrays(&self, arrays: &[(Cow<'_, str>, Range<usize>)]) -> BTreeMap<String, Vec<f64>> {
        arrays
            .iter()
            .map(|(k, r)| (k.to_string(), self.numbers[r.clone()].to_vec()))
            .collect()
    }

    /// The record this row is.
    pub fn to_record(&self) -> PredictionRecord {
        PredictionRecord {
            ts_ms: self.ts_ms,
            model: self.model.to_string(),
            version: self.version.to_string(),
            request_id: self.request_id.to_string(),
            protocol: self.protocol.to_string(),
            features: self
                .features
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::Number(x) => FeatureValue::Number(*x),
                        Value::Text(t) => FeatureValue::Text(t.to_string()),
                        Value::Missing => FeatureValue::Missing,
                    };
                    (k.to_string(), v)
                })
                .collect(),
            raw_inputs: self.raw_inputs.as_deref().map(|a| self.arrays(a)),
            prediction: Prediction {
                class_index: self.class_index,
                label: self.label.as_deref().map(str::to_string),
                probabilities: self.probabilities.clone().map(|r| self.numbers[r].to_vec()),
                outputs: self.outputs.as_deref().map(|a| self.arrays(a)),
            },
        }
    }
}

/// Parses one line into `row` the way `serde_json::from_slice::<PredictionRecord>` would
/// read it, or returns `None` when the line is not in the shape this scanner knows (the
/// caller then asks serde_json; `row` is then unspecified).
pub(crate) fn parse_row<'a>(line: &'a [u8], row: &mut Row<'a>) -> Option<()> {
    // UTF-8 is checked once for the whole line (strings are then slices of it); a line
    // that is not UTF-8 is left to serde_json.
    let text = std::str::from_utf8(line).ok()?;
    let mut s = Scanner {
        b: line,
        text,
        i: 0,
    };
    row.clear();
    s.row(row)?;
    s.ws();
    (s.i == s.b.len()).then_some(())
}

/// [`parse_row`] into a [`PredictionRecord`].
#[cfg(test)]
fn parse_record(line: &[u8]) -> Option<PredictionRecord> {
    let mut row = Row::default();
    parse_row(line, &mut row)?;
    Some(row.to_record())
}

/// Deep nesting in an unknown field is left to serde_json (which has its own limit).
const MAX_SKIP_DEPTH: usize = 32;

struct Scanner<'a> {
    b: &'a [u8],
    /// `b`, known to be UTF-8.
    text: &'a str,
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// JSON whitespace: space, tab, line feed, carriage return.
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// Skips whitespace, then consumes `c` if it is next.
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    /// `null` (after whitespace), consumed when present.
    fn null(&mut self) -> bool {
        self.ws();
        self.literal(b"null")
    }

    /// Iterates an object's entries: calls `entry` with each key, the scanner positioned at
    /// the value, which `entry` must consume.
    fn object(
        &mut self,
        mut entry: impl FnMut(&mut Self, Cow<'a, str>) -> Option<()>,
    ) -> Option<()> {
        if !self.eat(b'{') {
            return None;
        }
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            if !self.eat(b':') {
                return None;
            }
            entry(self, key)?;
            if self.eat(b',') {
                continue;
            }
            return self.eat(b'}').then_some(());
        }
    }

    /// A string, borrowed from the line unless it holds escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.ws();
        if self.peek() != Some(b'"') {
            return None;
        }
        let start = self.i + 1;
        let mut j = start;
        loop {
            match *self.b.get(j)? {
                b'"' => {
                    self.i = j + 1;
                    return self.text.get(start..j).map(Cow::Borrowed);
                }
                b'\\' => break,
                // Control characters must be escaped in JSON.
                0..0x20 => return None,
                _ => j += 1,
            }
        }
        // Escapes: decode from `j` on.
        let mut out = String::from(self.text.get(start..j)?);
        let mut k = j;
        loop {
            let run = k;
            while let Some(&c) = self.b.get(k) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                k += 1;
            }
            out.push_str(self.text.get(run..k)?);
            match *self.b.get(k)? {
                b'"' => {
                    self.i = k + 1;
                    return Some(Cow::Owned(out));
                }
                b'\\' => {
                    let c = *self.b.get(k + 1)?;
                    k += 2;
                    out.push(match c {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let high = self.hex4(k)?;
                            k += 4;
                            match high {
                                0xD800..0xDC00 => {
                                    // A surrogate pair: `\uD83D\uDE00`.
                                    if self.b.get(k..k + 2)? != b"\\u" {
                                        return None;
                                    }
                                    let low = self.hex4(k + 2)?;
                                    if !(0xDC00..0xE000).contains(&low) {
                                        return None;
                                    }
                                    k += 6;
                                    char::from_u32(
                                        0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00),
                                    )?
                                }
                                _ => char::from_u32(high)?,
                            }
                        }
                        _ => return None,
                    });
                }
                _ => return None,
            }
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = std::str::from_utf8(self.b.get(at..at + 4)?).ok()?;
        if !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(digits, 16).ok()
    }

    /// A JSON number token: its text, and whether it is an integer (no fraction, no
    /// exponent).
    fn number_token(&mut self) -> Option<(&'a str, bool)> {
        self.ws();
        let start = self.i;
        let b = self.b;
        let mut j = start;
        if b.get(j) == Some(&b'-') {
            j += 1;
        }
        match b.get(j) {
            Some(b'0') => j += 1,
            Some(b'1'..=b'9') => {
                while b.get(j).is_some_and(u8::is_ascii_digit) {
                    j += 1;
                }
            }
            _ => return None,
        }
        let mut integer = true;
        if b.get(j) == Some(&b'.') {
            integer = false;
            j += 1;
            let digits = j;
            while b.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
            if j == digits {
                return None;
            }
        }
        if let Some(b'e' | b'E') = b.get(j) {
            integer = false;
            j += 1;
            if let Some(b'+' | b'-') = b.get(j) {
                j += 1;
            }
            let digits = j;
            while b.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
            if j == digits {
                return None;
            }
        }
        self.i = j;
        // ASCII by construction.
        Some((self.text.get(start..j)?, integer))
    }

    /// A number as serde_json gives it to an `f64`: integers through `u64`/`i64`, others
    /// (and `-0`, which serde_json reads as the float -0.0) correctly rounded; out of range
    /// declines.
    fn f64(&mut self) -> Option<f64> {
        let (text, integer) = self.number_token()?;
        if integer {
            if let Ok(v) = text.parse::<u64>() {
                return Some(v as f64);
            }
            if let Ok(v) = text.parse::<i64>().map(|v| v as f64)
                && v != 0.0
            {
                return Some(v);
            }
        }
        text.parse::<f64>().ok().filter(|v| v.is_finite())
    }

    /// An integer that fits `i64`; serde_json refuses `-0` there (it is a float to it).
    fn i64(&mut self) -> Option<i64> {
        let (text, integer) = self.number_token()?;
        if !integer || text == "-0" {
            return None;
        }
        text.parse().ok()
    }

    /// An array of numbers, appended to `numbers`; returns where it landed.
    fn f64_array(&mut self, numbers: &mut Vec<f64>) -> Option<Range<usize>> {
        if !self.eat(b'[') {
            return None;
        }
        let start = numbers.len();
        if self.eat(b']') {
            return Some(start..start);
        }
        loop {
            numbers.push(self.f64()?);
            if self.eat(b',') {
                continue;
            }
            return self.eat(b']').then_some(start..numbers.len());
        }
    }

    fn f64_arrays(&mut self, numbers: &mut Vec<f64>) -> Option<Vec<(Cow<'a, str>, Range<usize>)>> {
        let mut out = Vec::new();
        self.object(|s, key| {
            let values = s.f64_array(numbers)?;
            out.push((key, values));
            Some(())
        })?;
        Some(out)
    }

    fn feature(&mut self) -> Option<Value<'a>> {
        self.ws();
        Some(match self.peek()? {
            b'"' => Value::Text(self.string()?),
            b'n' if self.literal(b"null") => Value::Missing,
            b't' if self.literal(b"true") => Value::Text(Cow::Borrowed("true")),
            b'f' if self.literal(b"false") => Value::Text(Cow::Borrowed("false")),
            _ => match FeatureValue::from(self.f64()?) {
                FeatureValue::Number(x) => Value::Number(x),
                _ => Value::Missing,
            },
        })
    }

    /// Skips any value without building it.
    fn skip(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_SKIP_DEPTH {
            return None;
        }
        self.ws();
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(|s, _| s.skip(depth + 1)),
            b'[' => {
                self.i += 1;
                if self.eat(b']') {
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    if self.eat(b',') {
                        continue;
                    }
                    return self.eat(b']').then_some(());
                }
            }
            b't' => self.literal(b"true").then_some(()),
            b'f' => self.literal(b"false").then_some(()),
            b'n' => self.literal(b"null").then_some(()),
            _ => self.number_token().map(drop),
        }
    }

    /// `Option<T>` as serde reads it: `null` is `None`.
    fn optional<T>(&mut self, value: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.null() {
            Some(None)
        } else {
            value(self).map(Some)
        }
    }

    fn prediction(&mut self, row: &mut Row<'a>) -> Option<()> {
        let mut seen = 0u8;
        self.object(|s, key| {
            let bit = match key.as_ref() {
                "class_index" => {
                    row.class_index = s.optional(Self::i64)?;
                    1
                }
                "label" => {
                    row.label = s.optional(Self::string)?;
                    2
                }
                "probabilities" => {
                    row.probabilities = s.optional(|s| s.f64_array(&mut row.numbers))?;
                    4
                }
                "outputs" => {
                    row.outputs = s.optional(|s| s.f64_arrays(&mut row.numbers))?;
                    8
                }
                _ => return s.skip(0),
            };
            // serde refuses a field given twice.
            ((seen & bit) == 0).then(|| seen |= bit)
        })
    }

    fn row(&mut self, row: &mut Row<'a>) -> Option<()> {
        let mut seen = 0u8;
        // Each field at most once (serde refuses a field given twice).
        let mut once = |bit: u8| ((seen & bit) == 0).then(|| seen |= bit);
        self.object(|s, key| {
            match key.as_ref() {
                "ts_ms" => {
                    once(1)?;
                    row.ts_ms = s.i64()?;
                }
                "model" => {
                    once(2)?;
                    row.model = s.string()?;
                }
                "version" => {
                    once(4)?;
                    row.version = s.string()?;
                }
                "request_id" => {
                    once(8)?;
                    row.request_id = s.string()?;
                }
                "protocol" => {
                    once(16)?;
                    row.protocol = s.string()?;
                }
                "features" => {
                    once(32)?;
                    s.object(|s, name| {
                        let value = s.feature()?;
                        row.features.push((name, value));
                        Some(())
                    })?;
                }
                "raw_inputs" => {
                    once(64)?;
                    row.raw_inputs = s.optional(|s| s.f64_arrays(&mut row.numbers))?;
                }
                "prediction" => {
                    once(128)?;
                    s.prediction(row)?;
                }
                _ => s.skip(0)?,
            }
            Some(())
        })?;
        // ts_ms, model, version, request_id and protocol are required.
        (seen & 31 == 31).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(line: &str) -> (Option<PredictionRecord>, Option<PredictionRecord>) {
        (
            parse_record(line.as_bytes()),
            serde_json::from_str(line).ok(),
        )
    }

    /// The scanner either agrees with serde_json or declines.
    fn agrees(line: &str) {
        let (fast, slow) = both(line);
        if let Some(fast) = fast {
            assert_eq!(Some(fast), slow, "{line}");
        }
    }

    #[test]
    fn reads_what_the_logger_writes() {
        let mut r = PredictionRecord::now("iris", "3", "r-1", "rest_v2").with_features(
            &["a".into(), "b".into(), "c".into()],
            &[1.5, f64::NAN, -0.25],
        );
        r.features
            .insert("t".into(), FeatureValue::Text("spam".into()));
        r.raw_inputs = Some(BTreeMap::from([("x".into(), vec![1.0, 2.5e-300])]));
        r.prediction = Prediction {
            class_index: Some(2),
            label: Some("virginica".into()),
            probabilities: Some(vec![0.1, 0.2, 0.7]),
            outputs: Some(BTreeMap::from([("y".into(), vec![3.0])])),
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(parse_record(line.as_bytes()), Some(r));
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let line = r#"{"ts_ms":1,"model":"m\"1\\","version":"\u00e9\ud83d\ude00","request_id":"a\/b\n\t","protocol":"p","features":{"k\u0041":"x\u0000y"}}"#;
        let r = parse_record(line.as_bytes()).expect("the fast path reads escapes");
        assert_eq!(r.model, "m\"1\\");
        assert_eq!(r.version, "é😀");
        assert_eq!(r.request_id, "a/b\n\t");
        assert_eq!(r.features["kA"], FeatureValue::Text("x\0y".into()));
        agrees(line);
    }

    #[test]
    fn missing_optional_fields_take_their_defaults() {
        let line = r#"{"ts_ms":-5,"model":"m","version":"","request_id":"r","protocol":"p"}"#;
        let (fast, slow) = both(line);
        assert!(fast.is_some());
        assert_eq!(fast, slow);
        let line = r#" { "ts_ms" : 7 , "model":"m","version":"1","request_id":"r","protocol":"p","raw_inputs":null,"prediction":{"class_index":null,"label":null,"extra":[1,{"a":[]}]},"other":{"x":[true,false,null,"s",1e5]} } "#;
        let (fast, slow) = both(line);
        assert!(fast.is_some());
        assert_eq!(fast, slow);
    }

    #[test]
    fn numbers_read_as_serde_json_reads_them() {
        for n in [
            "0",
            "-0",
            "1",
            "-1",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "0.1",
            "1e-7",
            "1E+300",
            "2.2250738585072014e-308",
            "5e-324",
            "1.7976931348623157e308",
            "123456789.123456789123456789",
        ] {
            let line = format!(
                r#"{{"ts_ms":1,"model":"m","version":"1","request_id":"r","protocol":"p","features":{{"x":{n}}},"prediction":{{"probabilities":[{n}]}}}}"#
            );
            let (fast, slow) = both(&line);
            assert!(fast.is_some(), "{n}");
            let (fast, slow) = (fast.unwrap(), slow.unwrap());
            assert_eq!(fast, slow, "{n}");
            let bits = |r: &PredictionRecord| match r.features["x"] {
                FeatureValue::Number(v) => v.to_bits(),
                _ => panic!("{n} is a number"),
            };
            assert_eq!(bits(&fast), bits(&slow), "{n}: to the bit");
        }
    }

    #[test]
    fn what_it_is_not_sure_of_is_left_to_serde_json() {
        for line in [
            // duplicate, missing, mistyped and out-of-range fields; trailing characters
            r#"{"ts_ms":1,"ts_ms":2,"model":"m","version":"1","request_id":"r","protocol":"p"}"#,
            r#"{"model":"m","version":"1","request_id":"r","protocol":"p"}"#,
            r#"{"ts_ms":1.5,"model":"m","version":"1","request_id":"r","protocol":"p"}"#,
            r#"{"ts_ms":1,"model":"m","version":"1","request_id":"r","protocol":"p","features":{"a":[1]}}"#,
            r#"{"ts_ms":1,"model":"m","version":"1","request_id":"r","protocol":"p","features":{"a":1e400}}"#,
            r#"{"ts_ms":1,"model":"m","version":"1","request_id":"r","protocol":"p","features":null}"#,
            r#"{"ts_ms":1,"model":"m","version":"1","request_id":"r","protocol":"p","prediction":null}"#,
            r#"{"ts_ms":1,"model":"m","version":"1","request_id":"r","protocol":"p"} x"#,
            r#"{"ts_ms":1,"model":"\ud800","version":"1","request_id":"r","protocol":"p"}"#,
            "{\"ts_ms\":1,\"model\":\"a\tb\",\"version\":\"1\",\"request_id\":\"r\",\"protocol\":\"p\"}",
            r#"{"ts_ms":1,"model":"m","version":"1","request_id":"r","protocol":"p","x":01}"#,
        ] {
            assert_eq!(parse_record(line.as_bytes()), None, "{line}");
        }
    }

    #[test]
    fn invalid_utf8_is_declined() {
        let mut line =
            br#"{"ts_ms":1,"model":"m","version":"1","request_id":"r","protocol":"p"}"#.to_vec();
        line[20] = 0xff;
        assert_eq!(parse_record(&line), None);
        assert!(serde_json::from_slice::<PredictionRecord>(&line).is_err());
    }
}
