//! Named tensors as the server passes them around: an Open Inference Protocol datatype, a
//! shape and a typed buffer; with conversions from/to V2 JSON data and little-endian raw
//! bytes, and the row slicing/concatenation dynamic batching needs.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum TensorError {
    #[error("datatype {0:?} is not supported (supported: {SUPPORTED})")]
    UnsupportedDatatype(String),
    #[error("{field}: element {index} is {found}, expected {expected}")]
    BadElement {
        field: String,
        index: usize,
        found: String,
        expected: &'static str,
    },
    #[error(
        "{field}: BYTES raw data must be elements of a 4-byte little-endian length and that many bytes; element {index} {problem}"
    )]
    RawBytes {
        field: String,
        index: usize,
        problem: String,
    },
    #[error("{field}: element {index} is not valid UTF-8 text (the model takes strings)")]
    NotText { field: String, index: usize },
    #[error("{field}: {len} raw bytes is not a whole number of {size}-byte {datatype} values")]
    RawLength {
        field: String,
        len: usize,
        size: usize,
        datatype: &'static str,
    },
}

const SUPPORTED: &str =
    "BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP32, FP64, BYTES";

/// An element type of the Open Inference Protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F32,
    F64,
    /// Byte strings (text for models that take strings).
    Bytes,
}

impl DataType {
    pub fn parse(s: &str) -> Result<Self, TensorError> {
        Ok(match s {
            "BOOL" => Self::Bool,
            "UINT8" => Self::U8,
            "UINT16" => Self::U16,
            "UINT32" => Self::U32,
            "UINT64" => Self::U64,
            "INT8" => Self::I8,
            "INT16" => Self::I16,
            "INT32" => Self::I32,
            "INT64" => Self::I64,
            "FP32" => Self::F32,
            "FP64" => Self::F64,
            "BYTES" => Self::Bytes,
            other => return Err(TensorError::UnsupportedDatatype(other.to_string())),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::U8 => "UINT8",
            Self::U16 => "UINT16",
            Self::U32 => "UINT32",
            Self::U64 => "UINT64",
            Self::I8 => "INT8",
            Self::I16 => "INT16",
            Self::I32 => "INT32",
            Self::I64 => "INT64",
            Self::F32 => "FP32",
            Self::F64 => "FP64",
            Self::Bytes => "BYTES",
        }
    }

    /// Bytes per element in the raw (little-endian) encoding.
    /// Bytes per element in raw data; `None` for BYTES, whose elements are length-prefixed.
    pub fn byte_size(self) -> Option<usize> {
        match self {
            Self::Bool | Self::U8 | Self::I8 => Some(1),
            Self::U16 | Self::I16 => Some(2),
            Self::U32 | Self::I32 | Self::F32 => Some(4),
            Self::U64 | Self::I64 | Self::F64 => Some(8),
            Self::Bytes => None,
        }
    }
}

/// One element of a BYTES tensor. Serialised as a JSON string (V2 JSON carries BYTES as
/// strings); bytes that are not UTF-8 are shown with replacement characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ByteString(pub Vec<u8>);

impl ByteString {
    /// The element as text, when it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl From<&str> for ByteString {
    fn from(s: &str) -> Self {
        ByteString(s.as_bytes().to_vec())
    }
}

impl Serialize for ByteString {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&String::from_utf8_lossy(&self.0))
    }
}

/// A flat, row-major typed buffer.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TensorData {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<ByteString>),
}

/// Applies `$body` to the vector inside any variant, binding it as `$v`.
macro_rules! each {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::U8($v) => $body,
            TensorData::U16($v) => $body,
            TensorData::U32($v) => $body,
            TensorData::U64($v) => $body,
            TensorData::I8($v) => $body,
            TensorData::I16($v) => $body,
            TensorData::I32($v) => $body,
            TensorData::I64($v) => $body,
            TensorData::F32($v) => $body,
            TensorData::F64($v) => $body,
            TensorData::Bytes($v) => $body,
        }
    };
}

