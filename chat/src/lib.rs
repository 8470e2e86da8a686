//! LLM chat for the inference server: an OpenAI-compatible API with streaming, per-session
//! memory, a prompt-injection guard, exact and semantic caches, and API keys.
#![forbid(unsafe_code)]

pub mod auth;
pub mod backend;
pub mod cache;
pub mod config;
pub mod engine;
pub mod error;
pub mod grpc;
pub mod guard;
mod http;
pub mod memory;
pub mod metrics;
pub mod service;
pub mod shared;

pub use config::ChatArgs;
pub use service::{BuildError, ChatReadiness, ChatService};

/// Generated gRPC types and service for `mooring.chat.v1` (compiled by `mooring-proto`).
pub use mooring_proto::chat as proto;
