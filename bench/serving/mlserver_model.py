"""Write the MLServer model directory for the benchmark: the bundled iris version 1
(logistic regression, same parameters and seed as models/train.py) refitted on its own
training rows (models/iris-classifier/1/reference.csv), saved with joblib."""
import csv
import json
import sys
from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

root, out = Path(sys.argv[1]), Path(sys.argv[2])
version = json.loads((root / "version.json").read_text())
rows = list(csv.DictReader(open(root / "reference.csv")))
features = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
x = np.array([[float(r[f]) for f in features] for r in rows], dtype=np.float32)
y = np.array([int(r["target"]) for r in rows])
params = {k: v for k, v in version["params"].items() if k != "algorithm"}
model = LogisticRegression(**params).fit(x, y)
out.mkdir(parents=True, exist_ok=True)
joblib.dump(model, out / "model.joblib")
(out / "model-settings.json").write_text(json.dumps({
    "name": "iris-classifier",
    "implementation": "mlserver_sklearn.SKLearnModel",
    "parameters": {"uri": "./model.joblib", "version": "1"},
}))
