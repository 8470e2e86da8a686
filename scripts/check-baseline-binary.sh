#!/usr/bin/env bash
# Fail when an x86-64 binary holds instructions beyond baseline x86-64 that x86-64-v3 code
# uses (AVX/AVX2 ymm registers, FMA, BMI1/BMI2, LZCNT, MOVBE): such a binary dies with SIGILL
# on a CPU without them. The Dockerfiles run it on the launcher, which must start everywhere.
#
#   scripts/check-baseline-binary.sh target/x86-64/release/mooring-launcher
#
# (TZCNT is not in the list: it is encoded as REP BSF, which older CPUs run as BSF, and the
# precompiled baseline standard library uses it.)
set -euo pipefail
bin="${1:?usage: $0 BINARY}"
command -v objdump >/dev/null || { echo "check-baseline-binary: objdump (binutils) is needed" >&2; exit 2; }
found=$(objdump -d --no-show-raw-insn "$bin" \
  | grep -cE '%ymm|%zmm|[[:space:]](vfn?m(add|sub)[0-9a-z]*|shlx|shrx|sarx|rorx|pdep|pext|andn|bextr|blsi|blsr|blsmsk|bzhi|lzcnt|movbe)[[:space:]]' || true)
if [[ "$found" != 0 ]]; then
  echo "check-baseline-binary: $bin has $found instructions beyond baseline x86-64 (built with x86-64-v3 rustflags?)" >&2
  exit 1
fi
echo "ok: $bin runs on baseline x86-64"
