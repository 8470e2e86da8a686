#!/usr/bin/env bash
# Drift demo: normal iris traffic, then shifted traffic (+1.5 petal_length, x1.3 sepal_width)
# through the inference server with prediction logging on, and `inference-server drift`
# after each phase: the verdict flips from NoDrift to Drift and an HTML report is written.
#
# usage: bench/drift-demo/run.sh [WORK_DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="${1:-$(mktemp -d /tmp/drift-demo.XXXXXX)}"
mkdir -p "$work"
models="$root/models"
version="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["production"])' "$models/iris-classifier/aliases.json")"
cd "$root"
cargo build --release -q -p inference-server
server="$root/target/release/inference-server"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
phase() { # phase NAME [--shift]
  local http grpc pid since
  http="$(free_port)"; grpc="$(free_port)"
  "$server" serve --registry "$models" --cache-dir "$work/cache" --model "iris-classifier@production" \
    --host 127.0.0.1 --http-port "$http" --grpc-port "$grpc" --prediction-log "file://$work/logs" \
    > "$work/server-$1.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$http/v2/health/ready" >/dev/null 2>&1 && break
    sleep 0.2
  done
  since="$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)"
  python3 "$root/bench/drift-demo/send_traffic.py" "http://127.0.0.1:$http/api/v1/models/iris-classifier/predict" \
    "$models/iris-classifier/$version/reference.csv" 500 "${@:2}" --seed "$RANDOM"
  kill -TERM "$pid"; wait "$pid" || true   # graceful stop flushes the prediction log
  "$server" drift --sink "file://$work/logs" --model iris-classifier --version "$version" \
    --registry "$models" --cache-dir "$work/cache" --since "$since" \
    --result-file "$work/$1.json" --report-dir "$work/reports"
  python3 - "$work/$1.json" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]}: verdict {r['verdict']}, drift share {r['driftShare']:.2f}")
for f in r.get("features", []):
    print(f"  {f['name']:<13} {f['test']:<18} p/distance {f.get('pValue', f['statistic']):.3e} drifted={f['drifted']}")
print(f"  HTML report: {r.get('reportUri')}")
PY
}
phase before
phase after --shift
