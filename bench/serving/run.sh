#!/usr/bin/env bash
# Serving benchmark: our inference server vs MLServer (mlserver + mlserver-sklearn), the
# same iris model, the same request (one row), the same load generators, on 127.0.0.1:
#   rest      wrk  (2 threads, Lua POST script)                      at 16 and 64 connections
#   grpc      grpc-load (bench/grpc-load, closed loop), typed contents  at 16 and 64
#   grpc-raw  grpc-load --raw (raw_input_contents)                    at 16 and 64
# For each point: req/s, p50, p99 and the server's CPU time per request (user + system of
# the server process and its children, from /proc, over the whole load run, divided by the
# requests answered), ours and MLServer's, and the ratios. Beside them the floor: one bare
# model call through our ONNX Runtime backend (ort-floor).
#
# The servers run on core SERVER_CPU and the load generators on LOAD_CPU (taskset), so
# latency is not set by the two fighting for one core. Every run is bounded: DURATION
# seconds (default 10; grpc-load adds a 2 s warm-up) and at most 5 M requests.
# Raw results go to bench/results/ (not committed).
#
#   bench/serving/run.sh       env: DURATION, CONNECTIONS="16 64", PROTOCOLS="rest grpc grpc-raw",
#                              MLSERVER=0 (ours only), SERVER_CPU=0, LOAD_CPU=1,
#                              SERVER_BIN (another build of inference-server, e.g. a baseline)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-16 64}
PROTOCOLS=${PROTOCOLS:-rest grpc grpc-raw}
MLSERVER=${MLSERVER:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
CACHE="$ROOT/.cache"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
SERVER_BIN=${SERVER_BIN:-$TARGET/inference-server}
OUT="$ROOT/bench/results/serving-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"

scripts/setup.sh run
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
if [ "$MLSERVER" = 1 ] && [ ! -x "$CACHE/bench-venv/bin/mlserver" ]; then
    python3 -m venv "$CACHE/bench-venv"
    "$CACHE/bench-venv/bin/pip" install -q mlserver mlserver-sklearn "uvloop<0.22" scikit-learn
fi
# No chat mode: the image that serves ModelDeployments is built the same way.
cargo build --release -q --no-default-features -p inference-server -p mooring-bench
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$CACHE/onnxruntime/libonnxruntime.so}

# Prefixes, not functions: a server started in the background must be the process whose
# pid $! gives (taskset execs it), or the clean-up would kill a subshell and leave it running.
if [ "$(nproc)" -ge 2 ]; then
    ON_SERVER=(taskset -c "$SERVER_CPU")
    ON_LOAD=(taskset -c "$LOAD_CPU")
else
    echo "one CPU: servers and load generators share it (no pinning)" >&2
    ON_SERVER=()
    ON_LOAD=()
fi
on_load() { "${ON_LOAD[@]}" "$@"; }
cpu_seconds() { python3 bench/serving/cpu_seconds.py "$1"; }

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

# The floor: one bare model call, on the server's core.
"${ON_SERVER[@]}" "$TARGET/ort-floor" --model-dir models/iris-classifier/1 | tee "$OUT/floor.json"

# Ours
OUR_HTTP=$(free_port); OUR_GRPC=$(free_port)
"${ON_SERVER[@]}" "$SERVER_BIN" serve --registry models --model iris-classifier@production \
    --host 127.0.0.1 --http-port "$OUR_HTTP" --grpc-port "$OUR_GRPC" --log-format json \
    >"$OUT/mooring.log" 2>&1 &
OUR_PID=$!; PIDS+=($OUR_PID); wait_ready "http://127.0.0.1:$OUR_HTTP/v2/health/ready" $OUR_PID

# MLServer
if [ "$MLSERVER" = 1 ]; then
    ML_DIR="$OUT/mlserver"; mkdir -p "$ML_DIR"
    "$CACHE/bench-venv/bin/python" bench/serving/mlserver_model.py models/iris-classifier/1 "$ML_DIR"
    ML_HTTP=$(free_port); ML_GRPC=$(free_port); ML_METRICS=$(free_port)
    cat >"$ML_DIR/settings.json" <<JSON
{"host": "127.0.0.1", "http_port": $ML_HTTP, "grpc_port": $ML_GRPC, "metrics_port": $ML_METRICS}
JSON
    (cd "$ML_DIR" && exec "${ON_SERVER[@]}" "$CACHE/bench-venv/bin/mlserver" start .) >"$OUT/mlserver.log" 2>&1 &
    ML_PID=$!; PIDS+=($ML_PID); wait_ready "http://127.0.0.1:$ML_HTTP/v2/models/iris-classifier/ready" $ML_PID
