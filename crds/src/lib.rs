//! Custom resource types of Mooring.
#![forbid(unsafe_code)]
