//! Fetch what the spec refers to: the Secret holding the MLflow credentials (a token, or a
//! username and password), and a connection to the registry.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use mooring_crds::common::{BASIC_AUTH_PASSWORD_KEY, BASIC_AUTH_USERNAME_KEY};
use mooring_registry::{Registry, RegistryConfig};

use super::validate::{MlflowAuth, RegistryTarget};

/// The spec fields naming a Secret, as errors name them.
pub const TOKEN_FIELD: &str = "spec.registry.mlflow.tokenSecretRef";
pub const BASIC_AUTH_FIELD: &str = "spec.registry.mlflow.basicAuthSecretRef";

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Each variant names the spec field that refers to the Secret, so the user knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field}: Secret {name:?} does not exist in namespace {namespace:?}")]
    SecretNotFound {
        field: &'static str,
        namespace: String,
        name: String,
    },
    #[error("{field}: Secret {name:?} has no key {key:?}")]
    SecretKeyMissing {
        field: &'static str,
        name: String,
        key: String,
    },
    #[error("{field}: Secret {name:?} key {key:?} is not UTF-8 text")]
    SecretKeyNotText {
        field: &'static str,
        name: String,
        key: String,
    },
    #[error("{field}: cannot read Secret {name:?}: {source}")]
    Kube {
        field: &'static str,
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

/// The registry's configuration, with the credentials read from their Secret.
pub async fn registry_config(
    secrets: &Api<Secret>,
    namespace: &str,
    target: &RegistryTarget,
) -> Result<RegistryConfig> {
    let mut config = RegistryConfig::new(target.location());
    match target {
        RegistryTarget::Mlflow {
            auth: Some(MlflowAuth::Token(secret_ref)),
            ..
        } => {
            let secret = get_secret(secrets, namespace, TOKEN_FIELD, &secret_ref.name).await?;
            let token = secret_key(&secret, TOKEN_FIELD, &secret_ref.name, &secret_ref.key)?;
            config.token = Some(token.trim().to_string());
        }
        RegistryTarget::Mlflow {
            auth: Some(MlflowAuth::Basic(secret_ref)),
            ..
        } => {
            let name = &secret_ref.name;
            let secret = get_secret(secrets, namespace, BASIC_AUTH_FIELD, name).await?;
            // Verbatim, not trimmed: the pods get these through `secretKeyRef`, byte for byte,
            // and a password may end in a space.
            config.username = Some(secret_key(
                &secret,
                BASIC_AUTH_FIELD,
                name,
                BASIC_AUTH_USERNAME_KEY,
            )?);
            config.password = Some(secret_key(
                &secret,
                BASIC_AUTH_FIELD,
                name,
                BASIC_AUTH_PASSWORD_KEY,
            )?);
        }
        RegistryTarget::Mlflow { auth: None, .. } | RegistryTarget::Local { .. } => {}
    }
    Ok(config)
}

/// Secret `name`, which the spec names in `field`.
pub async fn get_secret(
    secrets: &Api<Secret>,
    namespace: &str,
    field: &'static str,
    name: &str,
) -> Result<Secret> {
    match secrets.get_opt(name).await {
        Ok(Some(secret)) => Ok(secret),
        Ok(None) => Err(Error::SecretNotFound {
            field,
            namespace: namespace.into(),
            name: name.into(),
        }),
        Err(source) => Err(Error::Kube {
            field,
            name: name.into(),
            source,
        }),
    }
}

/// The text under `key` of `secret` (named `name`, which the spec names in `field`).
pub fn secret_key(secret: &Secret, field: &'static str, name: &str, key: &str) -> Result<String> {
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
            field,
            name: name.into(),
            key: key.into(),
        })?;
    String::from_utf8(value).map_err(|_| Error::SecretKeyNotText {
        field,
        name: name.into(),
        key: key.into(),
    })
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

/// `registry_config` against a scripted API server: one GET per Secret, nothing else.
#[cfg(test)]
mod tests {
    use http::{Method, StatusCode};
    use mooring_crds::{SecretKeyRef, SecretRef};
    use serde_json::{Value, json};

    use super::*;
    use crate::mock_api::{self, ApiServer};

    const URL: &str = "http://mlflow:5000";

