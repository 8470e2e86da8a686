//! A GGUF (version 3) writer for tests: typed metadata, F32 tensors, 32-byte aligned data —
//! enough to build a tiny randomly-initialised model that llama.cpp loads. The format:
//! <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>.

use std::path::Path;

/// llama.cpp's default `general.alignment`: tensor data starts and is padded to it.
const ALIGNMENT: usize = 32;

/// `GGML_TYPE_F32`.
const TENSOR_F32: u32 = 0;

/// A metadata value (the GGUF types the tiny models use).
#[derive(Debug, Clone)]
pub enum Value {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    Strs(Vec<String>),
    I32s(Vec<i32>),
    F32s(Vec<f32>),
}

/// `gguf_type` values (ggml's gguf.h).
const TYPE_U32: u32 = 4;
const TYPE_I32: u32 = 5;
const TYPE_F32: u32 = 6;
const TYPE_BOOL: u32 = 7;
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;

impl Value {
    fn type_id(&self) -> u32 {
        match self {
            Value::U32(_) => TYPE_U32,
            Value::F32(_) => TYPE_F32,
            Value::Bool(_) => TYPE_BOOL,
            Value::Str(_) => TYPE_STRING,
            Value::Strs(_) | Value::I32s(_) | Value::F32s(_) => TYPE_ARRAY,
        }
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::U32(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::F32(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_string())
    }
}

/// A tensor: its shape as llama.cpp names it (`ne[0]` first, the row length) and its values.
pub struct Tensor {
    pub name: String,
    pub shape: Vec<u64>,
    pub values: Vec<f32>,
}

/// A GGUF file being put together.
#[derive(Default)]
pub struct Gguf {
    metadata: Vec<(String, Value)>,
    tensors: Vec<Tensor>,
}

impl Gguf {
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Value>) -> &mut Self {
        let key = key.into();
        let value = value.into();
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.metadata.push((key, value)),
        }
        self
    }

    pub fn add_tensor(&mut self, name: impl Into<String>, shape: &[u64], values: Vec<f32>) {
        let name = name.into();
        assert_eq!(
            values.len() as u64,
            shape.iter().product::<u64>(),
            "{name}: values do not fill the shape"
        );
        self.tensors.push(Tensor {
            name,
            shape: shape.to_vec(),
            values,
        });
    }

    /// Leaves `name` out of the file (to make one llama.cpp refuses).
    pub fn remove_tensor(&mut self, name: &str) -> &mut Self {
        self.tensors.retain(|t| t.name != name);
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_str(&mut out, key);
            out.extend(value.type_id().to_le_bytes());
            put_value(&mut out, value);
        }
        // Offsets are relative to the start of the data section; each tensor starts aligned.
        let mut offset = 0usize;
        for tensor in &self.tensors {
            put_str(&mut out, &tensor.name);
            out.extend((tensor.shape.len() as u32).to_le_bytes());
            for &dim in &tensor.shape {
                out.extend(dim.to_le_bytes());
            }
            out.extend(TENSOR_F32.to_le_bytes());
            out.extend((offset as u64).to_le_bytes());
            offset += padded(tensor.values.len() * 4);
        }
        out.resize(padded(out.len()), 0);
        for tensor in &self.tensors {
            for v in &tensor.values {
                out.extend(v.to_le_bytes());
            }
            out.resize(padded(out.len()), 0);
        }
        out
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.to_bytes())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

fn padded(len: usize) -> usize {
    len.div_ceil(ALIGNMENT) * ALIGNMENT
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    let array = |out: &mut Vec<u8>, element_type: u32, len: usize| {
        out.extend(element_type.to_le_bytes());
        out.extend((len as u64).to_le_bytes());
    };
    match value {
        Value::U32(v) => out.extend(v.to_le_bytes()),
        Value::F32(v) => out.extend(v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::Str(s) => put_str(out, s),
        Value::Strs(items) => {
            array(out, TYPE_STRING, items.len());
            items.iter().for_each(|s| put_str(out, s));
        }
        Value::I32s(items) => {
            array(out, TYPE_I32, items.len());
            items.iter().for_each(|v| out.extend(v.to_le_bytes()));
        }
        Value::F32s(items) => {
            array(out, TYPE_F32, items.len());
            items.iter().for_each(|v| out.extend(v.to_le_bytes()));
        }
    }
}

/// xorshift64*: small seeded pseudo-random weights, the same on every machine.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }

    /// Uniform in `[-scale, scale)`.
    pub fn uniform(&mut self, scale: f32) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40; // 24 random bits
        (bits as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }

    pub fn values(&mut self, n: u64, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(scale)).collect()
    }
}
