#!/usr/bin/env python3
"""Train the bundled models (iris and spam classifiers) and write them as a Mooring local registry.

Writes, under the directory of this script (or --out):

    iris-classifier/aliases.json          {"production": "1", "challenger": "2"}
    iris-classifier/1/                    logistic regression
    iris-classifier/2/                    random forest
        model.onnx       input `input` FP32 [-1, 4]; outputs `label` INT64 [-1],
                         `probabilities` FP32 [-1, 3] (plain tensors: no ZipMap)
        signature.json   the format of registry/src/signature.rs
        reference.csv    the training rows (feature columns + `target`), for drift checks
        version.json     description, creation time, metrics and parameters
        sha256sums       `sha256sum -c` compatible, one line per file above

    spam-classifier/aliases.json          {"production": "1", "challenger": "2"}
    spam-classifier/1/                    TF-IDF of words + logistic regression
    spam-classifier/2/                    TF-IDF of words and word pairs + logistic regression
        model.onnx       input `text` BYTES (a string tensor) [-1, 1]; outputs `label` INT64
                         [-1] (0 ham, 1 spam), `probabilities` FP32 [-1, 2]
        reference.csv    the training messages (`text` + `target`)
        (signature.json, version.json, sha256sums as for iris)

The spam classifier learns from spam-corpus.tsv beside this script: short messages written
for this repository (label, tab, text), so it is licence-clean.

Needs scikit-learn, skl2onnx, onnx and onnxruntime (see models/README.md). Seeds are
fixed, so retraining gives the same models (the creation time in version.json and
ONNX producer metadata aside).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

SEED = 42
MODEL_NAME = "iris-classifier"
FEATURE_NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CLASS_LABELS = ["setosa", "versicolor", "virginica"]
# Opsets every ONNX Runtime from 1.16 on executes; pinned so the file does not change
# with the installed skl2onnx's defaults.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


def signature() -> dict:
    return {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
        ],
        "feature_names": FEATURE_NAMES,
        "class_labels": CLASS_LABELS,
        "probabilities_output": "probabilities",
        "allow_nan": False,
    }


def export_onnx(model, path: Path) -> None:
    onx = to_onnx(
        model,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={id(model): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    names = [o.name for o in onx.graph.output]
    if names != ["label", "probabilities"]:
        raise SystemExit(f"unexpected ONNX outputs {names}")
    path.write_bytes(onx.SerializeToString())


def check_onnx_matches(model, path: Path, x: np.ndarray) -> None:
    """The exported graph must predict what scikit-learn predicts."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    label, proba = sess.run(["label", "probabilities"], {"input": x})
    if not np.array_equal(label, model.predict(x)):
        raise SystemExit(f"{path}: ONNX labels differ from scikit-learn")
    if not np.allclose(proba, model.predict_proba(x), atol=1e-4):
        raise SystemExit(f"{path}: ONNX probabilities differ from scikit-learn")


def write_reference(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(FEATURE_NAMES + ["target"])
        for row, target in zip(x, y):
            w.writerow([f"{v:g}" for v in row] + [int(target)])


def write_sha256sums(version_dir: Path) -> None:
    lines = []
    for f in sorted(p for p in version_dir.iterdir() if p.is_file() and p.name != "sha256sums"):
        lines.append(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}\n")
    (version_dir / "sha256sums").write_text("".join(lines))


def write_version(out: Path, version: str, model, description: str, params: dict, data) -> None:
    x_train, x_test, y_train, y_test = data
    d = out / MODEL_NAME / version
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    model.fit(x_train, y_train)
    export_onnx(model, d / "model.onnx")
    check_onnx_matches(model, d / "model.onnx", x_test)
    (d / "signature.json").write_text(json.dumps(signature(), indent=2) + "\n")
    write_reference(d / "reference.csv", x_train, y_train)
    meta = {
        "description": description,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "metrics": {
            "train_accuracy": round(float(model.score(x_train, y_train)), 4),
            "test_accuracy": round(float(model.score(x_test, y_test)), 4),
        },
        "params": params,
    }
    (d / "version.json").write_text(json.dumps(meta, indent=2) + "\n")
    write_sha256sums(d)
    print(f"wrote {d}: test accuracy {meta['metrics']['test_accuracy']}")


SPAM_MODEL = "spam-classifier"
SPAM_LABELS = ["ham", "spam"]
# Lower-case words of two or more letters/digits: what the ONNX tokenizer reproduces exactly.
TOKEN_PATTERN = r"\b\w\w+\b"


def spam_signature() -> dict:
    return {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1, 1]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
        ],
        "feature_names": ["text"],
        "class_labels": SPAM_LABELS,
        "probabilities_output": "probabilities",
        "allow_nan": False,
    }