fi

rest() { # LABEL PORT CONNS PID
    local f="$OUT/rest-$1-$3.txt" before after
    before=$(cpu_seconds "$4")
    on_load wrk -t2 -c"$3" -d"${DURATION}s" --latency -s bench/serving/post.lua \
        "http://127.0.0.1:$2/v2/models/iris-classifier/infer" >"$f"
    after=$(cpu_seconds "$4")
    python3 - "$f" "$1" "$3" "$before" "$after" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
def ms(tok):
    v, unit = re.match(r"([\d.]+)(\w+)", tok).groups()
    return float(v) * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 6e4}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
sent = int(re.search(r"(\d+) requests in", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
non2xx = int(re.search(r"non2xx (\d+)", text).group(1))
sock = re.search(r"Socket errors:.*", text)
cpu = float(sys.argv[5]) - float(sys.argv[4])
print(json.dumps({"label": sys.argv[2], "protocol": "rest", "connections": int(sys.argv[3]),
                  "rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": non2xx,
                  "socket_errors": sock.group(0) if sock else "", "sent": sent,
                  "server_cpu_s": cpu, "cpu_ms_per_request": cpu * 1e3 / max(sent, 1)}))
PY
}
grpc_load() { # PROTOCOL LABEL PORT CONNS PID [--raw]
    local before after line
    before=$(cpu_seconds "$5")
    line=$(on_load "$TARGET/grpc-load" --url "http://127.0.0.1:$3" --connections "$4" \
        --duration "$DURATION" --label "$2" "${@:6}")
    after=$(cpu_seconds "$5")
    python3 - "$line" "$1" "$before" "$after" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
cpu = float(sys.argv[4]) - float(sys.argv[3])
r.update(protocol=sys.argv[2], server_cpu_s=cpu, cpu_ms_per_request=cpu * 1e3 / max(r["sent"], 1))
print(json.dumps(r))
PY
}
grpc() { grpc_load grpc "$@"; }
grpc-raw() { grpc_load grpc-raw "$@" --raw; }

: >"$OUT/results.jsonl"
for c in $CONNECTIONS; do
    for proto in $PROTOCOLS; do
        if [ "$proto" = rest ]; then ours=$OUR_HTTP; theirs=${ML_HTTP:-}; else ours=$OUR_GRPC; theirs=${ML_GRPC:-}; fi
        $proto mooring "$ours" "$c" "$OUR_PID" | tee -a "$OUT/results.jsonl"
        if [ "$MLSERVER" = 1 ]; then
            $proto mlserver "$theirs" "$c" "$ML_PID" | tee -a "$OUT/results.jsonl"
        fi
    done
done

python3 - "$OUT/results.jsonl" "$OUT/floor.json" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
floor = json.load(open(sys.argv[2]))["cpu_ms_per_call"]
by = {(r["label"], r["protocol"], r["connections"]): r for r in rows}
print(f"\nserver CPU per request in ms (user + system over the run / requests answered); "
      f"the floor, one bare model call: {floor:.4f} ms")
print(f"{'protocol':8} {'conns':>5} | {'mooring req/s':>13} {'p50 ms':>7} {'p99 ms':>7} {'cpu ms':>7} "
      f"{'/floor':>6} | {'mlserver req/s':>14} {'p50 ms':>7} {'p99 ms':>7} {'cpu ms':>7} | {'req/s':>6} {'cpu':>6}")
for (label, proto, c), r in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][2])):
    if label != "mooring":
        continue
    line = (f"{proto:8} {c:>5} | {r['rps']:>13.0f} {r['p50_ms']:>7.3f} {r['p99_ms']:>7.3f} "
            f"{r['cpu_ms_per_request']:>7.4f} {r['cpu_ms_per_request'] / floor:>5.1f}x |")
    m = by.get(("mlserver", proto, c))
    if m:
        line += (f" {m['rps']:>14.0f} {m['p50_ms']:>7.3f} {m['p99_ms']:>7.3f} {m['cpu_ms_per_request']:>7.4f} |"
                 f" {r['rps'] / m['rps']:>5.1f}x {m['cpu_ms_per_request'] / r['cpu_ms_per_request']:>5.1f}x")
    print(line)
    if r.get("errors") or (m and m.get("errors")):
        print(f"         errors: mooring {r.get('errors')}, mlserver {m.get('errors') if m else '-'}")
if any(("mlserver", p, c) in by for (_, p, c) in by):
    print("ratios: req/s ours / MLServer's; cpu MLServer's CPU per request / ours")
PY
echo "raw results: $OUT"
