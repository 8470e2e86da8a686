//! The MLflow backend: MLflow's model registry over its REST API (`/api/2.0/mlflow/…`),
//! artifacts through the tracking server's artifact proxy or a shared `file://` volume.
//!
//! Versions Mooring registers carry a `sha256sums` artifact that `fetch` verifies. Versions
//! registered by other tools have none: they are hashed as downloaded (the digest then
//! identifies what was served but proves nothing about transport), unless
//! [`RegistryConfig::require_digest`] refuses them.

mod artifacts;
mod client;
mod register;
mod wire;

use std::future::Future;
use std::path::Path;

use async_trait::async_trait;
use backon::BackoffBuilder;
use reqwest::Method;
use serde_json::json;

use crate::{
    Error, FetchedModel, ModelRef, ModelVersion, RegisteredModel, Registry, RegistryConfig, Result,
    Selector, validate_alias,
};
use client::{Client, Failure};
use wire::*;

/// Page size for `registered-models/search` and `model-versions/search`.
const PAGE_SIZE: &str = "100";
/// Upper bound on pages read by one listing, so a misbehaving server cannot loop us forever.
const MAX_PAGES: usize = 1000;

/// A registry backed by an MLflow tracking server.
#[derive(Clone, Debug)]
pub struct MlflowRegistry {
    client: Client,
    require_digest: bool,
}

