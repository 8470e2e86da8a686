//! Logging set-up.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--log-level {filter:?}: {reason}")]
    BadFilter { filter: String, reason: String },
    #[error("a global logger is already installed")]
    AlreadyInstalled,
}

/// Install the global subscriber: JSON in clusters, pretty in a terminal.
pub fn init(format: LogFormat, filter: &str) -> Result<(), Error> {
    let env_filter = EnvFilter::try_new(filter).map_err(|e| Error::BadFilter {
        filter: filter.into(),
        reason: e.to_string(),
    })?;
    let builder = tracing_subscriber::fmt().with_env_filter(env_filter);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    result.map_err(|_| Error::AlreadyInstalled)
}
