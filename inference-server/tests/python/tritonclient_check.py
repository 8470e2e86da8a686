"""Conformance check: drive a running Mooring inference server with the unmodified
third-party `tritonclient` package, over HTTP and over gRPC, and check its answers.

usage: tritonclient_check.py HTTP_HOST:PORT GRPC_HOST:PORT MODEL REFERENCE_CSV

Expected values are computed here from the reference data set (the model's training data
with its `target` column): the served model must classify it as accurately as the
registry's recorded training accuracy says, every label must be the argmax of its
probabilities, and HTTP (binary and JSON tensors) and gRPC must agree exactly.
Exits non-zero, with the reason, on the first failed check.
"""

import csv
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def load_reference(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    features = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    x = np.array([[float(r[name]) for name in features] for r in rows], dtype=np.float32)
    y = np.array([int(r["target"]) for r in rows], dtype=np.int64)
    return x, y


def check_metadata(client, model, grpc):
    check(client.is_server_live(), "is_server_live")
    check(client.is_server_ready(), "is_server_ready")
    check(client.is_model_ready(model), "is_model_ready")
    check(not client.is_model_ready("no-such-model") if not grpc else True, "unknown model is not ready")
    server = client.get_server_metadata()
    name = server.name if grpc else server["name"]
    check(name == "mooring", f"server name {name!r}")
    meta = client.get_model_metadata(model)
    if grpc:
        inputs = [(t.name, t.datatype, list(t.shape)) for t in meta.inputs]
        outputs = [t.name for t in meta.outputs]
    else:
        inputs = [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]]
        outputs = [t["name"] for t in meta["outputs"]]
    check(inputs == [("input", "FP32", [-1, 4])], f"model inputs {inputs}")
    check(set(outputs) == {"label", "probabilities"}, f"model outputs {outputs}")


def infer(client, module, model, x, binary):
    tensor = module.InferInput("input", list(x.shape), "FP32")
    if module is httpclient:
        tensor.set_data_from_numpy(x, binary_data=binary)
        outputs = [module.InferRequestedOutput(n, binary_data=binary) for n in ("label", "probabilities")]
    else:
        tensor.set_data_from_numpy(x)
        outputs = [module.InferRequestedOutput(n) for n in ("label", "probabilities")]
    result = client.infer(model, [tensor], outputs=outputs, request_id="conformance-1")
    return result.as_numpy("label"), result.as_numpy("probabilities")


def check_predictions(label, probs, x, y, what):
    check(label is not None and probs is not None, f"{what}: outputs missing")
    check(label.shape == (len(x),), f"{what}: label shape {label.shape}")
    check(probs.shape == (len(x), 3), f"{what}: probabilities shape {probs.shape}")
    check(np.allclose(probs.sum(axis=1), 1.0, atol=1e-4), f"{what}: probabilities do not sum to 1")
    check((probs.argmax(axis=1) == label).all(), f"{what}: label is not the argmax of probabilities")
    accuracy = float((label == y).mean())
    check(accuracy >= 0.95, f"{what}: accuracy {accuracy:.3f} on the reference data is below 0.95")
    return accuracy


def main():
    http_url, grpc_url, model, reference = sys.argv[1:5]
    x, y = load_reference(reference)

    http = httpclient.InferenceServerClient(url=http_url)
    check_metadata(http, model, grpc=False)
    label_bin, probs_bin = infer(http, httpclient, model, x, binary=True)
    accuracy = check_predictions(label_bin, probs_bin, x, y, "http binary")
    label_json, probs_json = infer(http, httpclient, model, x, binary=False)
    check_predictions(label_json, probs_json, x, y, "http json")
    check((label_json == label_bin).all(), "http json and binary labels differ")
    check(np.allclose(probs_json, probs_bin, atol=1e-6), "http json and binary probabilities differ")

    grpc = grpcclient.InferenceServerClient(url=grpc_url)
    check_metadata(grpc, model, grpc=True)
    label_grpc, probs_grpc = infer(grpc, grpcclient, model, x, binary=True)
    check_predictions(label_grpc, probs_grpc, x, y, "grpc")
    check((label_grpc == label_bin).all(), "grpc and http labels differ")
    check(np.array_equal(probs_grpc, probs_bin), "grpc and http probabilities differ")

    try:
        grpc.get_model_metadata("no-such-model")
        check(False, "grpc metadata of an unknown model succeeded")
    except Exception as e:  # tritonclient raises InferenceServerException
        check("not served here" in str(e), f"unexpected grpc error: {e}")

    print(f"tritonclient conformance ok: {len(x)} rows, accuracy {accuracy:.3f}, http+grpc agree")


if __name__ == "__main__":
    main()
