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
# CPU time beside wall time: on a shared machine the wall clock also measures the neighbours.
t, cpu = time.perf_counter(), time.process_time()
ref = pd.read_csv(f"{out}/reference.csv")
cur = pd.read_csv(f"{out}/current.csv")
print(f"pandas load: {time.perf_counter() - t:.3f} s (CPU {time.process_time() - cpu:.2f} s)")
t, cpu = time.perf_counter(), time.process_time()
snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
elapsed = time.perf_counter() - t
print(f"evidently DataDriftPreset statistics: {elapsed:.3f} s (CPU {time.process_time() - cpu:.2f} s)")
for m in snapshot.dict()["metrics"]:
    name = m.get("metric_name") or m.get("metric_id")
    if "ValueDrift" in str(name):
        print(f"  {name}: {m.get('value')}")
