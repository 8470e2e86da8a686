//! Open Inference Protocol and chat gRPC definitions.
#![forbid(unsafe_code)]
