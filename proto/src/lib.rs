//! The gRPC definitions of the workspace, generated from `proto/*.proto`: messages, server
//! traits and clients of the Open Inference Protocol (KServe "V2", `proto/inference.proto`)
//! and of chat (`proto/chat.proto`).
#![forbid(unsafe_code)]

/// Package `inference`: the Open Inference Protocol.
#[allow(clippy::all, missing_docs)]
pub mod inference {
    tonic::include_proto!("inference");
}

/// Package `mooring.chat.v1`: chat with session memory, one answer or a stream of deltas.
#[allow(clippy::all, missing_docs)]
pub mod chat {
    tonic::include_proto!("mooring.chat.v1");
}
