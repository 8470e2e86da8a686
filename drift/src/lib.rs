//! Prediction log and drift statistics.
#![forbid(unsafe_code)]

pub mod stats;
