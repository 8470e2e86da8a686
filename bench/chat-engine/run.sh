#!/usr/bin/env bash
# The local chat backend (llama.cpp in-process, chat/src/backend/local) against llama.cpp's
# own llama-server on the same GGUF, same thread count, back to back: decode tokens/s and
# time to first token of one stream, time to first token of a session's second turn (prefix
# reuse) against a cold prompt of the same length, and aggregate tokens/s of 4 concurrent
# streams against 1. Greedy, no repetition penalty (llama-server's default), 128 new tokens.
# A session's next turn is sent PAUSE_MS (default 500) after its answer, as a person reads
# and types (they take seconds); the cold prompt it is compared with waits as long.
# PAUSE_MS=0 sends it at once: then the local engine has no idle moment to compute the
# template's hand-over to the user ahead (chat/src/backend/local/scheduler.rs).
#
#   bench/chat-engine/run.sh [threads...]       default: 1 2
#   RUNS=5 MAX_TOKENS=128 PROFILE=release bench/chat-engine/run.sh 1 2
#   MOORING_CHAT_FLASH_ATTENTION=false bench/chat-engine/run.sh   ours with plain attention
#                                    (flash attention is the default, as llama-server's here)
#
# Needs `scripts/setup.sh test` (the GGUF and llama-server). Wall-clock figures on a busy
# machine are noisy: compare the ratios, and note the load average printed first. The CPU
# level differs unless you align it: setup.sh builds llama-server with -march=native, the
# workspace builds llama.cpp for x86-64-v3 (.cargo/config.toml); RUSTFLAGS="-C
# target-cpu=native" builds ours native too (a full rebuild into its own target directory).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
CACHE="$ROOT/.cache"
GGUF=${GGUF:-$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf}
LLAMA_SERVER=${LLAMA_SERVER:-$CACHE/llama.cpp/build/bin/llama-server}
RUNS=${RUNS:-3}
MAX_TOKENS=${MAX_TOKENS:-128}
PROFILE=${PROFILE:-release}
THREADS=("$@")
[ ${#THREADS[@]} -gt 0 ] || THREADS=(1 2)
[ -f "$GGUF" ] && [ -x "$LLAMA_SERVER" ] || { echo "run scripts/setup.sh test first" >&2; exit 1; }

# --workspace: the features the tests build with, so nothing is rebuilt for the bench.
cargo build --profile "$PROFILE" --workspace --example local_speed >&2
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
DIR=$PROFILE; [ "$PROFILE" = dev ] && DIR=debug
OURS="$TARGET/$DIR/examples/local_speed"

OUT=$(mktemp -d "${TMPDIR:-/tmp}/chat-engine.XXXXXX")
SERVER_PID=
cleanup() { [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true; rm -rf "$OUT"; }
trap cleanup EXIT

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); pause between turns: ${PAUSE_MS:-500} ms"
for t in "${THREADS[@]}"; do
    "$OURS" "$GGUF" "$t" "$RUNS" "$MAX_TOKENS" >"$OUT/ours-$t" 2>"$OUT/ours-$t.log"

    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$LLAMA_SERVER" -m "$GGUF" --host 127.0.0.1 --port "$port" --threads "$t" --threads-batch "$t" \
        --ctx-size 8192 --parallel 4 >"$OUT/llama-$t.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 240); do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/health" 2>/dev/null && break
        sleep 0.5
    done
    python3 bench/chat-engine/llama_server.py "http://127.0.0.1:$port" "$RUNS" "$MAX_TOKENS" >"$OUT/llama-$t"
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=

    python3 - "$t" "$OUT/ours-$t" "$OUT/llama-$t" <<'PY'
import sys
threads, ours, theirs = sys.argv[1], *(dict((k, float(v)) for k, v in (l.split() for l in open(p))) for p in sys.argv[2:])
rows = [
    ("decode tok/s (1 stream)", "decode_tps", True),
    ("first token, cold (ms)", "cold_ttft_ms", False),
    ("first token, turn 2 (ms)", "turn2_ttft_ms", False),
    ("  same length, cold (ms)", "turn2_cold_ttft_ms", False),
    ("aggregate tok/s, 1 stream", "aggregate_tps_1", True),
    ("aggregate tok/s, 4 streams", "aggregate_tps_4", True),
]
print(f"\n{threads} thread(s)                  ours   llama-server   ours/llama-server (>1 is better for ours)")
for label, key, higher in rows:
    a, b = ours[key], theirs[key]
    ratio = a / b if higher else b / a
    print(f"  {label:<27}{a:>8.1f}{b:>15.1f}{ratio:>10.2f}")
for name, d in (("ours", ours), ("llama-server", theirs)):
    print(f"  {name}: turn 2 / cold = {d['turn2_ttft_ms'] / d['turn2_cold_ttft_ms']:.0%}, "
          f"4 streams / 1 = {d['aggregate_tps_4'] / d['aggregate_tps_1']:.2f}x")
PY
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
