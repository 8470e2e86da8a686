#!/usr/bin/env bash
# The prompt guard's benchmark: recall and false-positive rate per family on the development
# and held-out halves of bench/guard/prompts.tsv, and the guard's latency per prompt.
#   bench/guard/run.sh                     # all layers, with the MiniLM model from .cache/
#   bench/guard/run.sh --write-exemplars chat/src/guard/exemplars.txt
# MOORING_EMBEDDING_MODEL_DIR overrides the model directory; without one, patterns only.
set -euo pipefail
cd "$(dirname "$0")/../.."
model="${MOORING_EMBEDDING_MODEL_DIR:-.cache/models/all-MiniLM-L6-v2}"
args=(--prompts bench/guard/prompts.tsv)
if [ -f "$model/model.safetensors" ]; then
    args+=(--model "$model")
else
    echo "no embedding model at $model (scripts/setup.sh chat fetches it): patterns only" >&2
fi
exec cargo run --release --quiet -p mooring-chat --example guard_eval -- "${args[@]}" "$@"
