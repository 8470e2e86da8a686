//! Fetch what the spec refers to: the Secret holding the MLflow token, and a connection to
//! the registry.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use mooring_registry::{Registry, RegistryConfig};

use super::validate::RegistryTarget;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "spec.registry.mlflow.tokenSecretRef: Secret {name:?} does not exist in namespace {namespace:?}"
    )]
    SecretNotFound { namespace: String, name: String },
    #[error("spec.registry.mlflow.tokenSecretRef: Secret {name:?} has no key {key:?}")]
    SecretKeyMissing { name: String, key: String },
    #[error("spec.registry.mlflow.tokenSecretRef: Secret {name:?} key {key:?} is not UTF-8 text")]
    SecretKeyNotText { name: String, key: String },
    #[error("cannot read Secret {name:?}: {source}")]
    Kube {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Error::SecretNotFound { .. } => "SecretNotFound",
            Error::SecretKeyMissing { .. } => "SecretKeyMissing",
            Error::SecretKeyNotText { .. } => "SecretKeyNotText",
            Error::Kube { .. } => "KubeError",
        }
    }

    /// True when the user must change something (the Secret); false for API trouble.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Error::Kube { .. })
    }
}

/// The registry's configuration, with the token read from its Secret.
pub async fn registry_config(
    secrets: &Api<Secret>,
    namespace: &str,
    target: &RegistryTarget,
) -> Result<RegistryConfig> {
    let mut config = RegistryConfig::new(target.location());
    if let RegistryTarget::Mlflow {
        token: Some(secret_ref),
        ..
    } = target
    {
        let name = &secret_ref.name;
        let secret = match secrets.get_opt(name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                return Err(Error::SecretNotFound {
                    namespace: namespace.into(),
                    name: name.clone(),
                });
            }
            Err(source) => {
                return Err(Error::Kube {
                    name: name.clone(),
                    source,
                });
            }
        };
        let key = &secret_ref.key;
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|s| s.clone().into_bytes())
            })
            .ok_or_else(|| Error::SecretKeyMissing {
                name: name.clone(),
                key: key.clone(),
            })?;
        let token = String::from_utf8(value).map_err(|_| Error::SecretKeyNotText {
            name: name.clone(),
            key: key.clone(),
        })?;
        config.token = Some(token.trim().to_string());
    }
    Ok(config)
}

/// Opens registries; tests swap in one that answers from memory.
pub trait Connector: Send + Sync {
    fn connect(&self, config: &RegistryConfig) -> mooring_registry::Result<Arc<dyn Registry>>;
}

/// The real registries of the `mooring-registry` crate.
pub struct RegistryConnector;

impl Connector for RegistryConnector {
    fn connect(&self, config: &RegistryConfig) -> mooring_registry::Result<Arc<dyn Registry>> {
        mooring_registry::connect(config)
    }
}
