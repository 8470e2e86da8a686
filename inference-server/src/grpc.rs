//! Open Inference Protocol over gRPC (`inference.GRPCInferenceService`), on the same
//! [`ServerState`] as REST. A request that sends `raw_input_contents` gets
//! `raw_output_contents` back (little-endian), as Triton does; typed contents otherwise.

use std::sync::Arc;

use mooring_proto::inference::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use mooring_proto::inference::model_infer_request::InferInputTensor;
use mooring_proto::inference::model_infer_response::InferOutputTensor;
use mooring_proto::inference::model_metadata_response::TensorMetadata;
use mooring_proto::inference::*;
use tonic::{Request, Response, Status};

use crate::error::ServerError;
use crate::state::{InferRequest, Protocol, ServerState};
use crate::tensor::{DataType, Tensor, TensorData};

pub struct InferenceService {
    state: Arc<ServerState>,
}

impl InferenceService {
    /// The tonic service, with message limits set from the state's body limit.
    pub fn server(state: Arc<ServerState>) -> GrpcInferenceServiceServer<Self> {
        let limit = state.max_body_bytes;
        GrpcInferenceServiceServer::new(Self { state }).max_decoding_message_size(limit).max_encoding_message_size(usize::MAX)
    }

    pub fn new(state: Arc<ServerState>) -> Self {
        Self { state }
    }
}

fn invalid(message: String) -> ServerError {
    ServerError::InvalidInput(message)
}

/// Typed `contents` → a buffer, checking that values fit narrower types.
fn from_contents(datatype: DataType, c: InferTensorContents, field: &str) -> Result<TensorData, ServerError> {
    macro_rules! narrow {
        ($variant:ident, $t:ty, $src:expr) => {
            TensorData::$variant(
                $src.into_iter()
                    .enumerate()
                    .map(|(i, v)| <$t>::try_from(v).map_err(|_| invalid(format!("{field}: element {i} ({v}) does not fit {}", datatype.as_str()))))
                    .collect::<Result<_, _>>()?,
            )
        };
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(c.bool_contents),
        DataType::U8 => narrow!(U8, u8, c.uint_contents),
        DataType::U16 => narrow!(U16, u16, c.uint_contents),
        DataType::U32 => TensorData::U32(c.uint_contents),
        DataType::U64 => TensorData::U64(c.uint64_contents),
        DataType::I8 => narrow!(I8, i8, c.int_contents),
        DataType::I16 => narrow!(I16, i16, c.int_contents),
        DataType::I32 => TensorData::I32(c.int_contents),
        DataType::I64 => TensorData::I64(c.int64_contents),
        DataType::F32 => TensorData::F32(c.fp32_contents),
        DataType::F64 => TensorData::F64(c.fp64_contents),
    })
}

fn to_contents(data: &TensorData) -> InferTensorContents {
    let mut c = InferTensorContents::default();
    match data {
        TensorData::Bool(v) => c.bool_contents = v.clone(),
        TensorData::U8(v) => c.uint_contents = v.iter().map(|&x| x as u32).collect(),
        TensorData::U16(v) => c.uint_contents = v.iter().map(|&x| x as u32).collect(),
        TensorData::U32(v) => c.uint_contents = v.clone(),
        TensorData::U64(v) => c.uint64_contents = v.clone(),
        TensorData::I8(v) => c.int_contents = v.iter().map(|&x| x as i32).collect(),
        TensorData::I16(v) => c.int_contents = v.iter().map(|&x| x as i32).collect(),
        TensorData::I32(v) => c.int_contents = v.clone(),
        TensorData::I64(v) => c.int64_contents = v.clone(),
        TensorData::F32(v) => c.fp32_contents = v.clone(),
        TensorData::F64(v) => c.fp64_contents = v.clone(),
    }
    c
}

/// Decodes a request's inputs; returns them and whether they came raw.
pub fn decode_inputs(inputs: Vec<InferInputTensor>, raw: Vec<Vec<u8>>) -> Result<(Vec<Tensor>, bool), ServerError> {
    let is_raw = !raw.is_empty();
    if is_raw && raw.len() != inputs.len() {
        return Err(invalid(format!("raw_input_contents has {} entries for {} inputs; send one per input", raw.len(), inputs.len())));
    }
    let mut raw = raw.into_iter();
    let mut tensors = Vec::with_capacity(inputs.len());
    for input in inputs {
        let field = format!("input {:?}", input.name);
        let datatype = DataType::parse(&input.datatype).map_err(|e| invalid(format!("{field}: {e}")))?;
        let data = match raw.next() {
            Some(bytes) => {
                if input.contents.is_some() {
                    return Err(invalid(format!("{field} has both contents and raw_input_contents; send one")));
                }
                TensorData::from_le_bytes(datatype, &bytes, &format!("{field} (raw_input_contents)"))?
            }
            None => from_contents(datatype, input.contents.unwrap_or_default(), &field)?,
        };
        tensors.push(Tensor { name: input.name, shape: input.shape, data });
    }
    Ok((tensors, is_raw))
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(&self, _: Request<ServerLiveRequest>) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(&self, _: Request<ServerReadyRequest>) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse { ready: self.state.is_ready() }))
    }

    async fn model_ready(&self, request: Request<ModelReadyRequest>) -> Result<Response<ModelReadyResponse>, Status> {
        let r = request.into_inner();
        self.state.model(&r.name, Some(&r.version))?;
        Ok(Response::new(ModelReadyResponse { ready: self.state.is_ready() }))
    }

    async fn server_metadata(&self, _: Request<ServerMetadataRequest>) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "mooring".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: vec![],
        }))
    }

    async fn model_metadata(&self, request: Request<ModelMetadataRequest>) -> Result<Response<ModelMetadataResponse>, Status> {
        let r = request.into_inner();
        let m = self.state.model(&r.name, Some(&r.version))?;
        let tensors = |specs: &[mooring_registry::TensorSpec]| {
            specs
                .iter()
                .map(|t| TensorMetadata { name: t.name.clone(), datatype: t.datatype.clone(), shape: t.shape.clone() })
                .collect()
        };
        Ok(Response::new(ModelMetadataResponse {
            name: m.name.clone(),
            versions: vec![m.version.clone()],
            platform: m.platform.into(),
            inputs: tensors(&m.signature.inputs),
            outputs: tensors(&m.signature.outputs),
        }))
    }

    async fn model_infer(&self, request: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, Status> {
        let r = request.into_inner();
        let (inputs, raw) = decode_inputs(r.inputs, r.raw_input_contents)?;
        let request = InferRequest {
            model: r.model_name,
            version: Some(r.model_version),
            id: Some(r.id),
            inputs,
            outputs: r.outputs.into_iter().map(|o| o.name).collect(),
        };
        let response = self.state.infer(request, Protocol::Grpc).await?;
        let mut raw_output_contents = Vec::new();
        let outputs = response
            .outputs
            .iter()
            .map(|t| {
                let contents = if raw {
                    raw_output_contents.push(t.data.to_le_bytes());
                    None
                } else {
                    Some(to_contents(&t.data))
                };
                InferOutputTensor {
                    name: t.name.clone(),
                    datatype: t.datatype().as_str().into(),
                    shape: t.shape.clone(),
                    parameters: Default::default(),
                    contents,
                }
            })
            .collect();
        Ok(Response::new(ModelInferResponse {
            model_name: response.model_name,
            model_version: response.model_version,
            id: response.id,
            parameters: Default::default(),
            outputs,
            raw_output_contents,
        }))
    }
}
