//! The ONNX Runtime backend. ONNX Runtime is loaded at run time from `ORT_DYLIB_PATH` (the
//! library the PyPI `onnxruntime` wheel ships), so the binary needs no download at build time.

use std::path::Path;
use std::sync::OnceLock;

use mooring_registry::Signature;
use ort::environment::Environment;
use ort::session::Session;
use ort::value::{DynValue, TensorElementType};

use super::Backend;
use crate::error::{Result, ServerError};
use crate::tensor::{ByteString, DataType, Tensor, TensorData};

/// Where `scripts/setup.sh run` (which `make run` calls) puts the library, relative to the
/// repository root.
const LOCAL_LIBRARY: &str = ".cache/onnxruntime/libonnxruntime.so";

/// ONNX Runtime allows one environment per process; every session shares it.
static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime once, failing with a message that says how to fix a missing library.
pub fn environment() -> Result<Environment> {
    ENVIRONMENT
        .get_or_init(|| {
            // `scripts/setup.sh run` puts the library in .cache/onnxruntime/; running the release binary
            // from the repository root then works without exporting anything.
            let fallback = Path::new(LOCAL_LIBRARY);
            let path = match std::env::var_os("ORT_DYLIB_PATH") {
                Some(path) => path,
                None if fallback.is_file() => fallback.as_os_str().to_owned(),
                None => {
                    return Err(format!(
                        "ORT_DYLIB_PATH is not set: it must name the ONNX Runtime library libonnxruntime.so \
                         (`scripts/setup.sh run` puts it in {LOCAL_LIBRARY}; the container image sets it)"
                    ));
                }
            };
            if !Path::new(&path).is_file() {
                return Err(format!(
                    "ORT_DYLIB_PATH={} does not name a file: run `scripts/setup.sh run` from the repository root \
                     (it fetches ONNX Runtime 1.31 into {LOCAL_LIBRARY}, where `cargo run` looks), \
                     or point ORT_DYLIB_PATH at your own libonnxruntime.so",
                    Path::new(&path).display()
                ));
            }
            ort::init_from(&path)
                .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", Path::new(&path).display()))?
                .with_name("mooring")
                .build()
                .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))
        })
        .clone()
        .map_err(ServerError::Unavailable)
}

/// One ONNX Runtime session, single-threaded: parallelism comes from worker threads, so one
/// session per worker with one intra-op and one inter-op thread avoids oversubscription.
pub struct OrtBackend {
    session: Session,
    outputs: Vec<String>,
}

impl OrtBackend {
    pub fn load(model: &Path, signature: &Signature) -> Result<Self> {
        let env = environment()?;
        let fail =
            |e: String| ServerError::Unavailable(format!("cannot load {}: {e}", model.display()));
        let session = Session::builder(&env)
            .map_err(|e| fail(e.to_string()))?
            .with_intra_threads(1)
            .map_err(|e| fail(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| fail(e.to_string()))?
            .commit_from_file(model)
            .map_err(|e| fail(e.to_string()))?;
        // The signature is what clients are told; it must describe this very graph.
        for spec in &signature.inputs {
            if !session.inputs().iter().any(|i| i.name() == spec.name) {
                return Err(fail(format!(
                    "the signature's input {:?} is not an input of the ONNX graph",
                    spec.name
                )));
            }
        }
        for spec in &signature.outputs {
            if !session.outputs().iter().any(|o| o.name() == spec.name) {
                return Err(fail(format!(
                    "the signature's output {:?} is not an output of the ONNX graph",
                    spec.name
                )));
            }
        }
        let outputs = signature.outputs.iter().map(|o| o.name.clone()).collect();
        Ok(Self { session, outputs })
    }
}

fn to_value(t: Tensor) -> ort::Result<DynValue> {
    use ort::value::Tensor as T;
    let shape = t.shape;
    Ok(match t.data {
        TensorData::Bool(v) => T::from_array((shape, v))?.into_dyn(),
        TensorData::U8(v) => T::from_array((shape, v))?.into_dyn(),
        TensorData::U16(v) => T::from_array((shape, v))?.into_dyn(),
        TensorData::U32(v) => T::from_array((shape, v))?.into_dyn(),
        TensorData::U64(v) => T::from_array((shape, v))?.into_dyn(),
        TensorData::I8(v) => T::from_array((shape, v))?.into_dyn(),
        TensorData::I16(v) => T::from_array((shape, v))?.into_dyn(),
        TensorData::I32(v) => T::from_array((shape, v))?.into_dyn(),
        TensorData::I64(v) => T::from_array((shape, v))?.into_dyn(),
        TensorData::F32(v) => T::from_array((shape, v))?.into_dyn(),
        TensorData::F64(v) => T::from_array((shape, v))?.into_dyn(),
        // Checked to be UTF-8 without NUL by validation, so nothing is replaced here.
        TensorData::Bytes(v) => {
            let text: Vec<String> = v
                .iter()
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                .collect();
            T::<String>::from_string_array((shape, text.as_slice()))?.into_dyn()
        }
    })
}

fn from_value(name: &str, value: &DynValue) -> Result<Tensor> {
    let unsupported = || {
        ServerError::Execution(format!(
            "output {name:?} is not a tensor of a supported datatype"
        ))
    };
    let ty = value.dtype().tensor_type().ok_or_else(unsupported)?;
    macro_rules! extract {
        ($t:ty, $variant:ident) => {{
            let (shape, data) = value
                .try_extract_tensor::<$t>()
                .map_err(|e| ServerError::Execution(e.to_string()))?;
            (shape.to_vec(), TensorData::$variant(data.to_vec()))
        }};
    }
    let (shape, data) = match ty {
        TensorElementType::Bool => extract!(bool, Bool),
        TensorElementType::Uint8 => extract!(u8, U8),
        TensorElementType::Uint16 => extract!(u16, U16),
        TensorElementType::Uint32 => extract!(u32, U32),
        TensorElementType::Uint64 => extract!(u64, U64),
        TensorElementType::Int8 => extract!(i8, I8),
        TensorElementType::Int16 => extract!(i16, I16),
        TensorElementType::Int32 => extract!(i32, I32),
        TensorElementType::Int64 => extract!(i64, I64),
        TensorElementType::Float32 => extract!(f32, F32),
        TensorElementType::Float64 => extract!(f64, F64),
        TensorElementType::String => {
            let (shape, data) = value
                .try_extract_strings()
                .map_err(|e| ServerError::Execution(e.to_string()))?;
            let data = data
                .into_iter()
                .map(|s| ByteString(s.into_bytes()))
                .collect();
            (shape.to_vec(), TensorData::Bytes(data))
        }
        _ => return Err(unsupported()),
    };
    debug_assert!(DataType::parse(data.datatype().as_str()).is_ok());
    Ok(Tensor {
        name: name.to_string(),
        shape,
        data,
    })
}

impl Backend for OrtBackend {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let mut values: Vec<(String, DynValue)> = Vec::with_capacity(inputs.len());
        for t in inputs {
            let name = t.name.clone();
            let value = to_value(t)
                .map_err(|e| ServerError::InvalidInput(format!("input {name:?}: {e}")))?;
            values.push((name, value));
        }
        let outputs = self
            .session
            .run(values)
            .map_err(|e| ServerError::Execution(e.to_string()))?;
        self.outputs
            .iter()
            .map(|name| {
                let value = outputs.get(name.as_str()).ok_or_else(|| {
                    ServerError::Execution(format!("the model produced no output {name:?}"))
                })?;
                from_value(name, value)
            })
            .collect()
    }
}
