//! LLM chat for the inference server: an OpenAI-compatible API with streaming, per-session
//! memory, a prompt-injection guard, exact and semantic caches, and API keys.
#![forbid(unsafe_code)]

pub mod auth;
pub mod cache;
pub mod guard;
