//! `batch`: offline inference over a CSV or JSONL file of named-feature rows. Writes one JSON
//! line per input row — the prediction, or the error with the row's line number — so bad
//! rows are reported, never silently dropped. A progress bar shows on a terminal only.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value, json};

use crate::config::BatchArgs;
use crate::infer::{InferRequest, LoadedModel, Protocol, ServerState};
use crate::metrics::Metrics;
use crate::predict::{predictions, rows_to_input};
use crate::serve::{ServeError, load_model, open_registry};

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Load(#[from] ServeError),
    #[error("cannot read or write {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("input {0} must end in .csv or .jsonl")]
    UnknownFormat(PathBuf),
}

/// What a run did, printed at the end.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub rows: usize,
    pub predicted: usize,
    pub failed: usize,
}

/// One input row: its 1-based line number in the file and its features (or why it could not
/// be read).
type Row = (usize, Result<Map<String, Value>, String>);

/// Reads the rows of `path`. CSV cells are numbers, or text when `text` is set (the model
/// takes strings, e.g. a `text` column for the spam classifier).
pub(crate) fn read_rows(path: &Path, text: bool) -> Result<Vec<Row>, BatchError> {
    let io = |source| BatchError::Io {
        path: path.to_path_buf(),
        source,
    };
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "jsonl" | "ndjson" => {
            let reader = BufReader::new(File::open(path).map_err(io)?);
            let mut rows = Vec::new();
            for (i, line) in reader.lines().enumerate() {
                let line = line.map_err(io)?;
                if line.trim().is_empty() {
                    continue;
                }
                let row = match serde_json::from_str::<Value>(&line) {
                    Ok(Value::Object(m)) => Ok(m),
                    Ok(_) => Err("not a JSON object of features".to_string()),
                    Err(e) => Err(format!("malformed JSON: {e}")),
                };
                rows.push((i + 1, row));
            }
            Ok(rows)
        }
        "csv" => {
            let mut reader = csv::ReaderBuilder::new()
                .flexible(true)
                .from_path(path)
                .map_err(|e| BatchError::Format {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
            let headers = reader
                .headers()
                .map_err(|e| BatchError::Format {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?
                .clone();
            let mut rows = Vec::new();
            for (i, record) in reader.records().enumerate() {
                // Line 1 is the header.
                let line = i + 2;
                let row = record.map_err(|e| e.to_string()).and_then(|r| {
                    if r.len() != headers.len() {
                        return Err(format!(
                            "{} fields, the header has {}",
                            r.len(),
                            headers.len()
                        ));
                    }
                    headers
                        .iter()
                        .zip(r.iter())
                        .map(|(h, v)| {
                            if text {
                                return Ok((h.to_string(), Value::from(v)));
                            }
                            let number: f64 = v
                                .trim()
                                .parse()
                                .map_err(|_| format!("column {h:?}: {v:?} is not a number"))?;
                            Ok((h.to_string(), Value::from(number)))
                        })
                        .collect()
                });
                rows.push((line, row));
            }
            Ok(rows)
        }
        _ => Err(BatchError::UnknownFormat(path.to_path_buf())),
    }
}

/// Drops the columns the model does not take (a CSV often carries the label too), once
/// for the whole file, and says so.
fn keep_features(rows: &mut [Row], model: &LoadedModel) {
    let features = &model.signature.feature_names;
    let mut dropped = std::collections::BTreeSet::new();
    for (_, row) in rows.iter_mut() {
        if let Ok(map) = row {
            map.retain(|k, _| {
                let keep = features.contains(k);
                if !keep {
                    dropped.insert(k.clone());
                }
                keep
            });
        }
    }
    if !dropped.is_empty() {
        tracing::warn!(columns = ?dropped, "ignoring columns that are not features of the model");
    }
}

pub async fn run(args: BatchArgs) -> Result<Summary, BatchError> {
    let registry = open_registry(&args.source)?;
    let metrics = Metrics::new();
    let model = load_model(
        registry.as_ref(),
        &args.model,
        &args.source.cache_dir,
        &Default::default(),
        &metrics,
    )
    .await?;
    let text = model
        .signature
        .inputs
        .first()
        .is_some_and(|i| i.datatype == "BYTES");
    let mut rows = read_rows(&args.input, text)?;
    keep_features(&mut rows, &model);
    let state = Arc::new(ServerState::new(vec![model], metrics, usize::MAX));
    let out_io = |source| BatchError::Io {
        path: args.output.clone(),
        source,
    };
    let mut out = BufWriter::new(File::create(&args.output).map_err(out_io)?);

    let progress = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(rows.len() as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} eta {eta}")
            .expect("valid template"),
    );

    let mut summary = Summary {
        rows: rows.len(),
        ..Default::default()
    };
    for chunk in rows.chunks(args.chunk_rows as usize) {
        for (line, result) in predict_chunk(&state, chunk).await {
            let record = match result {
                Ok(prediction) => {
                    summary.predicted += 1;
                    json!({"line": line, "prediction": prediction})
                }
                Err(error) => {
                    summary.failed += 1;
                    tracing::warn!(line, %error, "bad row");
                    json!({"line": line, "error": error})
                }
            };
            serde_json::to_writer(&mut out, &record).map_err(|e| out_io(e.into()))?;
            out.write_all(b"\n").map_err(out_io)?;
        }
        progress.inc(chunk.len() as u64);
    }
    out.flush().map_err(out_io)?;
    progress.finish_and_clear();
    Ok(summary)
}

/// Predicts a chunk in one model call; when the call fails (one bad row fails it), predicts
/// row by row so each row gets its own answer.
async fn predict_chunk(state: &ServerState, chunk: &[Row]) -> Vec<(usize, Result<Value, String>)> {
    let model = state.models().next().expect("one model").clone();
    let good: Vec<&Map<String, Value>> =
        chunk.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
    if good.len() == chunk.len()
        && let Ok(values) =
            predict_rows(state, &model, &good, &|i| format!("line {}", chunk[i].0)).await
    {
        return chunk
            .iter()
            .map(|(line, _)| *line)
            .zip(values.into_iter().map(Ok))
            .collect();
    }
    let mut answers = Vec::with_capacity(chunk.len());
    for (line, row) in chunk {
        let answer = match row {
            Err(e) => Err(e.clone()),
            Ok(map) => predict_rows(state, &model, &[map], &|_| "row".to_string())
                .await
                .map(|mut v| v.remove(0)),
        };
        answers.push((*line, answer));
    }
    answers
}

async fn predict_rows(
    state: &ServerState,
    model: &LoadedModel,
    rows: &[&Map<String, Value>],
    names: &dyn Fn(usize) -> String,
) -> Result<Vec<Value>, String> {
    let input = rows_to_input(model, rows, names).map_err(|e| e.to_string())?;
    let request = InferRequest {
        model: model.name.clone(),
        version: None,
        id: None,
        inputs: vec![input],
        outputs: vec![],
    };
    let response = state
        .infer(request, Protocol::Batch)
        .await
        .map_err(|e| e.to_string())?;
    let predicted = predictions(model, &response.outputs, rows.len()).map_err(|e| e.to_string())?;
    Ok(predicted
        .into_iter()
        .map(|p| serde_json::to_value(p).expect("serializable"))
        .collect())
}
