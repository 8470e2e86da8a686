//! Mooring operator.
#![forbid(unsafe_code)]
