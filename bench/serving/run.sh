#!/usr/bin/env bash
# Serving benchmark: our inference server vs MLServer (mlserver + mlserver-sklearn), the
# same iris model, the same request, the same load generators, on 127.0.0.1:
#   REST  wrk  (2 threads, Lua POST script)          at 16 and 64 connections
#   gRPC  grpc-load (bench/grpc-load, closed loop)   at 16 and 64 connections
# Prints req/s, p50, p99 for each and our/MLServer ratios; raw results in bench/results/.
# Every run is bounded: DURATION seconds (default 10) after a 2 s warm-up.
#
#   bench/serving/run.sh            # DURATION=20 CONNECTIONS="16 64" to change
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-16 64}
CACHE="$ROOT/.cache"
OUT="$ROOT/bench/results/serving-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"

scripts/setup.sh run
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
if [ ! -x "$CACHE/bench-venv/bin/mlserver" ]; then
    python3 -m venv "$CACHE/bench-venv"
    "$CACHE/bench-venv/bin/pip" install -q mlserver mlserver-sklearn "uvloop<0.22" scikit-learn
fi
cargo build --release -q -p inference-server -p mooring-bench
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$CACHE/onnxruntime/libonnxruntime.so}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
wait_ready() { # URL PID
    for _ in $(seq 1 240); do
        kill -0 "$2" 2>/dev/null || { echo "server $2 died; logs in $OUT" >&2; exit 1; }
        curl -fs -o /dev/null "$1" && return 0
        sleep 0.5
    done
    echo "$1 not ready" >&2; exit 1
}

# Ours
OUR_HTTP=$(free_port); OUR_GRPC=$(free_port)
target/release/inference-server serve --registry models --model iris-classifier@production \
    --host 127.0.0.1 --http-port "$OUR_HTTP" --grpc-port "$OUR_GRPC" --log-format json \
    >"$OUT/mooring.log" 2>&1 &
PIDS+=($!); wait_ready "http://127.0.0.1:$OUR_HTTP/v2/health/ready" $!

# MLServer
ML_DIR="$OUT/mlserver"; mkdir -p "$ML_DIR"
"$CACHE/bench-venv/bin/python" bench/serving/mlserver_model.py models/iris-classifier/1 "$ML_DIR"
ML_HTTP=$(free_port); ML_GRPC=$(free_port); ML_METRICS=$(free_port)
cat >"$ML_DIR/settings.json" <<JSON
{"host": "127.0.0.1", "http_port": $ML_HTTP, "grpc_port": $ML_GRPC, "metrics_port": $ML_METRICS}
JSON
(cd "$ML_DIR" && exec "$CACHE/bench-venv/bin/mlserver" start .) >"$OUT/mlserver.log" 2>&1 &
PIDS+=($!); wait_ready "http://127.0.0.1:$ML_HTTP/v2/models/iris-classifier/ready" $!

rest() { # LABEL PORT CONNS
    local f="$OUT/rest-$1-$3.txt"
    wrk -t2 -c"$3" -d"${DURATION}s" --latency -s bench/serving/post.lua \
        "http://127.0.0.1:$2/v2/models/iris-classifier/infer" >"$f"
    python3 - "$f" "$1" "$3" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
def ms(tok):
    v, unit = re.match(r"([\d.]+)(\w+)", tok).groups()
    return float(v) * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 6e4}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
non2xx = int(re.search(r"non2xx (\d+)", text).group(1))
sock = re.search(r"Socket errors:.*", text)
print(json.dumps({"label": sys.argv[2], "protocol": "rest", "connections": int(sys.argv[3]),
                  "rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": non2xx,
                  "socket_errors": sock.group(0) if sock else ""}))
PY
}
grpc() { # LABEL PORT CONNS
    target/release/grpc-load --url "http://127.0.0.1:$2" --connections "$3" \
        --duration "$DURATION" --label "$1"
}

: >"$OUT/results.jsonl"
for c in $CONNECTIONS; do
    for proto in rest grpc; do
        if [ $proto = rest ]; then ours=$OUR_HTTP; theirs=$ML_HTTP; else ours=$OUR_GRPC; theirs=$ML_GRPC; fi
        $proto mooring "$ours" "$c" | tee -a "$OUT/results.jsonl"
        $proto mlserver "$theirs" "$c" | tee -a "$OUT/results.jsonl"
    done
done

python3 - "$OUT/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {(r["label"], r["protocol"], r["connections"]): r for r in rows}
print(f"\n{'protocol':8} {'conns':>5} | {'mooring req/s':>13} {'p50 ms':>7} {'p99 ms':>7} | {'mlserver req/s':>14} {'p50 ms':>7} {'p99 ms':>7} | {'ratio':>6}")
for (label, proto, c), r in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][2])):
    if label != "mooring":
        continue
    m = by[("mlserver", proto, c)]
    print(f"{proto:8} {c:>5} | {r['rps']:>13.0f} {r['p50_ms']:>7.3f} {r['p99_ms']:>7.3f} | "
          f"{m['rps']:>14.0f} {m['p50_ms']:>7.3f} {m['p99_ms']:>7.3f} | {r['rps']/m['rps']:>5.1f}x")
    if r.get("errors") or m.get("errors"):
        print(f"         errors: mooring {r.get('errors')}, mlserver {m.get('errors')}")
PY
echo "raw results: $OUT"