/// Same as `each!` but rebuilds the same variant from `$body`'s vector.
macro_rules! map_same {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => TensorData::Bool($body),
            TensorData::U8($v) => TensorData::U8($body),
            TensorData::U16($v) => TensorData::U16($body),
            TensorData::U32($v) => TensorData::U32($body),
            TensorData::U64($v) => TensorData::U64($body),
            TensorData::I8($v) => TensorData::I8($body),
            TensorData::I16($v) => TensorData::I16($body),
            TensorData::I32($v) => TensorData::I32($body),
            TensorData::I64($v) => TensorData::I64($body),
            TensorData::F32($v) => TensorData::F32($body),
            TensorData::F64($v) => TensorData::F64($body),
            TensorData::Bytes($v) => TensorData::Bytes($body),
        }
    };
}

impl TensorData {
    pub fn len(&self) -> usize {
        each!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn datatype(&self) -> DataType {
        match self {
            Self::Bool(_) => DataType::Bool,
            Self::U8(_) => DataType::U8,
            Self::U16(_) => DataType::U16,
            Self::U32(_) => DataType::U32,
            Self::U64(_) => DataType::U64,
            Self::I8(_) => DataType::I8,
            Self::I16(_) => DataType::I16,
            Self::I32(_) => DataType::I32,
            Self::I64(_) => DataType::I64,
            Self::F32(_) => DataType::F32,
            Self::F64(_) => DataType::F64,
            Self::Bytes(_) => DataType::Bytes,
        }
    }

    /// Index of the first NaN or infinite element, for float tensors.
    pub fn first_non_finite(&self) -> Option<usize> {
        match self {
            Self::F32(v) => v.iter().position(|x| !x.is_finite()),
            Self::F64(v) => v.iter().position(|x| !x.is_finite()),
            _ => None,
        }
    }

    /// Every element as `f64` (booleans as 0/1): for the prediction log, not for inference.
    pub fn to_f64(&self) -> Vec<f64> {
        fn widen<T: Copy + Into<f64>>(v: &[T]) -> Vec<f64> {
            v.iter().map(|&x| x.into()).collect()
        }
        match self {
            Self::Bool(v) => v.iter().map(|&b| f64::from(u8::from(b))).collect(),
            Self::U8(v) => widen(v),
            Self::U16(v) => widen(v),
            Self::U32(v) => widen(v),
            Self::I8(v) => widen(v),
            Self::I16(v) => widen(v),
            Self::I32(v) => widen(v),
            // The shortest decimal that reads back as the same f32, so the log says 5.1 where
            // the client sent 5.1 (not 5.099999904632568) and stays a third of the size.
            Self::F32(v) => {
                let mut buf = ryu::Buffer::new();
                v.iter()
                    .map(|&x| match x.is_finite() {
                        true => buf.format_finite(x).parse().unwrap_or(f64::from(x)),
                        false => f64::from(x),
                    })
                    .collect()
            }
            Self::F64(v) => v.clone(),
            // 64-bit integers beyond 2^53 lose precision: acceptable for drift statistics.
            Self::U64(v) => v.iter().map(|&x| x as f64).collect(),
            Self::I64(v) => v.iter().map(|&x| x as f64).collect(),
            // Text has no number: the prediction log records it as text (see `texts`).
            Self::Bytes(v) => vec![f64::NAN; v.len()],
        }
    }

    /// The index of the first element that is not UTF-8 text (BYTES only).
    pub fn first_non_text(&self) -> Option<usize> {
        match self {
            Self::Bytes(v) => v.iter().position(|b| b.as_str().is_none()),
            _ => None,
        }
    }

    /// Elements `[start, end)`.
    pub fn slice(&self, start: usize, end: usize) -> TensorData {
        map_same!(self, v => v[start..end].to_vec())
    }

    /// Concatenates buffers of one datatype (the caller checked they agree).
    pub fn concat(parts: &[&TensorData]) -> TensorData {
        let mut out = parts[0].clone();
        for part in &parts[1..] {
            match (&mut out, part) {
                (TensorData::Bool(a), TensorData::Bool(b)) => a.extend_from_slice(b),
                (TensorData::U8(a), TensorData::U8(b)) => a.extend_from_slice(b),
                (TensorData::U16(a), TensorData::U16(b)) => a.extend_from_slice(b),
                (TensorData::U32(a), TensorData::U32(b)) => a.extend_from_slice(b),
                (TensorData::U64(a), TensorData::U64(b)) => a.extend_from_slice(b),
                (TensorData::I8(a), TensorData::I8(b)) => a.extend_from_slice(b),
                (TensorData::I16(a), TensorData::I16(b)) => a.extend_from_slice(b),
                (TensorData::I32(a), TensorData::I32(b)) => a.extend_from_slice(b),
                (TensorData::I64(a), TensorData::I64(b)) => a.extend_from_slice(b),
                (TensorData::F32(a), TensorData::F32(b)) => a.extend_from_slice(b),
                (TensorData::F64(a), TensorData::F64(b)) => a.extend_from_slice(b),
                (TensorData::Bytes(a), TensorData::Bytes(b)) => a.extend_from_slice(b),
                (a, b) => unreachable!("concat of {:?} and {:?}", a.datatype(), b.datatype()),
            }
        }
        out
    }

    /// Reads V2 JSON tensor data: a flat array or nested arrays (flattened row-major).
    pub fn from_json(datatype: DataType, data: &Value, field: &str) -> Result<Self, TensorError> {
        let mut flat = Vec::new();
        flatten(data, &mut flat);
        let bad = |index: usize, found: &Value, expected: &'static str| TensorError::BadElement {
            field: field.to_string(),
            index,
            found: describe(found),
            expected,
        };
        macro_rules! ints {
            ($variant:ident, $t:ty, $get:ident, $expected:literal) => {
                TensorData::$variant(
                    flat.iter()
                        .enumerate()
                        .map(|(i, x)| {
                            x.$get()
                                .and_then(|n| <$t>::try_from(n).ok())
                                .ok_or_else(|| bad(i, x, $expected))
                        })
                        .collect::<Result<_, _>>()?,
                )
            };
        }
        Ok(match datatype {
            DataType::Bool => TensorData::Bool(
                flat.iter()
                    .enumerate()
                    .map(|(i, x)| x.as_bool().ok_or_else(|| bad(i, x, "a boolean")))
                    .collect::<Result<_, _>>()?,
            ),
            DataType::U8 => ints!(U8, u8, as_u64, "an integer in 0..=255"),
            DataType::U16 => ints!(U16, u16, as_u64, "an integer in 0..=65535"),
            DataType::U32 => ints!(U32, u32, as_u64, "a 32-bit unsigned integer"),
            DataType::U64 => ints!(U64, u64, as_u64, "a 64-bit unsigned integer"),
            DataType::I8 => ints!(I8, i8, as_i64, "an integer in -128..=127"),
            DataType::I16 => ints!(I16, i16, as_i64, "a 16-bit integer"),
            DataType::I32 => ints!(I32, i32, as_i64, "a 32-bit integer"),
            DataType::I64 => ints!(I64, i64, as_i64, "a 64-bit integer"),
            DataType::F32 => TensorData::F32(
                flat.iter()
                    .enumerate()
                    .map(|(i, x)| {
                        x.as_f64()
                            .map(|f| f as f32)
                            .ok_or_else(|| bad(i, x, "a number"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            DataType::F64 => TensorData::F64(
                flat.iter()
                    .enumerate()
                    .map(|(i, x)| x.as_f64().ok_or_else(|| bad(i, x, "a number")))
                    .collect::<Result<_, _>>()?,
            ),
            DataType::Bytes => TensorData::Bytes(
                flat.iter()
                    .enumerate()
                    .map(|(i, x)| {
                        x.as_str()
                            .map(ByteString::from)
                            .ok_or_else(|| bad(i, x, "a string"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// Reads little-endian raw bytes (gRPC `raw_input_contents`, the HTTP binary extension).
    pub fn from_le_bytes(
        datatype: DataType,
        bytes: &[u8],
        field: &str,
    ) -> Result<Self, TensorError> {
        let Some(size) = datatype.byte_size() else {
            return Self::bytes_from_raw(bytes, field);
        };
        if !bytes.len().is_multiple_of(size) {
            return Err(TensorError::RawLength {
                field: field.to_string(),
                len: bytes.len(),
                size,
                datatype: datatype.as_str(),
            });
        }
        macro_rules! le {
            ($variant:ident, $t:ty) => {
                TensorData::$variant(
                    bytes
                        .chunks_exact(size)
                        .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk size")))
                        .collect(),
                )
            };
        }
        Ok(match datatype {
            DataType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
            DataType::U8 => TensorData::U8(bytes.to_vec()),
            DataType::U16 => le!(U16, u16),
            DataType::U32 => le!(U32, u32),
            DataType::U64 => le!(U64, u64),
            DataType::I8 => le!(I8, i8),
            DataType::I16 => le!(I16, i16),
            DataType::I32 => le!(I32, i32),
            DataType::I64 => le!(I64, i64),
            DataType::F32 => le!(F32, f32),
            DataType::F64 => le!(F64, f64),
            DataType::Bytes => unreachable!("BYTES has no fixed size"),
        })
    }

    /// BYTES raw data: each element a 4-byte little-endian length, then that many bytes.
    fn bytes_from_raw(mut bytes: &[u8], field: &str) -> Result<Self, TensorError> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let bad = |problem: String| TensorError::RawBytes {
                field: field.to_string(),
                index: out.len(),
                problem,
            };
            let Some((len, rest)) = bytes.split_first_chunk::<4>() else {
                return Err(bad(format!(
                    "has {} bytes left, too few for its length",
                    bytes.len()
                )));
            };
            let len = u32::from_le_bytes(*len) as usize;
            if len > rest.len() {
                return Err(bad(format!(
                    "says {len} bytes but only {} remain",
                    rest.len()
                )));
            }
            let (element, rest) = rest.split_at(len);
            out.push(ByteString(element.to_vec()));
            bytes = rest;
        }
        Ok(TensorData::Bytes(out))
    }

    /// Little-endian raw bytes.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            TensorData::Bool(v) => v.iter().map(|&b| b as u8).collect(),
            TensorData::U8(v) => v.clone(),
            TensorData::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::U64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I8(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::Bytes(v) => {
                let mut out = Vec::with_capacity(v.iter().map(|b| b.0.len() + 4).sum());
                for b in v {
                    // An element cannot reach 4 GiB: bodies are limited far below.
                    out.extend_from_slice(&(b.0.len() as u32).to_le_bytes());
                    out.extend_from_slice(&b.0);
                }
                out
            }
        }
    }
}

fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        other => out.push(other),
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("the string {s:?}"),
        Value::Null => "null".into(),
        Value::Object(_) => "an object".into(),
        other => other.to_string(),
    }
}

/// A named tensor with its shape. The datatype is the buffer's.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: TensorData,
}

impl Tensor {
    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }

    /// Elements per row (the product of every dimension after the first).
    pub fn row_len(&self) -> usize {
        self.shape
            .iter()
            .skip(1)
            .map(|&d| d.max(0) as usize)
            .product()
    }

    /// The first dimension: the number of rows in a batch.
    pub fn rows(&self) -> usize {
        self.shape.first().map_or(1, |&d| d.max(0) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn f32_widens_to_the_decimal_the_client_sent() {
        let v = TensorData::F32(vec![5.1, 0.2, 1e-8, f32::MAX, f32::NAN, f32::INFINITY]).to_f64();
        assert_eq!(&v[..4], &[5.1, 0.2, 1e-8, 3.4028235e38]);
        assert!(v[4].is_nan());
        assert_eq!(v[5], f64::INFINITY);
        // Every value still reads back as the same f32.
        for x in [5.1f32, 0.2, 1e-8, f32::MAX, 16_777_217.0, f32::MIN_POSITIVE] {
            assert_eq!(TensorData::F32(vec![x]).to_f64()[0] as f32, x);
        }
        assert_eq!(TensorData::Bool(vec![true, false]).to_f64(), [1.0, 0.0]);
    }

    #[test]
    fn json_data_may_be_flat_or_nested() {
        let flat = TensorData::from_json(DataType::F32, &json!([1, 2.5, 3, 4]), "x").unwrap();
        let nested = TensorData::from_json(DataType::F32, &json!([[1, 2.5], [3, 4]]), "x").unwrap();
        assert_eq!(flat, TensorData::F32(vec![1.0, 2.5, 3.0, 4.0]));
        assert_eq!(flat, nested);
    }

    #[test]
    fn json_elements_of_the_wrong_kind_are_named() {
        let err =
            TensorData::from_json(DataType::F32, &json!([1, "two"]), "input 'x'").unwrap_err();
        assert_eq!(
            err.to_string(),
            "input 'x': element 1 is the string \"two\", expected a number"
        );
        let err = TensorData::from_json(DataType::U8, &json!([1, 256]), "y").unwrap_err();
        assert!(err.to_string().contains("element 1 is 256"), "{err}");
        let err = TensorData::from_json(DataType::I64, &json!([1.5]), "z").unwrap_err();
        assert!(
            err.to_string().contains("expected a 64-bit integer"),
            "{err}"
        );
    }

    #[test]
    fn raw_bytes_round_trip_little_endian() {
        let data = TensorData::F32(vec![1.0, -2.5]);
        let bytes = data.to_le_bytes();
        assert_eq!(&bytes[..4], &1.0f32.to_le_bytes());
        assert_eq!(
            TensorData::from_le_bytes(DataType::F32, &bytes, "x").unwrap(),
            data
        );
        let ints = TensorData::I64(vec![7, -1]);
        assert_eq!(
            TensorData::from_le_bytes(DataType::I64, &ints.to_le_bytes(), "x").unwrap(),
            ints
        );
        let err = TensorData::from_le_bytes(DataType::F32, &[0, 0, 0], "raw_input_contents[0]")
            .unwrap_err();
        assert!(err.to_string().contains("3 raw bytes"), "{err}");
    }

    #[test]
    fn unsupported_datatypes_are_refused_by_name() {
        let err = DataType::parse("FP16").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("datatype \"FP16\" is not supported"),
            "{err}"
        );
    }

    #[test]
    fn bytes_travel_as_strings_in_json_and_length_prefixed_in_raw_data() {
        let data = TensorData::Bytes(vec!["héllo 😀".into(), "".into(), ByteString(vec![0xff])]);
        assert_eq!(
            serde_json::to_value(&data).unwrap(),
            serde_json::json!(["héllo 😀", "", "\u{fffd}"])
        );
        let raw = data.to_le_bytes();
        assert_eq!(&raw[..4], &11u32.to_le_bytes());
        assert_eq!(&raw[15..19], &0u32.to_le_bytes());
        assert_eq!(
            TensorData::from_le_bytes(DataType::Bytes, &raw, "x").unwrap(),
            data
        );
        let back =
            TensorData::from_json(DataType::Bytes, &serde_json::json!([["a"], ["", "é"]]), "x");
        assert_eq!(
            back.unwrap(),
            TensorData::Bytes(vec!["a".into(), "".into(), "é".into()])
        );
    }

    #[test]
    fn cut_bytes_raw_data_names_the_element() {
        let mut raw = TensorData::Bytes(vec!["ab".into()]).to_le_bytes();
        raw.extend_from_slice(&9u32.to_le_bytes());
        raw.extend_from_slice(b"short");
        let err = TensorData::from_le_bytes(DataType::Bytes, &raw, "input \"text\"").unwrap_err();
        assert!(
            err.to_string()
                .contains("element 1 says 9 bytes but only 5 remain"),
            "{err}"
        );
        let err = TensorData::from_le_bytes(DataType::Bytes, &[1, 0], "x").unwrap_err();
        assert!(
            err.to_string().contains("element 0 has 2 bytes left"),
            "{err}"
        );
    }

    #[test]
    fn concat_and_slice_are_inverse() {
        let a = TensorData::I32(vec![1, 2]);
        let b = TensorData::I32(vec![3]);
        let all = TensorData::concat(&[&a, &b]);
        assert_eq!(all.slice(0, 2), a);
        assert_eq!(all.slice(2, 3), b);
    }
}
