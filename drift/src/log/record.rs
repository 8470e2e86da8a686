//! One logged prediction: a JSON object on one line of the sink.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The value of one input feature.
///
/// Numbers stay numbers; text is a categorical value. NaN and ±inf cannot be written in
/// JSON, so they are logged as `null` (`Missing`): the drift check drops missing values
/// per feature and reports how many it dropped.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FeatureValue {
    Number(f64),
    Text(String),
    Missing,
}

// Hand-written rather than `#[serde(untagged)]`: untagged enums buffer every value before
// trying each variant, which made reading a million-line log several times slower.
impl<'de> Deserialize<'de> for FeatureValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = FeatureValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number, a string or null")
            }
            fn visit_f64<E>(self, v: f64) -> Result<FeatureValue, E> {
                Ok(FeatureValue::from(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<FeatureValue, E> {
                Ok(FeatureValue::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<FeatureValue, E> {
                Ok(FeatureValue::Number(v as f64))
            }
            fn visit_str<E>(self, v: &str) -> Result<FeatureValue, E> {
                Ok(FeatureValue::Text(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<FeatureValue, E> {
                Ok(FeatureValue::Text(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<FeatureValue, E> {
                Ok(FeatureValue::Missing)
            }
            fn visit_none<E>(self) -> Result<FeatureValue, E> {
                Ok(FeatureValue::Missing)
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl From<f64> for FeatureValue {
    fn from(v: f64) -> Self {
        if v.is_finite() {
            FeatureValue::Number(v)
        } else {
            FeatureValue::Missing
        }
    }
}

impl From<f32> for FeatureValue {
    fn from(v: f32) -> Self {
        FeatureValue::from(v as f64)
    }
}

impl From<&str> for FeatureValue {
    fn from(v: &str) -> Self {
        FeatureValue::Text(v.to_string())
    }
}

/// What the model answered for this row.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Index of the predicted class (classifiers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_index: Option<i64>,
    /// Label of the predicted class, from the signature's `class_labels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Class probabilities, by class index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<Vec<f64>>,
    /// Raw outputs (output name → values) for models that are not classifiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<BTreeMap<String, Vec<f64>>>,
}

/// One inference row as written to the prediction log (one JSON line).
///
/// ```json
/// {"ts_ms":1763790000000,"model":"iris","version":"3","request_id":"r-1","protocol":"rest_v2",
///  "features":{"sepal_length":5.1,"sepal_width":3.5},"prediction":{"class_index":0,"label":"setosa"}}
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictionRecord {
    /// When the prediction was made, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    pub model: String,
    pub version: String,
    /// The request id (one request with a batch of rows logs several records with it).
    pub request_id: String,
    /// `rest_v2`, `grpc_v2`, `api_v1`, …: where the request came in.
    pub protocol: String,
    /// Input features by name (from the signature's `feature_names`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, FeatureValue>,
    /// Raw input tensors (input name → flattened values) when the model has no feature
    /// names; the drift check names their columns `<input>[<i>]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_inputs: Option<BTreeMap<String, Vec<f64>>>,
    #[serde(default)]
    pub prediction: Prediction,
}

impl PredictionRecord {
    /// A record stamped with the current time.
    pub fn now(model: &str, version: &str, request_id: &str, protocol: &str) -> Self {
        PredictionRecord {
            ts_ms: now_ms(),
            model: model.to_string(),
            version: version.to_string(),
            request_id: request_id.to_string(),
            protocol: protocol.to_string(),
            features: BTreeMap::new(),
            raw_inputs: None,
            prediction: Prediction::default(),
        }
    }

    /// Builder helper: name the features with `names` (the signature's feature names).
    pub fn with_features<V: Into<FeatureValue> + Copy>(
        mut self,
        names: &[String],
        values: &[V],
    ) -> Self {
        self.features = names
            .iter()
            .cloned()
            .zip(values.iter().map(|v| (*v).into()))
            .collect();
        self
    }

    /// All features of this record, raw inputs flattened to `<input>[<i>]`.
    pub fn feature_values(&self) -> Vec<(String, FeatureValue)> {
        let mut out: Vec<(String, FeatureValue)> = self
            .features
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(raw) = &self.raw_inputs {
            for (name, values) in raw {
                for (i, v) in values.iter().enumerate() {
                    out.push((format!("{name}[{i}]"), FeatureValue::from(*v)));
                }
            }
        }
        out
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_is_logged_as_null_and_read_back_as_missing() {
        let names = vec!["a".to_string(), "b".to_string()];
        let rec = PredictionRecord::now("m", "1", "r", "api_v1")
            .with_features(&names, &[1.5f64, f64::NAN]);
        let line = serde_json::to_string(&rec).unwrap();
        assert!(line.contains(r#""b":null"#), "{line}");
        let back: PredictionRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back.features["a"], FeatureValue::Number(1.5));
        assert_eq!(back.features["b"], FeatureValue::Missing);
    }
}