def read_corpus(path: Path) -> tuple[list[str], np.ndarray]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    texts = [r["text"] for r in rows]
    y = np.array([SPAM_LABELS.index(r["label"]) for r in rows], dtype=np.int64)
    return texts, y


def write_spam_version(out: Path, version: str, ngrams: tuple[int, int], c: float, data) -> None:
    x_train, x_test, y_train, y_test = data
    d = out / SPAM_MODEL / version
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    params = {"algorithm": "TfidfVectorizer+LogisticRegression", "ngram_range": list(ngrams), "C": c,
              "token_pattern": TOKEN_PATTERN, "random_state": SEED}
    model = Pipeline([
        ("tfidf", TfidfVectorizer(lowercase=True, ngram_range=ngrams, token_pattern=TOKEN_PATTERN)),
        ("lr", LogisticRegression(C=c, max_iter=1000, random_state=SEED)),
    ])
    model.fit(x_train, y_train)
    onx = to_onnx(
        model,
        initial_types=[("text", StringTensorType([None, 1]))],
        options={id(model.steps[-1][1]): {"zipmap": False},
                 id(model.steps[0][1]): {"tokenexp": TOKEN_PATTERN}},
        target_opset=TARGET_OPSET,
    )
    names = [o.name for o in onx.graph.output]
    if names != ["label", "probabilities"]:
        raise SystemExit(f"unexpected ONNX outputs {names}")
    # Lower-casing asks for the en_US.UTF-8 locale, which slim images lack (ONNX Runtime then
    # refuses the graph): C.UTF-8 is built into glibc.
    for node in onx.graph.node:
        if node.op_type == "StringNormalizer":
            for attr in node.attribute:
                if attr.name == "locale":
                    attr.s = b"C.UTF-8"
            if not any(a.name == "locale" for a in node.attribute):
                node.attribute.append(onnx.helper.make_attribute("locale", "C.UTF-8"))
    (d / "model.onnx").write_bytes(onx.SerializeToString())
    sess = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
    label, proba = sess.run(["label", "probabilities"], {"text": np.array(x_test, dtype=object).reshape(-1, 1)})
    if not np.array_equal(label, model.predict(x_test)):
        raise SystemExit(f"{d}: ONNX labels differ from scikit-learn")
    if not np.allclose(proba, model.predict_proba(x_test), atol=1e-4):
        raise SystemExit(f"{d}: ONNX probabilities differ from scikit-learn")
    (d / "signature.json").write_text(json.dumps(spam_signature(), indent=2) + "\n")
    with (d / "reference.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["text", "target"])
        for text, target in zip(x_train, y_train):
            w.writerow([text, int(target)])
    meta = {
        "description": f"TF-IDF ({ngrams[0]}-{ngrams[1]}-grams of words) and logistic regression on the bundled spam corpus",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "metrics": {
            "train_accuracy": round(float(model.score(x_train, y_train)), 4),
            "test_accuracy": round(float(model.score(x_test, y_test)), 4),
        },
        "params": params,
    }
    (d / "version.json").write_text(json.dumps(meta, indent=2) + "\n")
    write_sha256sums(d)
    print(f"wrote {d}: test accuracy {meta['metrics']['test_accuracy']}")


def train_spam(out: Path) -> None:
    texts, y = read_corpus(Path(__file__).resolve().parent / "spam-corpus.tsv")
    data = train_test_split(texts, y, test_size=0.2, random_state=SEED, stratify=y)
    write_spam_version(out, "1", (1, 1), 1.0, data)
    write_spam_version(out, "2", (1, 2), 4.0, data)
    aliases = out / SPAM_MODEL / "aliases.json"
    aliases.write_text(json.dumps({"production": "1", "challenger": "2"}, indent=2) + "\n")
    print(f"wrote {aliases}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="registry directory")
    args = ap.parse_args()

    iris = load_iris()  # shipped inside scikit-learn: no download
    x = iris.data.astype(np.float32)
    y = iris.target.astype(np.int64)
    data = train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)

    lr_params = {"max_iter": 1000, "C": 1.0, "random_state": SEED}
    write_version(args.out, "1", LogisticRegression(**lr_params),
                  "Logistic regression on the iris data set", {"algorithm": "LogisticRegression", **lr_params}, data)
    rf_params = {"n_estimators": 50, "max_depth": 5, "random_state": SEED}
    write_version(args.out, "2", RandomForestClassifier(**rf_params),
                  "Random forest on the iris data set", {"algorithm": "RandomForestClassifier", **rf_params}, data)

    aliases = args.out / MODEL_NAME / "aliases.json"
    aliases.write_text(json.dumps({"production": "1", "challenger": "2"}, indent=2) + "\n")
    print(f"wrote {aliases}")

    train_spam(args.out)


if __name__ == "__main__":
    main()
