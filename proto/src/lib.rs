//! Open Inference Protocol (KServe "V2") gRPC definitions, generated from
//! `proto/inference.proto`: messages, the `GRPCInferenceService` server trait and a client.
#![forbid(unsafe_code)]

/// Package `inference`: the Open Inference Protocol.
#[allow(clippy::all, missing_docs)]
pub mod inference {
    tonic::include_proto!("inference");
}
