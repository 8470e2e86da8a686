#!/usr/bin/env bash
# Drift-check benchmark: 1,000,000 logged rows x 4 features against a 10,000-row reference.
# Prints the loading time and the statistics time separately (release build; wall and CPU
# seconds) and the peak RSS, then the same statistics with Evidently's DataDriftPreset when it
# can be installed, and the ratios.
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
ours="$data/ours.txt"
if [[ -x /usr/bin/time ]]; then
  /usr/bin/time -v "${CARGO_TARGET_DIR:-$root/target}/release/examples/drift_perf" "$data/logs" "$data/reference.csv" \
    >"$ours" 2>"$data/time.txt"
  cat "$ours"
  sed -n 's/^\s*Maximum resident set size (kbytes): \([0-9]*\)/peak RSS: \1 kB/p' "$data/time.txt"
else
  "${CARGO_TARGET_DIR:-$root/target}/release/examples/drift_perf" "$data/logs" "$data/reference.csv" | tee "$ours"
fi

evidently_python="${EVIDENTLY_PYTHON:-}"
if [[ -z "$evidently_python" ]]; then
  venv="$root/.cache/evidently-venv"
  if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import evidently" 2>/dev/null; then
    echo "installing evidently into $venv (PyPI)…"
    python3 -m venv "$venv" && "$venv/bin/pip" install -q evidently 'pandas<2.3' || { echo "evidently not installable: skipping the comparison"; exit 0; }
  fi
  evidently_python="$venv/bin/python"
fi
"$evidently_python" "$root/bench/drift-perf/evidently_bench.py" "$data" | tee "$data/evidently.txt"
python3 - "$ours" "$data/evidently.txt" <<'PY'
import re, sys
ours, theirs = open(sys.argv[1]).read(), open(sys.argv[2]).read()
seconds = lambda pattern, text: float(re.search(pattern + r"[^:]*: ([\d.]+) s", text).group(1))
cpu = lambda pattern, text: float(re.search(pattern + r"[^:]*: [\d.]+ s \(CPU ([\d.]+) s\)", text).group(1))
for kind, read in (("wall", seconds), ("CPU", cpu)):
    load, check = read(r"load prediction log", ours), read(r"check after loading", ours)
    pandas, evidently = read(r"pandas load", theirs), read(r"evidently DataDriftPreset statistics", theirs)
    print(f"ratios ({kind}): statistics Evidently/ours {evidently / check:.1f}x, loading pandas/ours {pandas / load:.2f}x, "
          f"end to end (pandas + Evidently)/(load + check) {(pandas + evidently) / (load + check):.1f}x")
PY
