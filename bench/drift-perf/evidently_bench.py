#!/usr/bin/env python3
"""Evidently's data-drift preset on the benchmark data, timed without the CSV loading.

usage: evidently_bench.py OUT_DIR   (after generate.py)
"""
import sys
import time

import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

out = sys.argv[1]
t = time.perf_counter()
ref = pd.read_csv(f"{out}/reference.csv")
cur = pd.read_csv(f"{out}/current.csv")
print(f"pandas load: {time.perf_counter() - t:.3f} s")
t = time.perf_counter()
snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
elapsed = time.perf_counter() - t
print(f"evidently DataDriftPreset statistics: {elapsed:.3f} s")
for m in snapshot.dict()["metrics"]:
    name = m.get("metric_name") or m.get("metric_id")
    if "ValueDrift" in str(name):
        print(f"  {name}: {m.get('value')}")
