"""Conformance check for text (BYTES) tensors: drive a running Mooring inference server
serving the bundled spam classifier with the unmodified `tritonclient`, over HTTP (JSON and
binary tensors) and gRPC, with object arrays of bytes, non-ASCII text and empty strings.

usage: tritonclient_text_check.py HTTP_HOST:PORT GRPC_HOST:PORT MODEL REFERENCE_CSV

The served model must classify its reference messages as accurately as it was trained to,
HTTP and gRPC must agree exactly, and a message that is not UTF-8 must be refused with
HTTP 400 / INVALID_ARGUMENT naming the input and the element.
Exits non-zero, with the reason, on the first failed check.
"""

import csv
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def load_reference(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    texts = [r["text"] for r in rows]
    y = np.array([int(r["target"]) for r in rows], dtype=np.int64)
    return texts, y


def as_tensor(texts):
    return np.array([t.encode("utf-8") for t in texts], dtype=np.object_).reshape(-1, 1)


def infer(client, module, model, x, binary):
    tensor = module.InferInput("text", list(x.shape), "BYTES")
    if module is httpclient:
        tensor.set_data_from_numpy(x, binary_data=binary)
        outputs = [module.InferRequestedOutput(n, binary_data=binary) for n in ("label", "probabilities")]
    else:
        tensor.set_data_from_numpy(x)
        outputs = [module.InferRequestedOutput(n) for n in ("label", "probabilities")]
    result = client.infer(model, [tensor], outputs=outputs)
    return result.as_numpy("label"), result.as_numpy("probabilities")


def check_refused(client, module, model, binary):
    x = np.array([b"fine", b"\xff\xfe not text"], dtype=np.object_).reshape(-1, 1)
    tensor = module.InferInput("text", list(x.shape), "BYTES")
    if module is httpclient:
        tensor.set_data_from_numpy(x, binary_data=binary)
    else:
        tensor.set_data_from_numpy(x)
    try:
        client.infer(model, [tensor])
    except InferenceServerException as e:
        text = str(e)
        check('"text"' in text and "element 1" in text and "UTF-8" in text, f"refusal message {text!r}")
        status = e.status()
        check(status in ("400", "StatusCode.INVALID_ARGUMENT", 400), f"refusal status {status!r}")
        return
    check(False, "a message that is not UTF-8 was accepted")


def main():
    http_url, grpc_url, model, reference = sys.argv[1:5]
    texts, y = load_reference(reference)
    http = httpclient.InferenceServerClient(url=http_url)
    grpc = grpcclient.InferenceServerClient(url=grpc_url)
    for client, grpc_side in ((http, False), (grpc, True)):
        meta = client.get_model_metadata(model)
        inputs = [(t.name, t.datatype) for t in meta.inputs] if grpc_side else [(t["name"], t["datatype"]) for t in meta["inputs"]]
        check(inputs == [("text", "BYTES")], f"model inputs {inputs}")

    x = as_tensor(texts)
    answers = {}
    for what, client, module, binary in (
        ("http json", http, httpclient, False),
        ("http binary", http, httpclient, True),
        ("grpc", grpc, grpcclient, False),
    ):
        label, probs = infer(client, module, model, x, binary)
        check(label.shape == (len(texts),), f"{what}: label shape {label.shape}")
        check(probs.shape == (len(texts), 2), f"{what}: probabilities shape {probs.shape}")
        accuracy = float((label == y).mean())
        check(accuracy >= 0.95, f"{what}: accuracy {accuracy:.3f} below 0.95")
        answers[what] = (label, probs)

    base_label, base_probs = answers["http json"]
    for what, (label, probs) in answers.items():
        check(np.array_equal(label, base_label), f"{what} and http json disagree on labels")
        check(np.allclose(probs, base_probs, atol=1e-6), f"{what} and http json disagree on probabilities")

    # Non-ASCII text, an empty message and a plain one, through every path.
    odd = as_tensor(["Très bien, à demain 😀", "", "URGENT: you have won a £1000 gift card. Click http://bit.ly/claim-now"])
    for what, client, module, binary in (
        ("http json", http, httpclient, False),
        ("http binary", http, httpclient, True),
        ("grpc", grpc, grpcclient, False),
    ):
        label, probs = infer(client, module, model, odd, binary)
        check(label.shape == (3,) and probs.shape == (3, 2), f"{what}: shapes {label.shape} {probs.shape}")
        check(int(label[2]) == 1, f"{what}: the prize message is not spam: {probs[2]}")

    check_refused(http, httpclient, model, True)
    check_refused(grpc, grpcclient, model, False)
    print("tritonclient text conformance ok")


if __name__ == "__main__":
    main()
