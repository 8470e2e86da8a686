//! Named-feature prediction for tabular classifiers: rows of `{feature: number}` become the
//! model's single 2-D input; its probabilities become labelled predictions. Shared by
//! `/api/v1/…` and the `batch` subcommand.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Result, ServerError};
use crate::infer::LoadedModel;
use crate::tensor::{ByteString, DataType, Tensor, TensorData};

#[derive(Debug, Serialize, PartialEq)]
pub struct Prediction {
    pub predicted_class: String,
    pub predicted_class_index: usize,
    /// Class label → probability.
    pub probabilities: Map<String, Value>,
    /// The probability of the predicted class.
    pub confidence: f64,
    pub all_classes: Vec<String>,
    pub model_name: String,
    pub model_version: String,
}

/// Builds the input tensor from rows of named features. `row_names` label rows in errors
/// (e.g. "row 3" or "line 7").
pub fn rows_to_input(
    model: &LoadedModel,
    rows: &[&Map<String, Value>],
    row_names: &dyn Fn(usize) -> String,
) -> Result<Tensor> {
    let sig = &model.signature;
    let invalid = |m: String| Err(ServerError::InvalidInput(m));
    if sig.feature_names.is_empty() {
        return invalid(format!(
            "model {:?} has no feature names in its signature; use /v2/models/{}/infer",
            model.name, model.name
        ));
    }
    let spec = &sig.inputs[0];
    let datatype = DataType::parse(&spec.datatype)?;
    if datatype == DataType::Bytes {
        return text_rows_to_input(model, rows, row_names);
    }
    if !matches!(datatype, DataType::F32 | DataType::F64) {
        return invalid(format!(
            "named features need a floating-point input; model {:?} takes {}",
            model.name, spec.datatype
        ));
    }
    if rows.is_empty() {
        return invalid(
            "no rows to predict: send an object of features or a non-empty list of them".into(),
        );
    }
    let mut values = Vec::with_capacity(rows.len() * sig.feature_names.len());
    for (i, row) in rows.iter().enumerate() {
        if let Some(unknown) = row.keys().find(|k| !sig.feature_names.contains(k)) {
            return invalid(format!(
                "{}: unknown feature {unknown:?}; the model's features are {}",
                row_names(i),
                sig.feature_names.join(", ")
            ));
        }
        for feature in &sig.feature_names {
            let value = row.get(feature).ok_or_else(|| {
                ServerError::InvalidInput(format!("{}: missing feature {feature:?}", row_names(i)))
            })?;
            let number = value.as_f64().ok_or_else(|| {
                ServerError::InvalidInput(format!(
                    "{}: feature {feature:?} must be a number, got {value}",
                    row_names(i)
                ))
            })?;
            if !number.is_finite() && !sig.allow_nan {
                return invalid(format!(
                    "{}: feature {feature:?} is not finite",
                    row_names(i)
                ));
            }
            values.push(number);
        }
    }
    let data = match datatype {
        DataType::F32 => TensorData::F32(values.iter().map(|&v| v as f32).collect()),
        _ => TensorData::F64(values),
    };
    Ok(Tensor {
        name: spec.name.clone(),
        shape: vec![rows.len() as i64, sig.feature_names.len() as i64],
        data,
    })
}

/// Rows of text features (`{"text": "…"}`) → the model's BYTES input, `[rows, features]`.
fn text_rows_to_input(
    model: &LoadedModel,
    rows: &[&Map<String, Value>],
    row_names: &dyn Fn(usize) -> String,
) -> Result<Tensor> {
    let sig = &model.signature;
    if rows.is_empty() {
        return Err(ServerError::InvalidInput(
            "no rows to predict: send {\"text\": \"…\"} or a non-empty list of them".into(),
        ));
    }
    let mut values = Vec::with_capacity(rows.len() * sig.feature_names.len());
    for (i, row) in rows.iter().enumerate() {
        if let Some(unknown) = row.keys().find(|k| !sig.feature_names.contains(k)) {
            return Err(ServerError::InvalidInput(format!(
                "{}: unknown feature {unknown:?}; the model's features are {}",
                row_names(i),
                sig.feature_names.join(", ")
            )));
        }
        for feature in &sig.feature_names {
            let text = match row.get(feature) {
                Some(Value::String(s)) => s,
                Some(other) => {
                    return Err(ServerError::InvalidInput(format!(
                        "{}: feature {feature:?} must be a string, got {other}",
                        row_names(i)
                    )));
                }
                None => {
                    return Err(ServerError::InvalidInput(format!(
                        "{}: missing feature {feature:?}",
                        row_names(i)
                    )));
                }
            };
            values.push(ByteString::from(text.as_str()));
        }
    }
    Ok(Tensor {
        name: sig.inputs[0].name.clone(),
        shape: vec![rows.len() as i64, sig.feature_names.len() as i64],
        data: TensorData::Bytes(values),
    })
}

/// Turns the model's outputs into one prediction per row.
pub fn predictions(
    model: &LoadedModel,
    outputs: &[Tensor],
    rows: usize,
) -> Result<Vec<Prediction>> {
    let sig = &model.signature;
    let missing = || {
        ServerError::Execution(format!(
            "model {:?} declares no probabilities output in its signature, so it cannot be used as a classifier here",
            model.name
        ))
    };
    let name = sig.probabilities_output.as_ref().ok_or_else(missing)?;
    let probs = outputs
        .iter()
        .find(|o| &o.name == name)
        .ok_or_else(missing)?;
    let probs: Vec<f64> = match &probs.data {
        TensorData::F32(v) => v.iter().map(|&p| p as f64).collect(),
        TensorData::F64(v) => v.clone(),
        _ => {
            return Err(ServerError::Execution(format!(
                "output {name:?} is not floating point"
            )));
        }
    };
    if rows == 0 || !probs.len().is_multiple_of(rows) {
        return Err(ServerError::Execution(format!(
            "output {name:?} holds {} values for {rows} rows",
            probs.len()
        )));
    }
    let classes = probs.len() / rows;
    let all_classes: Vec<String> = (0..classes)
        .map(|i| {
            sig.class_labels
                .get(i)
                .cloned()
                .unwrap_or_else(|| i.to_string())
        })
        .collect();
    Ok(probs
        .chunks(classes)
        .map(|row| {
            // First maximum wins, matching argmax in scikit-learn and numpy.
            let (index, confidence) = row.iter().enumerate().fold(
                (0, f64::MIN),
                |best, (i, &p)| if p > best.1 { (i, p) } else { best },
            );
            Prediction {
                predicted_class: all_classes[index].clone(),
                predicted_class_index: index,
                probabilities: all_classes
                    .iter()
                    .cloned()
                    .zip(row.iter().map(|&p| Value::from(p)))
                    .collect(),
                confidence,
                all_classes: all_classes.clone(),
                model_name: model.name.clone(),
                model_version: model.version.clone(),
            }
        })
        .collect())
}
