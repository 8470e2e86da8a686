//! Prediction logging: turns each completed inference into one [`PredictionRecord`] per row
//! and hands them to the non-blocking [`PredictionLogger`] of `mooring-drift`.

use mooring_drift::log::{FeatureValue, Prediction, PredictionLogger, PredictionRecord};
use mooring_registry::Signature;

use crate::infer::{InferenceObserver, InferenceRecord, Protocol};
use crate::tensor::{Tensor, TensorData};

/// Characters of a text feature kept by default (`--prediction-log-max-text-chars`).
pub const DEFAULT_MAX_TEXT_CHARS: usize = 2000;

/// The [`InferenceObserver`] that writes the prediction log.
pub struct PredictionLogObserver {
    logger: PredictionLogger,
    max_text_chars: usize,
}

impl PredictionLogObserver {
    pub fn new(logger: PredictionLogger) -> Self {
        Self {
            logger,
            max_text_chars: DEFAULT_MAX_TEXT_CHARS,
        }
    }

    pub fn with_max_text_chars(mut self, max: usize) -> Self {
        self.max_text_chars = max;
        self
    }
}

impl InferenceObserver for PredictionLogObserver {
    fn observe(&self, record: InferenceRecord) {
        // `log` never waits: a full queue drops the record and counts it.
        for row in records_with(&record, self.max_text_chars) {
            self.logger.log(row);
        }
    }
}

/// The protocol label written to the log (the drift check groups nothing by it, people do).
fn protocol_label(p: Protocol) -> &'static str {
    match p {
        Protocol::Rest => "rest_v2",
        Protocol::Grpc => "grpc_v2",
        Protocol::ApiV1 => "api_v1",
        Protocol::Batch => "batch",
    }
}

/// One record per row of the batch: features named from the signature (raw input tensors
/// when it names none), and the prediction as class index, label and probabilities for
/// classifiers, raw outputs otherwise.
pub fn records(r: &InferenceRecord) -> Vec<PredictionRecord> {
    records_with(r, DEFAULT_MAX_TEXT_CHARS)
}

/// [`records`], keeping at most `max_text_chars` characters of each text feature.
pub fn records_with(r: &InferenceRecord, max_text_chars: usize) -> Vec<PredictionRecord> {
    let sig = &r.served.signature;
    let rows = if sig.has_batch_dim() {
        r.inputs.first().map_or(0, Tensor::rows)
    } else {
        1
    };
    let inputs: Vec<(&Tensor, Vec<f64>)> = r.inputs.iter().map(|t| (t, t.data.to_f64())).collect();
    let outputs: Vec<(&Tensor, Vec<f64>)> =
        r.outputs.iter().map(|t| (t, t.data.to_f64())).collect();
    (0..rows)
        .map(|i| {
            let mut rec = PredictionRecord::now(
                &r.model,
                &r.version,
                &r.request_id,
                protocol_label(r.protocol),
            );
            match inputs.as_slice() {
                [(t, _)]
                    if !sig.feature_names.is_empty() && matches!(t.data, TensorData::Bytes(_)) =>
                {
                    rec.features = text_features(t, &sig.feature_names, i, rows, max_text_chars);
                }
                [(t, values)] if !sig.feature_names.is_empty() => {
                    rec = rec.with_features(&sig.feature_names, row_of(t, values, i, rows));
                }
                _ => {
                    rec.raw_inputs = Some(
                        inputs
                            .iter()
                            .map(|(t, v)| (t.name.clone(), row_of(t, v, i, rows).to_vec()))
                            .collect(),
                    );
                }
            }
            rec.prediction = prediction(sig, &outputs, i, rows);
            rec
        })
        .collect()
}

/// The text features of row `i` of a BYTES tensor, each cut to `max_chars` characters.
fn text_features(
    t: &Tensor,
    names: &[String],
    i: usize,
    rows: usize,
    max_chars: usize,
) -> std::collections::BTreeMap<String, FeatureValue> {
    let TensorData::Bytes(elements) = &t.data else {
        return Default::default();
    };
    let w = t.row_len().max(1);
    let start = if rows <= 1 || t.rows() != rows {
        0
    } else {
        i * w
    };
    names
        .iter()
        .zip(elements.iter().skip(start).take(w))
        .map(|(name, b)| {
            let text = String::from_utf8_lossy(&b.0);
            (
                name.clone(),
                FeatureValue::Text(text.chars().take(max_chars).collect()),
            )
        })
        .collect()
}

/// Row `i` of a tensor with `rows` rows (the whole tensor when it is not batched).
fn row_of<'a>(t: &Tensor, values: &'a [f64], i: usize, rows: usize) -> &'a [f64] {
    if rows <= 1 || t.rows() != rows {
        return values;
    }
    let w = t.row_len();
    values.get(i * w..(i + 1) * w).unwrap_or(&[])
}

fn prediction(
    sig: &Signature,
    outputs: &[(&Tensor, Vec<f64>)],
    i: usize,
    rows: usize,
) -> Prediction {
    let probabilities = sig.probabilities_output.as_ref().and_then(|name| {
        outputs
            .iter()
            .find(|(t, _)| &t.name == name)
            .map(|(t, v)| row_of(t, v, i, rows).to_vec())
    });
    match probabilities {
        Some(p) if !p.is_empty() => {
            // First maximum wins, as in /api/v1 (and numpy's argmax).
            let class_index = p
                .iter()
                .enumerate()
                .fold(None, |best: Option<(usize, f64)>, (k, &x)| match best {
                    Some((_, b)) if x <= b => best,
                    _ => Some((k, x)),
                })
                .map(|(k, _)| k);
            Prediction {
                class_index: class_index.map(|k| k as i64),
                label: class_index.and_then(|k| sig.class_labels.get(k).cloned()),
                probabilities: Some(p),
                outputs: None,
            }
        }
        _ => Prediction {
            outputs: Some(
                outputs
                    .iter()
                    .map(|(t, v)| (t.name.clone(), row_of(t, v, i, rows).to_vec()))
                    .collect(),
            ),
            ..Prediction::default()
        },
    }
}
