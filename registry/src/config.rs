//! Choosing a backend from a location string, as given on a command line or in a CR.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::local::LocalRegistry;
use crate::{Error, Registry, Result};

/// Retries of an MLflow call after its first attempt (connection errors, 429, 5xx): the one
/// policy of the server, the operator and the CLI, so a call that keeps failing gives up
/// "after 5 attempts" wherever it runs.
pub const DEFAULT_MAX_RETRIES: u32 = 4;

/// Where the registry is and how to talk to it.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// `http(s)://host:port` for MLflow; anything else (optionally `file://`) is a directory.
    pub location: String,
    /// Bearer token for MLflow (Databricks-style personal access token).
    pub token: Option<String>,
    /// Basic-auth user for MLflow (`mlflow server --app-name basic-auth`).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Per-request timeout for registry API calls.
    pub request_timeout: Duration,
    /// Timeout for downloading one artifact file.
    pub download_timeout: Duration,
    /// Retries after the first attempt on connection errors, 429 and 5xx (never on other 4xx).
    pub max_retries: u32,
    /// First backoff delay; doubles on every retry.
    pub retry_base_delay: Duration,
    /// Refuse MLflow versions without a recorded `sha256sums` artifact (registered by other
    /// tools) instead of hashing what was downloaded.
    pub require_digest: bool,
}

/// The MLflow credentials of a data-plane command (`serve`, `batch`, `drift`), from flags or
/// from the variables the operator sets in its pods. A token and basic authentication
/// exclude each other, as in the resources' `spec.registry.mlflow`.
#[cfg(feature = "clap")]
#[derive(Clone, Debug, Default, clap::Args)]
pub struct CredentialArgs {
    /// Bearer token for an MLflow registry.
    #[arg(long, env = "MOORING_REGISTRY_TOKEN", hide_env_values = true)]
    pub registry_token: Option<String>,
    /// Basic-auth user for an MLflow registry (`mlflow server --app-name basic-auth`).
    #[arg(
        long,
        env = "MOORING_REGISTRY_USERNAME",
        requires = "registry_password",
        conflicts_with = "registry_token"
    )]
    pub registry_username: Option<String>,
    /// Basic-auth password for an MLflow registry.
    #[arg(
        long,
        env = "MOORING_REGISTRY_PASSWORD",
        hide_env_values = true,
        requires = "registry_username"
    )]
    pub registry_password: Option<String>,
}

#[cfg(feature = "clap")]
impl CredentialArgs {
    /// The configuration of the registry at `location` with these credentials.
    pub fn config(&self, location: impl Into<String>) -> RegistryConfig {
        let mut config = RegistryConfig::new(location);
        config.token = self.registry_token.clone();
        config.username = self.registry_username.clone();
        config.password = self.registry_password.clone();
        config
    }
}

impl RegistryConfig {
    pub fn new(location: impl Into<String>) -> Self {
        Self {
            location: location.into(),
            token: None,
            username: None,
            password: None,
            request_timeout: Duration::from_secs(30),
            download_timeout: Duration::from_secs(300),
            max_retries: DEFAULT_MAX_RETRIES,
            retry_base_delay: Duration::from_millis(200),
            require_digest: false,
        }
    }

    /// True when the location names an MLflow server.
    pub fn is_mlflow(&self) -> bool {
        let l = self.location.trim();
        l.starts_with("http://") || l.starts_with("https://")
    }

    /// The directory of a local registry location (`file://` prefix accepted).
    pub fn local_path(&self) -> Option<PathBuf> {
        if self.is_mlflow() {
            return None;
        }
        let l = self.location.trim();
        Some(PathBuf::from(l.strip_prefix("file://").unwrap_or(l)))
    }

    fn validate(&self) -> Result<()> {
        if self.location.trim().is_empty() {
            return Err(Error::invalid_arg(
                "registry location",
                "empty: give a directory or an http(s):// MLflow URL",
            ));
        }
        if self.token.is_some() && (self.username.is_some() || self.password.is_some()) {
            return Err(Error::invalid_arg(
                "registry auth",
                "give either a token or a username/password, not both",
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(Error::invalid_arg(
                "registry auth",
                "basic auth needs both a username and a password",
            ));
        }
        Ok(())
    }
}

/// Open the registry `config` names: MLflow for an `http(s)://` location, else a directory.
pub fn connect(config: &RegistryConfig) -> Result<Arc<dyn Registry>> {
    config.validate()?;
    match config.local_path() {
        Some(path) => Ok(Arc::new(LocalRegistry::open(path)?)),
        None => Ok(Arc::new(crate::mlflow::MlflowRegistry::new(config)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_backend_from_the_location() {
        assert!(RegistryConfig::new("http://127.0.0.1:5000").is_mlflow());
        assert!(RegistryConfig::new("https://mlflow.example.com").is_mlflow());
        assert_eq!(
            RegistryConfig::new("file:///srv/models").local_path(),
            Some(PathBuf::from("/srv/models"))
        );
        assert_eq!(
            RegistryConfig::new("models").local_path(),
            Some(PathBuf::from("models"))
        );
        let bundled = concat!(env!("CARGO_MANIFEST_DIR"), "/../models");
        let reg = connect(&RegistryConfig::new(format!("file://{bundled}"))).unwrap();
        assert!(reg.location().ends_with("models"));
        // No request is made until the first call, so any URL connects.
        let reg = connect(&RegistryConfig::new("http://127.0.0.1:5000/")).unwrap();
        assert_eq!(reg.location(), "http://127.0.0.1:5000/");
    }

    #[test]
    fn bad_settings_name_the_field() {
        let err = connect(&RegistryConfig::new("")).err().unwrap();
        assert!(err.to_string().contains("registry location"), "{err}");
        let err = connect(&RegistryConfig::new("/nonexistent/registry"))
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("/nonexistent/registry is not a directory"),
            "{err}"
        );
        let mut c = RegistryConfig::new("http://x");
        c.username = Some("u".into());
        assert!(
            connect(&c)
                .err()
                .unwrap()
                .to_string()
                .contains("needs both")
        );
        c.password = Some("p".into());
        c.token = Some("t".into());
        assert!(
            connect(&c)
                .err()
                .unwrap()
                .to_string()
                .contains("either a token")
        );
    }
}
