//! Mooring inference server.
#![forbid(unsafe_code)]
