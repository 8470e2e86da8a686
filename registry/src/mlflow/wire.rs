//! MLflow's JSON, as its REST API returns it, and the mapping to the registry's types.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{ModelVersion, Signature, TensorSpec};

/// Model version tags Mooring writes at registration, read back as metrics and params.
pub(crate) const METRIC_TAG_PREFIX: &str = "mooring.metric.";
pub(crate) const PARAM_TAG_PREFIX: &str = "mooring.param.";

#[derive(Debug, Deserialize)]
pub(crate) struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// `ModelVersion` of MLflow's protobuf API. Timestamps are int64, which MLflow writes as
/// JSON numbers (some proxies turn them into strings: both are accepted).
#[derive(Debug, Deserialize)]
pub(crate) struct MlflowModelVersion {
    pub name: String,
    pub version: String,
    #[serde(default, deserialize_with = "int64")]
    pub creation_timestamp: Option<i64>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub run_id: Option<String>,
    /// Absent in some responses; MLflow's default is READY only for finished registrations,
    /// so a missing status is treated as unknown (and not served).
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub status_message: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub aliases: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AliasEntry {
    pub alias: String,
    pub version: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct MlflowRegisteredModel {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub aliases: Vec<AliasEntry>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ModelVersionResponse {
    pub model_version: MlflowModelVersion,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RegisteredModelResponse {
    pub registered_model: MlflowRegisteredModel,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SearchModelsResponse {
    #[serde(default)]
    pub registered_models: Vec<MlflowRegisteredModel>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SearchVersionsResponse {
    #[serde(default)]
    pub model_versions: Vec<MlflowModelVersion>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DownloadUriResponse {
    pub artifact_uri: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ArtifactFile {
    pub path: String,
    #[serde(default)]
    pub is_dir: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ArtifactListing {
    #[serde(default)]
    pub files: Vec<ArtifactFile>,
}

fn int64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrString {
        N(i64),
        S(String),
    }
    Ok(match Option::<NumOrString>::deserialize(d)? {
        None => None,
        Some(NumOrString::N(n)) => Some(n),
        Some(NumOrString::S(s)) => s.parse().ok(),
    })
}

impl MlflowModelVersion {
    /// The registry's view. `aliases` from the registered model fill in what
    /// `model-versions/search` leaves out.
    pub(crate) fn into_model_version(self, model_aliases: Option<&[AliasEntry]>) -> ModelVersion {
        let mut tags = BTreeMap::new();
        let mut metrics = BTreeMap::new();
        for Tag { key, value } in self.tags {
            if let Some(m) = key.strip_prefix(METRIC_TAG_PREFIX) {
                if let Ok(v) = value.parse::<f64>() {
                    metrics.insert(m.to_string(), v);
                    continue;
                }
            } else if let Some(p) = key.strip_prefix(PARAM_TAG_PREFIX) {
                tags.insert(format!("param.{p}"), value);
                continue;
            }
            tags.insert(key, value);
        }
        let mut aliases = self.aliases;
        if let Some(entries) = model_aliases {
            for e in entries.iter().filter(|e| e.version == self.version) {
                if !aliases.contains(&e.alias) {
                    aliases.push(e.alias.clone());
                }
            }
        }
        aliases.sort();
        if let Some(msg) = self.status_message.filter(|m| !m.is_empty()) {
            tags.insert("mlflow.status_message".into(), msg);
        }
        ModelVersion {
            name: self.name,
            version: self.version,
            source: self.source,
            status: self.status.unwrap_or_else(|| "UNKNOWN".into()),
            run_id: self.run_id.filter(|r| !r.is_empty()),
            created_at_ms: self.creation_timestamp,
            description: self.description.filter(|d| !d.is_empty()),
            aliases,
            tags,
            metrics,
        }
    }
}

/// The `signature` section of an MLflow `MLmodel` file, converted to ours: the fallback for
/// versions logged by MLflow flavours without our `signature.json`.
///
/// Tensor signatures (`{"type": "tensor", "tensor-spec": {"dtype", "shape"}}`) map one to
/// one. Column signatures (`{"type": "double", "name": "sepal_length"}`) become a single
/// 2-D input named `input` whose feature names are the columns, which is how ONNX exports
/// of tabular models usually look.
pub(crate) fn signature_from_mlmodel(yaml: &str) -> Result<Signature, String> {
    #[derive(Deserialize)]
    struct MlModel {
        signature: Option<MlSignature>,
    }
    #[derive(Deserialize)]
    struct MlSignature {
        inputs: Option<String>,
        outputs: Option<String>,
    }
    let mlmodel: MlModel =
        serde_yaml::from_str(yaml).map_err(|e| format!("MLmodel is not valid YAML: {e}"))?;
    let sig = mlmodel.signature.ok_or("MLmodel has no signature")?;
    let inputs = specs(
        sig.inputs
            .as_deref()
            .ok_or("MLmodel signature has no inputs")?,
        "input",
    )?;
    let outputs = specs(
        sig.outputs
            .as_deref()
            .ok_or("MLmodel signature has no outputs")?,
        "output",
    )?;
    let (inputs, feature_names) = inputs;
    let (outputs, _) = outputs;
    let signature = Signature {
        inputs,
        outputs,
        feature_names,
        class_labels: Vec::new(),
        probabilities_output: None,
        allow_nan: false,
    };
    signature.validate()?;
    Ok(signature)
}

/// Parse one side (a JSON string inside the YAML) into tensors and, for column
/// signatures, feature names.
fn specs(json: &str, default_name: &str) -> Result<(Vec<TensorSpec>, Vec<String>), String> {
    let items: Vec<serde_json::Value> = serde_json::from_str(json)
        .map_err(|e| format!("MLmodel signature {default_name}s: {e}"))?;
    let is_tensor = items.iter().all(|i| i["type"] == "tensor");
    if is_tensor {
        let mut out = Vec::new();
        for (idx, item) in items.iter().enumerate() {
            let spec = &item["tensor-spec"];
            let dtype = spec["dtype"].as_str().ok_or("tensor-spec without dtype")?;
            let shape: Vec<i64> = serde_json::from_value(spec["shape"].clone())
                .map_err(|e| format!("tensor-spec shape: {e}"))?;
            let name = item["name"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| {
                    if items.len() == 1 {
                        default_name.to_string()
                    } else {
                        format!("{default_name}_{idx}")
                    }
                });
            out.push(TensorSpec {
                name,
                datatype: numpy_to_v2(dtype)?.to_string(),
                shape,
            });
        }
        return Ok((out, Vec::new()));
    }
    let mut names = Vec::new();
    let mut datatype: Option<&str> = None;
    for item in &items {
        let col_type = item["type"].as_str().ok_or("column without a type")?;
        let dt = column_to_v2(col_type)?;
        if datatype.is_some_and(|d| d != dt) {
            return Err("columns of different types cannot form one tensor".into());
        }
        datatype = Some(dt);
        names.push(
            item["name"]
                .as_str()
                .ok_or("column without a name")?
                .to_string(),
        );
    }
    let datatype = datatype.ok_or_else(|| format!("MLmodel signature has no {default_name}s"))?;
    let spec = TensorSpec {
        name: default_name.to_string(),
        datatype: datatype.into(),
        shape: vec![-1, names.len() as i64],
    };
    Ok((
        vec![spec],
        if default_name == "input" {
            names
        } else {
            Vec::new()
        },
    ))
}

fn numpy_to_v2(dtype: &str) -> Result<&'static str, String> {
    Ok(match dtype {
        "float32" => "FP32",
        "float64" => "FP64",
        "float16" => "FP16",
        "int8" => "INT8",
        "int16" => "INT16",
        "int32" => "INT32",
        "int64" => "INT64",
        "uint8" => "UINT8",
        "uint16" => "UINT16",
        "uint32" => "UINT32",
        "uint64" => "UINT64",
        "bool" => "BOOL",
        "str" | "object" => "BYTES",
        other => return Err(format!("unsupported tensor dtype {other:?}")),
    })
}

fn column_to_v2(t: &str) -> Result<&'static str, String> {
    Ok(match t {
        "double" => "FP64",
        "float" => "FP32",
        "long" => "INT64",
        "integer" => "INT32",
        "boolean" => "BOOL",
        "string" | "binary" => "BYTES",
        other => return Err(format!("unsupported column type {other:?}")),
    })
}