impl MlflowRegistry {
    pub fn new(config: &RegistryConfig) -> Result<Self> {
        Ok(Self {
            client: Client::new(config)?,
            require_digest: config.require_digest,
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        query: &[(&str, &str)],
    ) -> Result<T> {
        self.client
            .call(Method::GET, endpoint, query, None)
            .await
            .map_err(|f| self.err(f, "GET", endpoint))
    }

    /// A POST whose repetition changes nothing (see [`Client::call_idempotent`]).
    async fn post_idempotent<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        body: serde_json::Value,
    ) -> Result<T> {
        self.client
            .call_idempotent(Method::POST, endpoint, &body)
            .await
            .map_err(|f| self.err(f, "POST", endpoint))
    }

    /// A creating POST that takes effect at most once: after a failure that may have
    /// succeeded (a timeout, a 5xx) `find` looks for what it would have created, and only
    /// when that is not there is the call sent again. Failures that surely did not reach
    /// MLflow (no connection, 429) are retried by the client itself.
    async fn create_once<T, F, Fut>(
        &self,
        endpoint: &str,
        body: &serde_json::Value,
        find: F,
    ) -> std::result::Result<T, Failure>
    where
        T: serde::de::DeserializeOwned,
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<Option<T>, Failure>>,
    {
        let mut delays = self.client.backoff().build();
        loop {
            let failure = match self
                .client
                .call::<T>(Method::POST, endpoint, &[], Some(body))
                .await
            {
                Ok(created) => return Ok(created),
                Err(f) => f,
            };
            if !(failure.transient() && failure.maybe_applied()) {
                return Err(failure);
            }
            if let Some(found) = find().await? {
                tracing::info!(
                    endpoint,
                    "an MLflow call that failed had taken effect; not repeating it"
                );
                return Ok(found);
            }
            let Some(delay) = delays.next() else {
                return Err(failure);
            };
            tracing::warn!(endpoint, ?delay, error = ?failure, "MLflow call failed and took no effect; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    fn err(&self, f: Failure, method: &str, endpoint: &str) -> Error {
        f.into_error(&format!("{method} {endpoint}"), &self.client.base)
    }

    /// The registered model, or `ModelNotFound`.
    async fn registered_model(&self, name: &str) -> Result<MlflowRegisteredModel> {
        match self
            .client
            .call::<RegisteredModelResponse>(
                Method::GET,
                "registered-models/get",
                &[("name", name)],
                None,
            )
            .await
        {
            Ok(r) => Ok(r.registered_model),
            Err(Failure::Http { status: 404, .. }) => Err(Error::ModelNotFound {
                name: name.to_string(),
            }),
            Err(f) => Err(self.err(f, "GET", "registered-models/get")),
        }
    }

    /// MLflow answers a missing alias with 400 and a missing version with 404, without
    /// saying whether the model itself exists: ask, so the error names the right thing.
    async fn explain_missing(&self, name: &str, what: Selector, f: Failure) -> Error {
        if !matches!(f.status(), Some(400 | 404)) {
            let endpoint = match what {
                Selector::Alias(_) => "registered-models/alias",
                Selector::Version(_) => "model-versions/get",
            };
            return self.err(f, "GET", endpoint);
        }
        let model = match self.registered_model(name).await {
            Ok(m) => m,
            Err(e) => return e,
        };
        match what {
            Selector::Alias(alias) => Error::AliasNotFound {
                name: name.to_string(),
                alias,
                known: known_aliases(&model.aliases),
            },
            Selector::Version(version) => Error::VersionNotFound {
                name: name.to_string(),
                version,
            },
        }
    }

    async fn get_version(&self, name: &str, version: &str) -> Result<ModelVersion> {
        let q = [("name", name), ("version", version)];
        match self
            .client
            .call::<ModelVersionResponse>(Method::GET, "model-versions/get", &q, None)
            .await
        {
            Ok(r) => Ok(r.model_version.into_model_version(None)),
            Err(f) => Err(self
                .explain_missing(name, Selector::Version(version.to_string()), f)
                .await),
        }
    }

    async fn search_versions(&self, model: &MlflowRegisteredModel) -> Result<Vec<ModelVersion>> {
        let filter = format!("name='{}'", model.name.replace('\'', "\\'"));
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut q = vec![("filter", filter.as_str()), ("max_results", PAGE_SIZE)];
            if let Some(t) = &token {
                q.push(("page_token", t));
            }
            let page: SearchVersionsResponse = self.get("model-versions/search", &q).await?;
            out.extend(
                page.model_versions
                    .into_iter()
                    .map(|v| v.into_model_version(Some(&model.aliases))),
            );
            token = page.next_page_token.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        out.sort_by_key(|v| v.version.parse::<u64>().unwrap_or(u64::MAX));
        Ok(out)
    }
}

fn known_aliases(aliases: &[AliasEntry]) -> String {
    if aliases.is_empty() {
        return "none".into();
    }
    let mut names: Vec<&str> = aliases.iter().map(|a| a.alias.as_str()).collect();
    names.sort_unstable();
    names.join(", ")
}

#[async_trait]
impl Registry for MlflowRegistry {
    fn location(&self) -> String {
        self.client.base.to_string()
    }

    async fn resolve(&self, model: &ModelRef) -> Result<ModelVersion> {
        match &model.selector {
            Selector::Version(v) => self.get_version(&model.name, v).await,
            Selector::Alias(alias) => {
                let q = [("name", model.name.as_str()), ("alias", alias.as_str())];
                match self
                    .client
                    .call::<ModelVersionResponse>(Method::GET, "registered-models/alias", &q, None)
                    .await
                {
                    Ok(r) => Ok(r.model_version.into_model_version(None)),
                    Err(f) => Err(self
                        .explain_missing(&model.name, model.selector.clone(), f)
                        .await),
                }
            }
        }
    }

    async fn fetch(&self, version: &ModelVersion, cache_dir: &Path) -> Result<FetchedModel> {
        artifacts::fetch(self, version, cache_dir).await
    }

    async fn fetch_gguf(
        &self,
        version: &ModelVersion,
        cache_dir: &Path,
    ) -> Result<crate::FetchedGguf> {
        artifacts::fetch_gguf(self, version, cache_dir).await
    }

    async fn list_models(&self) -> Result<Vec<RegisteredModel>> {
        let mut models = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut q = vec![("max_results", PAGE_SIZE)];
            if let Some(t) = &token {
                q.push(("page_token", t));
            }
            let page: SearchModelsResponse = self.get("registered-models/search", &q).await?;
            for m in page.registered_models {
                let versions = self.search_versions(&m).await?;
                models.push(RegisteredModel {
                    aliases: m
                        .aliases
                        .iter()
                        .map(|a| (a.alias.clone(), a.version.clone()))
                        .collect(),
                    name: m.name,
                    description: m.description.filter(|d| !d.is_empty()),
                    versions,
                });
            }
            token = page.next_page_token.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        Ok(models)
    }

    async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        validate_alias(alias)?;
        let body = json!({"name": name, "alias": alias, "version": version});
        // Not repeated blindly: another writer may have moved the alias since.
        let already_set = || async {
            let q = [("name", name), ("alias", alias)];
            let current = self
                .client
                .call::<ModelVersionResponse>(Method::GET, "registered-models/alias", &q, None)
                .await;
            match current {
                Ok(r) if r.model_version.version == version => Ok(Some(serde_json::Value::Null)),
                Ok(_) => Ok(None),
                Err(f) if f.status() == Some(404) => Ok(None),
                Err(f) => Err(f),
            }
        };
        match self
            .create_once::<serde_json::Value, _, _>("registered-models/alias", &body, already_set)
            .await
        {
            Ok(_) => {
                tracing::info!(model = name, alias, version, "alias set in MLflow");
                Ok(())
            }
            Err(f) if f.status() == Some(404) => Err(self
                .explain_missing(name, Selector::Version(version.to_string()), f)
                .await),
            Err(f) => Err(self.err(f, "POST", "registered-models/alias")),
        }
    }

    async fn set_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> Result<bool> {
        let body = json!({"name": name, "version": version, "key": key, "value": value});
        match self
            .client
            .call::<serde_json::Value>(Method::POST, "model-versions/set-tag", &[], Some(&body))
            .await
        {
            Ok(_) => Ok(true),
            Err(f) if f.status() == Some(404) => Err(self
                .explain_missing(name, Selector::Version(version.to_string()), f)
                .await),
            Err(f) => Err(self.err(f, "POST", "model-versions/set-tag")),
        }
    }

    async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        // MLflow deletes a missing alias without complaint; the contract says it is an error.
        let model = self.registered_model(name).await?;
        if !model.aliases.iter().any(|a| a.alias == alias) {
            return Err(Error::AliasNotFound {
                name: name.to_string(),
                alias: alias.to_string(),
                known: known_aliases(&model.aliases),
            });
        }
        // MLflow reads DELETE parameters from a JSON body, not the query string.
        let body = json!({"name": name, "alias": alias});
        self.client
            .call::<serde_json::Value>(Method::DELETE, "registered-models/alias", &[], Some(&body))
            .await
            .map_err(|f| self.err(f, "DELETE", "registered-models/alias"))?;
        tracing::info!(model = name, alias, "alias deleted in MLflow");
        Ok(())
    }

    async fn register(&self, name: &str, dir: &Path) -> Result<ModelVersion> {
        register::register(self, name, dir).await
    }
}

#[cfg(test)]
mod tests;
