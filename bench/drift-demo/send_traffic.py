#!/usr/bin/env python3
"""Send iris traffic to a running inference server's /api/v1 predict endpoint.

Rows are resampled from the model version's reference.csv with a little noise; with
--shift, petal_length gets +1.5 and sepal_width x1.3 (the "production drifted" scenario).
Standard library only.

usage: send_traffic.py URL REFERENCE_CSV N [--shift] [--seed S]
"""
import argparse
import csv
import json
import random
import urllib.request

p = argparse.ArgumentParser()
p.add_argument("url", help="e.g. http://127.0.0.1:8080/api/v1/models/iris-classifier/predict")
p.add_argument("reference")
p.add_argument("n", type=int)
p.add_argument("--shift", action="store_true")
p.add_argument("--seed", type=int, default=1)
a = p.parse_args()

features = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
with open(a.reference) as f:
    rows = [[float(r[k]) for k in features] for r in csv.DictReader(f)]
rng = random.Random(a.seed)
sent = 0
while sent < a.n:
    batch = []
    for _ in range(min(25, a.n - sent)):
        x = [v + rng.uniform(-0.05, 0.05) for v in rng.choice(rows)]
        if a.shift:
            x[2] += 1.5
            x[1] *= 1.3
        batch.append(dict(zip(features, x)))
    req = urllib.request.Request(a.url, data=json.dumps(batch).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200, resp.status
    sent += len(batch)
print(f"sent {sent} {'shifted' if a.shift else 'normal'} rows")
