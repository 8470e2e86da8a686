#!/usr/bin/env bash
# Release build of one binary for an image: one build per CPU level behind mooring-launcher on
# x86-64, one native build on aarch64. Both Dockerfiles run it; it runs outside Docker too.
#
#   scripts/build-binaries.sh PACKAGE OUT [CARGO_ARGS...]
#   scripts/build-binaries.sh inference-server /out --no-default-features
#
# OUT gets bin/PACKAGE and, on x86-64, libexec/mooring/PACKAGE.<level>. Environment:
#   CPU_TARGETS         x86-64 levels to build (x86-64, x86-64-v2, x86-64-v3), default "x86-64"
#   AARCH64_TARGET_CPU  -C target-cpu on aarch64, default `generic`
#   TARGET_DIR          cargo's target directory, default `target`
#
# x86-64: each level is built as OUT/libexec/mooring/PACKAGE.<level>, and OUT/bin/PACKAGE is
# mooring-launcher (launcher/), which execs the highest level this CPU runs or exits 1 naming the
# missing features, never a SIGILL. RUSTFLAGS replaces .cargo/config.toml's x86-64-v3 rustflags
# (cargo takes the first of CARGO_ENCODED_RUSTFLAGS, RUSTFLAGS, config), so each build gets
# exactly its own -C target-cpu and the launcher baseline x86-64; check-baseline-binary.sh then
# fails the build if the launcher holds v3 instructions. Each level has its own target
# directory, so rebuilding one does not invalidate another.
#
# aarch64: config.toml's flags are for x86_64 only and NEON is baseline: one build, no launcher.
set -euo pipefail
package="${1:?usage: $0 PACKAGE OUT [CARGO_ARGS...]}"
out="${2:?usage: $0 PACKAGE OUT [CARGO_ARGS...]}"
shift 2
targets="${CPU_TARGETS:-x86-64}"
target_dir="${TARGET_DIR:-target}"
cd "$(dirname "$0")/.."

case "$(uname -m)" in
  x86_64)
    for cpu in $targets; do
      case "$cpu" in
        x86-64|x86-64-v2|x86-64-v3) ;;
        *) echo "CPU_TARGETS: unknown level $cpu (x86-64, x86-64-v2, x86-64-v3)" >&2; exit 1 ;;
      esac
      RUSTFLAGS="-C target-cpu=$cpu" cargo build --release --locked -p "$package" "$@" \
        --target-dir "$target_dir/$cpu"
      install -D "$target_dir/$cpu/release/$package" "$out/libexec/mooring/$package.$cpu"
    done
    RUSTFLAGS="-C target-cpu=x86-64" cargo build --release --locked -p mooring-launcher \
      --target-dir "$target_dir/x86-64"
    scripts/check-baseline-binary.sh "$target_dir/x86-64/release/mooring-launcher"
    install -D "$target_dir/x86-64/release/mooring-launcher" "$out/bin/$package"
    ;;
  aarch64)
    RUSTFLAGS="-C target-cpu=${AARCH64_TARGET_CPU:-generic}" \
      cargo build --release --locked -p "$package" "$@" --target-dir "$target_dir"
    install -D "$target_dir/release/$package" "$out/bin/$package"
    mkdir -p "$out/libexec"
    ;;
  *) echo "unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac
