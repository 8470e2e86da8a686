//! Open Inference Protocol over gRPC (`inference.GRPCInferenceService`), on the same
//! [`ServerState`] as REST. A request that sends `raw_input_contents` gets
//! `raw_output_contents` back (little-endian), as Triton does; typed contents otherwise.

use std::sync::Arc;

use mooring_proto::inference::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use mooring_proto::inference::model_infer_request::InferInputTensor;
use mooring_proto::inference::model_infer_response::InferOutputTensor;
use mooring_proto::inference::model_metadata_response::TensorMetadata;
use mooring_proto::inference::*;
use tonic::{Request, Response, Status};

use crate::error::ServerError;
use crate::infer::{InferRequest, Protocol, ServerState};
use crate::tensor::{ByteString, DataType, Tensor, TensorData};

pub struct InferenceService {
    state: Arc<ServerState>,
}

impl InferenceService {
    /// The tonic service, with message limits set from the state's body limit.
    pub fn server(state: Arc<ServerState>) -> GrpcInferenceServiceServer<Self> {
        let limit = state.max_body_bytes;
        GrpcInferenceServiceServer::new(Self { state })
            .max_decoding_message_size(limit)
            .max_encoding_message_size(usize::MAX)
    }

    pub fn new(state: Arc<ServerState>) -> Self {
        Self { state }
    }
}

fn invalid(message: String) -> ServerError {
    ServerError::InvalidInput(message)
}

