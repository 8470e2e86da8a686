//! Prediction log and drift statistics.
#![forbid(unsafe_code)]

pub mod log;
pub mod stats;