    fn secret(name: &str, type_: &str, data: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": type_,
            "metadata": {"name": name, "namespace": "ml"},
            "data": data,
        })
    }

    fn token(name: &str, key: &str) -> RegistryTarget {
        RegistryTarget::Mlflow {
            url: URL.into(),
            auth: Some(MlflowAuth::Token(SecretKeyRef {
                name: name.into(),
                key: key.into(),
            })),
        }
    }

    fn basic_auth(name: &str) -> RegistryTarget {
        RegistryTarget::Mlflow {
            url: URL.into(),
            auth: Some(MlflowAuth::Basic(SecretRef { name: name.into() })),
        }
    }

    /// Run `registry_config` for `target` in namespace `ml` against `script`.
    async fn config_for<F>(
        target: RegistryTarget,
        script: impl FnOnce(ApiServer) -> F,
    ) -> Result<RegistryConfig>
    where
        F: std::future::Future<Output = ApiServer> + Send + 'static,
    {
        let (client, server) = mock_api::pair();
        let secrets = Api::<Secret>::namespaced(client, "ml");
        let scripted = tokio::spawn(script(server));
        let config = tokio::time::timeout(
            mock_api::STEP_TIMEOUT,
            registry_config(&secrets, "ml", &target),
        )
        .await
        .expect("registry_config hung on an unexpected request");
        drop(scripted.await.expect("script panicked"));
        config
    }

    #[tokio::test]
    async fn token_is_read_from_its_key_and_trimmed() {
        let config = config_for(token("mlflow-token", "pat"), |mut server| async move {
            server
                .expect(Method::GET, "/api/v1/namespaces/ml/secrets/mlflow-token")
                .await
                // "dapi-123\n", as `kubectl create secret --from-file` stores it.
                .reply(
                    StatusCode::OK,
                    &secret("mlflow-token", "Opaque", json!({"pat": "ZGFwaS0xMjMK"})),
                );
            server
        })
        .await
        .unwrap();
        assert_eq!(config.location, URL);
        assert_eq!(config.token.as_deref(), Some("dapi-123"));
        assert_eq!((config.username, config.password), (None, None));
    }

    #[tokio::test]
    async fn token_secret_without_the_key_names_the_field_and_key() {
        let err = config_for(token("mlflow-token", "pat"), |mut server| async move {
            server
                .expect(Method::GET, "/api/v1/namespaces/ml/secrets/mlflow-token")
                .await
                .reply(
                    StatusCode::OK,
                    &secret("mlflow-token", "Opaque", json!({"token": "ZGFwaS0xMjMK"})),
                );
            server
        })
        .await
        .unwrap_err();
        assert_eq!(err.reason(), "SecretKeyMissing");
        assert!(err.is_user_error());
        assert_eq!(
            err.to_string(),
            r#"spec.registry.mlflow.tokenSecretRef: Secret "mlflow-token" has no key "pat""#
        );
    }

    #[tokio::test]
    async fn basic_auth_secret_gives_username_and_password() {
        let config = config_for(basic_auth("mlflow-basic"), |mut server| async move {
            server
                .expect(Method::GET, "/api/v1/namespaces/ml/secrets/mlflow-basic")
                .await
                .reply(
                    StatusCode::OK,
                    &secret(
                        "mlflow-basic",
                        "kubernetes.io/basic-auth",
                        // alice / s3cret
                        json!({"username": "YWxpY2U=", "password": "czNjcmV0"}),
                    ),
                );
            server
        })
        .await
        .unwrap();
        assert_eq!(config.username.as_deref(), Some("alice"));
        assert_eq!(config.password.as_deref(), Some("s3cret"));
        assert_eq!(config.token, None);
    }

    #[tokio::test]
    async fn basic_auth_secret_without_password_names_the_field_and_key() {
        let err = config_for(basic_auth("mlflow-basic"), |mut server| async move {
            server
                .expect(Method::GET, "/api/v1/namespaces/ml/secrets/mlflow-basic")
                .await
                .reply(
                    StatusCode::OK,
                    &secret("mlflow-basic", "Opaque", json!({"username": "YWxpY2U="})),
                );
            server
        })
        .await
        .unwrap_err();
        assert!(
            matches!(
                &err,
                Error::SecretKeyMissing { field: BASIC_AUTH_FIELD, name, key }
                    if name == "mlflow-basic" && key == "password"
            ),
            "{err:?}"
        );
        assert!(err.is_user_error());
        assert_eq!(
            err.to_string(),
            r#"spec.registry.mlflow.basicAuthSecretRef: Secret "mlflow-basic" has no key "password""#
        );
    }

    #[tokio::test]
    async fn missing_basic_auth_secret_names_the_field() {
        let err = config_for(basic_auth("mlflow-basic"), |mut server| async move {
            server
                .expect(Method::GET, "/api/v1/namespaces/ml/secrets/mlflow-basic")
                .await
                .not_found();
            server
        })
        .await
        .unwrap_err();
        assert_eq!(err.reason(), "SecretNotFound");
        assert!(err.is_user_error());
        assert_eq!(
            err.to_string(),
            r#"spec.registry.mlflow.basicAuthSecretRef: Secret "mlflow-basic" does not exist in namespace "ml""#
        );
    }

    #[tokio::test]
    async fn no_credentials_read_no_secret() {
        let target = RegistryTarget::Mlflow {
            url: URL.into(),
            auth: None,
        };
        // The script expects nothing: any request would go unanswered and time out.
        let config = config_for(target, |server| async move { server })
            .await
            .unwrap();
        assert_eq!(
            (config.token, config.username, config.password),
            (None, None, None)
        );
    }
}