/// Typed `contents` → a buffer, checking that values fit narrower types.
fn from_contents(
    datatype: DataType,
    c: InferTensorContents,
    field: &str,
) -> Result<TensorData, ServerError> {
    macro_rules! narrow {
        ($variant:ident, $t:ty, $src:expr) => {
            TensorData::$variant(
                $src.into_iter()
                    .enumerate()
                    .map(|(i, v)| {
                        <$t>::try_from(v).map_err(|_| {
                            invalid(format!(
                                "{field}: element {i} ({v}) does not fit {}",
                                datatype.as_str()
                            ))
                        })
                    })
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
        DataType::Bytes => {
            TensorData::Bytes(c.bytes_contents.into_iter().map(ByteString).collect())
        }
    })
}

/// A buffer → typed `contents` (moved, not copied, where the types agree).
fn to_contents(data: TensorData) -> InferTensorContents {
    let mut c = InferTensorContents::default();
    match data {
        TensorData::Bool(v) => c.bool_contents = v,
        TensorData::U8(v) => c.uint_contents = v.into_iter().map(u32::from).collect(),
        TensorData::U16(v) => c.uint_contents = v.into_iter().map(u32::from).collect(),
        TensorData::U32(v) => c.uint_contents = v,
        TensorData::U64(v) => c.uint64_contents = v,
        TensorData::I8(v) => c.int_contents = v.into_iter().map(i32::from).collect(),
        TensorData::I16(v) => c.int_contents = v.into_iter().map(i32::from).collect(),
        TensorData::I32(v) => c.int_contents = v,
        TensorData::I64(v) => c.int64_contents = v,
        TensorData::F32(v) => c.fp32_contents = v,
        TensorData::F64(v) => c.fp64_contents = v,
        TensorData::Bytes(v) => c.bytes_contents = v.into_iter().map(|b| b.0).collect(),
    }
    c
}

/// Decodes a request's inputs; returns them and whether they came raw.
pub fn decode_inputs(
    inputs: Vec<InferInputTensor>,
    raw: Vec<Vec<u8>>,
) -> Result<(Vec<Tensor>, bool), ServerError> {
    let is_raw = !raw.is_empty();
    if is_raw && raw.len() != inputs.len() {
        return Err(invalid(format!(
            "raw_input_contents has {} entries for {} inputs; send one per input",
            raw.len(),
            inputs.len()
        )));
    }
    let mut raw = raw.into_iter();
    let mut tensors = Vec::with_capacity(inputs.len());
    for input in inputs {
        let field = format!("input {:?}", input.name);
        let datatype =
            DataType::parse(&input.datatype).map_err(|e| invalid(format!("{field}: {e}")))?;
        let data = match raw.next() {
            Some(bytes) => {
                if input.contents.is_some() {
                    return Err(invalid(format!(
                        "{field} has both contents and raw_input_contents; send one"
                    )));
                }
                TensorData::from_le_bytes(
                    datatype,
                    &bytes,
                    &format!("{field} (raw_input_contents)"),
                )?
            }
            None => from_contents(datatype, input.contents.unwrap_or_default(), &field)?,
        };
        tensors.push(Tensor {
            name: input.name,
            shape: input.shape,
            data,
        });
    }
    Ok((tensors, is_raw))
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse {
            ready: self.state.is_ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let r = request.into_inner();
        self.state.model(&r.name, Some(&r.version))?;
        Ok(Response::new(ModelReadyResponse {
            ready: self.state.is_ready(),
        }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "mooring".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: vec![],
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let r = request.into_inner();
        let m = self.state.model(&r.name, Some(&r.version))?;
        let tensors = |specs: &[mooring_registry::TensorSpec]| {
            specs
                .iter()
                .map(|t| TensorMetadata {
                    name: t.name.clone(),
                    datatype: t.datatype.clone(),
                    shape: t.shape.clone(),
                })
                .collect()
        };
        Ok(Response::new(ModelMetadataResponse {
            name: m.name.clone(),
            versions: self.state.versions(&m.name),
            platform: m.platform.into(),
            inputs: tensors(&m.signature.inputs),
            outputs: tensors(&m.signature.outputs),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
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
            .into_iter()
            .map(|t| {
                let datatype = t.datatype().as_str().into();
                let contents = if raw {
                    raw_output_contents.push(t.data.to_le_bytes());
                    None
                } else {
                    Some(to_contents(t.data))
                };
                InferOutputTensor {
                    name: t.name,
                    datatype,
                    shape: t.shape,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::tests::iris_state;

    fn service() -> InferenceService {
        InferenceService::new(iris_state(1 << 20))
    }

    fn request(contents: Option<InferTensorContents>, raw: Vec<Vec<u8>>) -> ModelInferRequest {
        ModelInferRequest {
            model_name: "iris-classifier".into(),
            model_version: String::new(),
            id: "g1".into(),
            parameters: Default::default(),
            inputs: vec![InferInputTensor {
                name: "input".into(),
                datatype: "FP32".into(),
                shape: vec![2, 4],
                parameters: Default::default(),
                contents,
            }],
            outputs: vec![],
            raw_input_contents: raw,
        }
    }

    const ROWS: [f32; 8] = [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3];

    #[tokio::test]
    async fn typed_contents_in_typed_contents_out() {
        let contents = InferTensorContents {
            fp32_contents: ROWS.to_vec(),
            ..Default::default()
        };
        let r = service()
            .model_infer(Request::new(request(Some(contents), vec![])))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (
                r.model_name.as_str(),
                r.model_version.as_str(),
                r.id.as_str()
            ),
            ("iris-classifier", "1", "g1")
        );
        assert!(r.raw_output_contents.is_empty());
        assert_eq!(r.outputs[0].name, "label");
        assert_eq!(
            r.outputs[0].contents.as_ref().unwrap().int64_contents,
            vec![0, 2]
        );
        assert_eq!(r.outputs[1].shape, vec![2, 3]);
        assert_eq!(
            r.outputs[1].contents.as_ref().unwrap().fp32_contents.len(),
            6
        );
    }

    #[tokio::test]
    async fn raw_contents_in_raw_contents_out() {
        let raw = ROWS.iter().flat_map(|v| v.to_le_bytes()).collect();
        let r = service()
            .model_infer(Request::new(request(None, vec![raw])))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.raw_output_contents.len(), 2);
        assert!(r.outputs.iter().all(|o| o.contents.is_none()));
        let labels: Vec<i64> = r.raw_output_contents[0]
            .chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(labels, vec![0, 2]);
        assert_eq!(r.raw_output_contents[1].len(), 6 * 4);
    }

    #[tokio::test]
    async fn bad_requests_map_to_grpc_codes() {
        let svc = service();
        let mut unknown = request(
            Some(InferTensorContents {
                fp32_contents: ROWS.to_vec(),
                ..Default::default()
            }),
            vec![],
        );
        unknown.model_name = "nope".into();
        assert_eq!(
            svc.model_infer(Request::new(unknown))
                .await
                .unwrap_err()
                .code(),
            tonic::Code::NotFound
        );
        let short = request(
            Some(InferTensorContents {
                fp32_contents: vec![1.0; 3],
                ..Default::default()
            }),
            vec![],
        );
        let status = svc.model_infer(Request::new(short)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status
                .message()
                .contains("needs 8 values but the data holds 3"),
            "{}",
            status.message()
        );
        let ragged = request(None, vec![vec![0; 7]]);
        let status = svc.model_infer(Request::new(ragged)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().contains("7 raw bytes"),
            "{}",
            status.message()
        );
        let too_many = request(None, vec![vec![0; 32], vec![0; 4]]);
        assert_eq!(
            svc.model_infer(Request::new(too_many))
                .await
                .unwrap_err()
                .code(),
            tonic::Code::InvalidArgument
        );
        let v = ModelReadyRequest {
            name: "iris-classifier".into(),
            version: "7".into(),
        };
        assert_eq!(
            svc.model_ready(Request::new(v)).await.unwrap_err().code(),
            tonic::Code::NotFound
        );
    }

    #[tokio::test]
    async fn health_and_metadata() {
        let svc = service();
        assert!(
            svc.server_live(Request::new(ServerLiveRequest {}))
                .await
                .unwrap()
                .into_inner()
                .live
        );
        assert!(
            svc.server_ready(Request::new(ServerReadyRequest {}))
                .await
                .unwrap()
                .into_inner()
                .ready
        );
        let ready = ModelReadyRequest {
            name: "iris-classifier".into(),
            version: String::new(),
        };
        assert!(
            svc.model_ready(Request::new(ready))
                .await
                .unwrap()
                .into_inner()
                .ready
        );
        let meta = ModelMetadataRequest {
            name: "iris-classifier".into(),
            version: "1".into(),
        };
        let meta = svc
            .model_metadata(Request::new(meta))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(meta.versions, vec!["1".to_string()]);
        assert_eq!(meta.inputs[0].shape, vec![-1, 4]);
        assert_eq!(
            svc.server_metadata(Request::new(ServerMetadataRequest {}))
                .await
                .unwrap()
                .into_inner()
                .name,
            "mooring"
        );
    }
}
