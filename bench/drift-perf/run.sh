#!/usr/bin/env bash
# Drift-check benchmark: 1,000,000 logged rows x 4 features against a 10,000-row reference.
# Prints the loading time and the statistics time separately (release build), then the same
# statistics with Evidently's DataDriftPreset when it can be installed.
#
# usage: bench/drift-perf/run.sh [ROWS]       env: PYTHON (numpy), EVIDENTLY_PYTHON (optional)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
rows="${1:-1000000}"
python="${PYTHON:-${MOORING_TEST_PYTHON:-$root/.cache/venv/bin/python}}"
data="$(mktemp -d /tmp/drift-perf.XXXXXX)"
trap 'rm -rf "$data"' EXIT

"$python" "$root/bench/drift-perf/generate.py" "$data" "$rows"
cargo build --release -q -p mooring-drift --example drift_perf --manifest-path "$root/Cargo.toml"
"$root/target/release/examples/drift_perf" "$data/logs" "$data/reference.csv"

evidently_python="${EVIDENTLY_PYTHON:-}"
if [[ -z "$evidently_python" ]]; then
  venv="$root/.cache/evidently-venv"
  if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import evidently" 2>/dev/null; then
    echo "installing evidently into $venv (PyPI)…"
    python3 -m venv "$venv" && "$venv/bin/pip" install -q evidently 'pandas<2.3' || { echo "evidently not installable: skipping the comparison"; exit 0; }
  fi
  evidently_python="$venv/bin/python"
fi
"$evidently_python" "$root/bench/drift-perf/evidently_bench.py" "$data"
