//! Checks a request's tensors against the model's signature before anything reaches the
//! model: names, datatypes, shapes, data lengths and non-finite values. Each error names the
//! tensor and what is wrong with it.

use mooring_registry::{Signature, TensorSpec};

use crate::error::{Result, ServerError};
use crate::tensor::Tensor;

/// Validates `inputs` and returns them in the signature's input order (the order the
/// backend and the batcher rely on).
pub fn validate_inputs(sig: &Signature, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
    let invalid = |m: String| Err(ServerError::InvalidInput(m));
    let expected = || {
        sig.inputs
            .iter()
            .map(|t| format!("{:?}", t.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut slots: Vec<Option<Tensor>> = vec![None; sig.inputs.len()];
    for tensor in inputs {
        let Some(index) = sig.inputs.iter().position(|s| s.name == tensor.name) else {
            return invalid(format!(
                "unexpected input {:?}: the model's inputs are {}",
                tensor.name,
                expected()
            ));
        };
        if slots[index].is_some() {
            return invalid(format!("input {:?} is given twice", tensor.name));
        }
        check_tensor(&sig.inputs[index], &tensor, sig.allow_nan)?;
        slots[index] = Some(tensor);
    }
    let mut ordered = Vec::with_capacity(slots.len());
    for (slot, spec) in slots.into_iter().zip(&sig.inputs) {
        match slot {
            Some(t) => ordered.push(t),
            None => {
                return invalid(format!(
                    "missing input {:?}: the model's inputs are {}",
                    spec.name,
                    expected()
                ));
            }
        }
    }
    // Every input of one request must agree on the batch size, or rows would be mismatched.
    if sig.has_batch_dim() && ordered.windows(2).any(|w| w[0].shape[0] != w[1].shape[0]) {
        return invalid("inputs disagree on the batch size (their first dimension)".into());
    }
    Ok(ordered)
}

fn check_tensor(spec: &TensorSpec, t: &Tensor, allow_nan: bool) -> Result<()> {
    let invalid = |m: String| {
        Err(ServerError::InvalidInput(format!(
            "input {:?}: {m}",
            t.name
        )))
    };
    if t.datatype().as_str() != spec.datatype {
        return invalid(format!(
            "datatype {} does not match the model's {}",
            t.datatype().as_str(),
            spec.datatype
        ));
    }
    if let Some(d) = t.shape.iter().find(|&&d| d < 0) {
        return invalid(format!("shape {:?} has a negative dimension {d}", t.shape));
    }
    let fits = t.shape.len() == spec.shape.len()
        && t.shape
            .iter()
            .zip(&spec.shape)
            .all(|(&got, &want)| want == -1 || got == want);
    if !fits {
        return invalid(format!(
            "shape {:?} does not match the model's shape {:?} (-1 is any size)",
            t.shape, spec.shape
        ));
    }
    let elements = t
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize));
    if elements != Some(t.data.len()) {
        let want = elements.map_or("more than usize::MAX".to_string(), |n| n.to_string());
        return invalid(format!(
            "shape {:?} needs {want} values but the data holds {}",
            t.shape,
            t.data.len()
        ));
    }
    if t.data.is_empty() {
        return invalid(format!("shape {:?} holds no values", t.shape));
    }
    // ONNX Runtime's string tensors hold UTF-8 text without NUL characters.
    if let crate::tensor::TensorData::Bytes(elements) = &t.data
        && let Some(i) = elements
            .iter()
            .position(|b| b.as_str().is_none() || b.0.contains(&0))
    {
        let what = if elements[i].as_str().is_none() {
            "is not valid UTF-8"
        } else {
            "holds a NUL character"
        };
        return invalid(format!("element {i} {what}, and the model takes text"));
    }
    if let Some(i) = t.data.first_non_finite().filter(|_| !allow_nan) {
        return invalid(format!(
            "element {i} is NaN or infinite, which this model does not accept"
        ));
    }
    Ok(())
}

/// Checks requested output names; an empty list means every output.
pub fn validate_outputs(sig: &Signature, requested: &[String]) -> Result<()> {
    for name in requested {
        if !sig.outputs.iter().any(|o| &o.name == name) {
            let known = sig
                .outputs
                .iter()
                .map(|o| format!("{:?}", o.name))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ServerError::InvalidInput(format!(
                "unknown output {name:?} requested: the model's outputs are {known}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tensor::TensorData;

    pub(crate) fn iris_signature() -> Signature {
        Signature::from_json(
            br#"{"inputs":[{"name":"input","datatype":"FP32","shape":[-1,4]}],
                 "outputs":[{"name":"label","datatype":"INT64","shape":[-1]},
                            {"name":"probabilities","datatype":"FP32","shape":[-1,3]}],
                 "feature_names":["sepal_length","sepal_width","petal_length","petal_width"],
                 "class_labels":["setosa","versicolor","virginica"],
                 "probabilities_output":"probabilities"}"#,
        )
        .unwrap()
    }

    fn input(shape: Vec<i64>, data: TensorData) -> Tensor {
        Tensor {
            name: "input".into(),
            shape,
            data,
        }
    }

    fn message(r: Result<Vec<Tensor>>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn a_well_formed_input_passes() {
        let t = input(vec![2, 4], TensorData::F32(vec![1.0; 8]));
        assert_eq!(
            validate_inputs(&iris_signature(), vec![t.clone()]).unwrap(),
            vec![t]
        );
    }

    #[test]
    fn each_kind_of_bad_input_is_named() {
        let sig = iris_signature();
        let m = message(validate_inputs(&sig, vec![]));
        assert!(m.contains("missing input \"input\""), "{m}");
        let extra = Tensor {
            name: "other".into(),
            shape: vec![1],
            data: TensorData::F32(vec![1.0]),
        };
        let m = message(validate_inputs(
            &sig,
            vec![input(vec![1, 4], TensorData::F32(vec![1.0; 4])), extra],
        ));
        assert!(m.contains("unexpected input \"other\""), "{m}");
        let m = message(validate_inputs(
            &sig,
            vec![input(vec![1, 4], TensorData::F64(vec![1.0; 4]))],
        ));
        assert!(
            m.contains("datatype FP64 does not match the model's FP32"),
            "{m}"
        );
        let m = message(validate_inputs(
            &sig,
            vec![input(vec![2, 4], TensorData::F32(vec![1.0; 7]))],
        ));
        assert!(m.contains("needs 8 values but the data holds 7"), "{m}");
        let m = message(validate_inputs(
            &sig,
            vec![input(vec![1, 5], TensorData::F32(vec![1.0; 5]))],
        ));
        assert!(
            m.contains("does not match the model's shape [-1, 4]"),
            "{m}"
        );
        let m = message(validate_inputs(
            &sig,
            vec![input(vec![4], TensorData::F32(vec![1.0; 4]))],
        ));
        assert!(m.contains("does not match the model's shape"), "{m}");
        let m = message(validate_inputs(
            &sig,
            vec![input(
                vec![1, 4],
                TensorData::F32(vec![1.0, f32::NAN, 0.0, 0.0]),
            )],
        ));
        assert!(m.contains("element 1 is NaN or infinite"), "{m}");
        let m = message(validate_inputs(
            &sig,
            vec![input(vec![0, 4], TensorData::F32(vec![]))],
        ));
        assert!(m.contains("holds no values"), "{m}");
        let m = message(validate_inputs(
            &sig,
            vec![input(vec![-2, 4], TensorData::F32(vec![1.0; 8]))],
        ));
        assert!(m.contains("negative dimension"), "{m}");
    }

    #[test]
    fn nan_passes_when_the_signature_allows_it() {
        let mut sig = iris_signature();
        sig.allow_nan = true;
        let t = input(
            vec![1, 4],
            TensorData::F32(vec![f32::INFINITY, 0.0, 0.0, 0.0]),
        );
        assert!(validate_inputs(&sig, vec![t]).is_ok());
    }

    #[test]
    fn unknown_outputs_are_refused() {
        let err = validate_outputs(&iris_signature(), &["nope".into()]).unwrap_err();
        assert!(err.to_string().contains("unknown output \"nope\""), "{err}");
        assert!(validate_outputs(&iris_signature(), &["label".into()]).is_ok());
    }
}
