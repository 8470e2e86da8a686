//! Helpers shared by the chat integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// A variable the test environment must provide; panics with the way to get it.
pub fn require_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `make test` (scripts/test.sh sets up and exports it)")
    })
}

pub fn gguf() -> PathBuf {
    let path = PathBuf::from(require_env("MOORING_TEST_GGUF"));
    assert!(path.is_file(), "MOORING_TEST_GGUF={} is not a file: run `make test`", path.display());
    path
}
