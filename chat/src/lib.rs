//! LLM chat: OpenAI-compatible API, memory, guard, caches.
#![forbid(unsafe_code)]
