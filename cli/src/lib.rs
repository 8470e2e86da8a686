//! The mooring command-line tool.
#![forbid(unsafe_code)]
