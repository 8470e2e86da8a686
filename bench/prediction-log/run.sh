#!/usr/bin/env bash
# Prediction logging under load: the same wrk load (REST V2 infer, one iris row) against
#   off      the server without a prediction log
#   file     --prediction-log file://…            (a healthy sink: the drop counter stays at 0)
#   stalled  --prediction-log s3://… on an endpoint that accepts connections and never answers
#            (the writer is stuck: records are dropped and counted, inference is not slowed)
# Prints req/s and p99 of each, with the logger's counters from /metrics.
# Bounded: DURATION seconds (default 10) per run at CONNECTIONS (default 16).
#
#   bench/prediction-log/run.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-16}
OUT=$(mktemp -d /tmp/prediction-log-bench.XXXXXX)

scripts/setup.sh run
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p inference-server
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$ROOT/.cache/onnxruntime/libonnxruntime.so}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT

# An "S3 endpoint" that accepts connections and never answers.
SILENT=$(free_port)
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(128)
held = []
while True:
    held.append(s.accept()[0])
' "$SILENT" &
PIDS+=($!)

run() { # LABEL [serve flags…]
    local label=$1; shift
    local http grpc pid
    http=$(free_port); grpc=$(free_port)
    AWS_ENDPOINT_URL="http://127.0.0.1:$SILENT" AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 \
        target/release/inference-server serve --registry models --model iris-classifier@production \
        --host 127.0.0.1 --http-port "$http" --grpc-port "$grpc" --log-format json "$@" \
        >"$OUT/server-$label.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
        curl -fs -o /dev/null "http://127.0.0.1:$http/v2/health/ready" && break
        sleep 0.2
    done
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/serving/post.lua \
        "http://127.0.0.1:$http/v2/models/iris-classifier/infer" >"$OUT/wrk-$label.txt"
    local rps p99 counters
    rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$OUT/wrk-$label.txt")
    p99=$(awk '$1 == "99%" {print $2}' "$OUT/wrk-$label.txt")
    counters=$(curl -fs "http://127.0.0.1:$http/metrics" |
        awk '/^mooring_prediction_log_(logged|dropped|written)_total/ {sub("mooring_prediction_log_", ""); sub("_total", ""); printf "%s=%s ", $1, $2}')
    printf '%-8s %8s req/s  p99 %-8s %s\n' "$label" "$rps" "$p99" "${counters:-(no log)}"
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}

echo "REST V2 infer, wrk -c$CONNECTIONS -d${DURATION}s; raw output in $OUT"
run off
run file --prediction-log "file://$OUT/logs"
run stalled --prediction-log "s3://stalled/preds" --prediction-log-queue 10000
