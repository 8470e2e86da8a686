#!/usr/bin/env bash
# The test suite: fetch what the tests need, start the real services they talk to on free
# 127.0.0.1 ports (MLflow, Redis, PostgreSQL, llama.cpp's llama-server, an S3-compatible
# server), run
# every test of the workspace, stop the services. Extra arguments go to `cargo nextest run`.
# Needs only the Rust toolchain beforehand: cargo-nextest is installed when missing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE="$ROOT/.cache"
cd "$ROOT"
if ! command -v cargo-nextest >/dev/null; then
    echo "test: cargo-nextest is missing; installing it (cargo install --locked cargo-nextest)" >&2
    cargo install --locked cargo-nextest
fi
"$ROOT/scripts/setup.sh" test

RUN=$(mktemp -d "${TMPDIR:-/tmp}/mooring-test.XXXXXX")
PIDS=()
cleanup() {
    local status=$?
    # Each service runs in its own session: stop the whole group (mlflow forks workers
    # that outlive their parent otherwise).
    for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    sleep 1
    for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ $status -ne 0 ]; then
        for f in "$RUN"/*.log; do [ -s "$f" ] && { echo "--- $f (last lines)"; tail -n 20 "$f"; }; done
    fi
    rm -rf "$RUN" "${PG_DIR:-}"
    exit $status
}
trap cleanup EXIT INT TERM

free_port() { "$CACHE/venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_http NAME URL PID: poll until the URL answers 2xx, the process dies, or 120 s pass
wait_http() {
    local name=$1 url=$2 pid=$3
    for _ in $(seq 1 240); do
        kill -0 "$pid" 2>/dev/null || { echo "$name exited during start-up; see $RUN/$name.log" >&2; tail -n 30 "$RUN/$name.log" >&2; return 1; }
        curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
        sleep 0.5
    done
    echo "$name did not answer $url within 120 s" >&2; return 1
}

port=$(free_port)
setsid "$CACHE/venv/bin/mlflow" server --backend-store-uri "sqlite:///$RUN/mlflow.db" \
    --artifacts-destination "$RUN/mlflow-artifacts" --host 127.0.0.1 --port "$port" --workers 1 \
    >"$RUN/mlflow.log" 2>&1 &
PIDS+=($!); MLFLOW_PID=$!
export MOORING_TEST_MLFLOW_URL="http://127.0.0.1:$port"

port=$(free_port)
setsid redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no >"$RUN/redis.log" 2>&1 &
PIDS+=($!)
export MOORING_TEST_REDIS_URL="redis://127.0.0.1:$port"

# PostgreSQL (Debian's `postgresql` package; its binaries are not on PATH): a throw-away
# cluster, no fsync. Postgres refuses to run as root, so as root the cluster belongs to the
# package's `postgres` user, in a directory of its own ($RUN is private to us).
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$PG_BIN/initdb" ] || PG_BIN=$(dirname "$(command -v initdb || echo /missing/initdb)")
[ -x "$PG_BIN/initdb" ] || { echo "test: PostgreSQL is missing: apt-get install postgresql (.ci/run does)" >&2; exit 1; }
PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mooring-pg.XXXXXX")
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$PG_DIR"
    as_pg=(runuser -u postgres --)
fi
"${as_pg[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U mooring --auth=trust -E UTF8 --no-sync \
    >"$RUN/postgres-initdb.log" 2>&1 || { cat "$RUN/postgres-initdb.log" >&2; exit 1; }
PG_PORT=$(free_port)
setsid "${as_pg[@]}" "$PG_BIN/postgres" -D "$PG_DIR/data" -h 127.0.0.1 -p "$PG_PORT" -k "$PG_DIR" \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off >"$RUN/postgres.log" 2>&1 &
PIDS+=($!); PG_PID=$!
export MOORING_TEST_POSTGRES_URL="postgres://mooring@127.0.0.1:$PG_PORT/postgres"

export MOORING_TEST_GGUF="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
export MOORING_TEST_MINILM_DIR="$CACHE/models/all-MiniLM-L6-v2"
port=$(free_port)
setsid "$CACHE/llama.cpp/build/bin/llama-server" -m "$MOORING_TEST_GGUF" --alias smollm2 \
    --host 127.0.0.1 --port "$port" --ctx-size 2048 --threads 1 --parallel 2 \
    >"$RUN/llama-server.log" 2>&1 &
PIDS+=($!); LLAMA_PID=$!
export MOORING_TEST_LLAMA_URL="http://127.0.0.1:$port"

port=$(free_port)
setsid "$CACHE/venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$RUN/s3.log" 2>&1 &
PIDS+=($!); S3_PID=$!
export MOORING_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
export MOORING_TEST_S3_BUCKET=mooring-test
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1

export MOORING_TEST_PYTHON="$CACHE/venv/bin/python"
# nextest runs tests two at a time on two cores: one candle thread each (its pool spins
# while waiting, so more threads than free cores make generation several times slower).
export CANDLE_NUM_THREADS=${CANDLE_NUM_THREADS:-1}

wait_http mlflow "$MOORING_TEST_MLFLOW_URL/health" "$MLFLOW_PID"
wait_http llama-server "$MOORING_TEST_LLAMA_URL/health" "$LLAMA_PID"
wait_http s3 "$MOORING_TEST_S3_ENDPOINT/" "$S3_PID"
for _ in $(seq 1 120); do
    kill -0 "$PG_PID" 2>/dev/null || { echo "postgres exited during start-up" >&2; tail -n 30 "$RUN/postgres.log" >&2; exit 1; }
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null && break
    sleep 0.5
done
"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" || { echo "postgres did not start within 60 s" >&2; exit 1; }
curl -fsS -X PUT "$MOORING_TEST_S3_ENDPOINT/$MOORING_TEST_S3_BUCKET" -o /dev/null

cargo nextest run --workspace --no-fail-fast "$@"
