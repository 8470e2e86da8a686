use serde::{Deserialize, Serialize};

/// What a model takes and returns: read from `signature.json` in the version's artifacts.
///
/// ```json
/// {"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
///  "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]},
///              {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}],
///  "feature_names": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
///  "class_labels": ["setosa", "versicolor", "virginica"],
///  "probabilities_output": "probabilities",
///  "allow_nan": false}
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Names of the columns of a tabular model's single 2-D input, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feature_names: Vec<String>,
    /// Class labels of a classifier, by class index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_labels: Vec<String>,
    /// The output holding class probabilities (`[batch, classes]`), for classifiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probabilities_output: Option<String>,
    /// Whether NaN/Inf inputs are meaningful to the model; rejected otherwise.
    #[serde(default)]
    pub allow_nan: bool,
}

/// One named tensor: Open Inference Protocol datatype (`FP32`, `INT64`, …) and shape, with
/// `-1` for a variable dimension (the first one is the batch dimension when it is `-1`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

impl Signature {
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let sig: Signature = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        sig.validate()?;
        Ok(sig)
    }

    /// Internal consistency: at least one input and output, unique names, feature names
    /// matching a 2-D input's width, the probabilities output naming a real output.
    pub fn validate(&self) -> Result<(), String> {
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return Err("a signature needs at least one input and one output".into());
        }
        let mut names = std::collections::HashSet::new();
        for t in self.inputs.iter().chain(&self.outputs) {
            if !names.insert(t.name.as_str()) {
                return Err(format!("tensor name {:?} appears twice", t.name));
            }
            if t.shape.iter().any(|&d| d < -1 || d == 0) {
                return Err(format!(
                    "tensor {:?} has an invalid shape {:?}",
                    t.name, t.shape
                ));
            }
        }
        if !self.feature_names.is_empty() {
            let width = match self.inputs.as_slice() {
                [only] if only.shape.len() == 2 => only.shape[1],
                _ => return Err("feature_names needs exactly one 2-D input".into()),
            };
            if width != -1 && width as usize != self.feature_names.len() {
                return Err(format!(
                    "{} feature names for an input {} wide",
                    self.feature_names.len(),
                    width
                ));
            }
        }
        if let Some(p) = &self.probabilities_output
            && !self.outputs.iter().any(|o| &o.name == p)
        {
            return Err(format!("probabilities_output {p:?} is not an output"));
        }
        Ok(())
    }

    /// The batch dimension is the first one when every input's first dimension is variable.
    pub fn has_batch_dim(&self) -> bool {
        self.inputs.iter().all(|t| t.shape.first() == Some(&-1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iris() -> Signature {
        Signature::from_json(include_bytes!(
            "../../models/iris-classifier/1/signature.json"
        ))
        .unwrap()
    }

    #[test]
    fn bundled_iris_signature_is_valid() {
        let sig = iris();
        assert_eq!(sig.inputs[0].name, "input");
        assert_eq!(sig.feature_names.len(), 4);
        assert_eq!(sig.class_labels, ["setosa", "versicolor", "virginica"]);
        assert!(sig.has_batch_dim());
        assert!(!sig.allow_nan);
    }

    #[test]
    fn rejects_inconsistent_signatures() {
        type Mutation = fn(&mut Signature);
        let cases: Vec<(Mutation, &str)> = vec![
            (|s| s.inputs.clear(), "at least one input"),
            (|s| s.outputs[1].name = "label".into(), "appears twice"),
            (|s| s.inputs[0].shape = vec![-1, 0], "invalid shape"),
            (|s| s.inputs[0].shape = vec![-1, -2], "invalid shape"),
            (
                |s| s.feature_names.pop().map(drop).unwrap(),
                "3 feature names for an input 4 wide",
            ),
            (|s| s.inputs[0].shape = vec![-1], "exactly one 2-D input"),
            (
                |s| s.probabilities_output = Some("proba".into()),
                "\"proba\" is not an output",
            ),
        ];
        for (mutate, expected) in cases {
            let mut sig = iris();
            mutate(&mut sig);
            let err = sig.validate().unwrap_err();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

    #[test]
    fn malformed_json_is_an_error() {
        assert!(Signature::from_json(b"{").is_err());
        assert!(
            Signature::from_json(br#"{"inputs": []}"#)
                .unwrap_err()
                .contains("outputs")
        );
    }
}
