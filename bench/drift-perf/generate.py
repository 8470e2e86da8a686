#!/usr/bin/env python3
"""Data for the drift benchmark: a 10,000-row reference and 1,000,000 logged predictions
(4 numeric features, two of them shifted), written as the prediction log's JSON Lines and
as CSV for Evidently.

usage: generate.py OUT_DIR [ROWS]
"""
import json
import os
import sys
import time

import numpy as np

out = sys.argv[1]
rows = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
rng = np.random.default_rng(5)
os.makedirs(os.path.join(out, "logs"), exist_ok=True)
cols = ["f0", "f1", "f2", "f3"]
ref = np.column_stack([rng.normal(0, 1, 10_000), rng.normal(5, 2, 10_000), rng.exponential(1, 10_000), rng.uniform(0, 10, 10_000)])
cur = np.column_stack([rng.normal(0, 1, rows) + 1.5, rng.normal(5, 2, rows) * 1.3, rng.exponential(1, rows), rng.uniform(0, 10, rows)])
header = ",".join(cols)
np.savetxt(os.path.join(out, "reference.csv"), ref, delimiter=",", header=header, comments="", fmt="%.17g")
np.savetxt(os.path.join(out, "current.csv"), cur, delimiter=",", header=header, comments="", fmt="%.17g")
ts = int(time.time() * 1000)
with open(os.path.join(out, "logs", "predictions-bench-0-000000.jsonl"), "w") as f:
    for i, row in enumerate(cur):
        rec = {"ts_ms": ts, "model": "perf", "version": "1", "request_id": f"r{i}", "protocol": "api_v1",
               "features": dict(zip(cols, map(float, row))), "prediction": {"class_index": int(row[0] > 1.5)}}
        f.write(json.dumps(rec) + "\n")
print(f"wrote {rows} rows to {out}")
