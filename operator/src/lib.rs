//! The Mooring operator: the ModelDeployment controller, leader election, metrics and
//! probes.
#![forbid(unsafe_code)]

pub mod config;
pub mod controller;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod telemetry;

#[cfg(test)]
pub(crate) mod mock_api;
