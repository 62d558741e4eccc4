#!/usr/bin/env bash
# The Python package `candor` and the Swift/Kotlin bindings (crates/candor-ffi).
#
#   1. builds the wheel with maturin (debug profile: `cargo test --workspace`
#      has already compiled every dependency in it, so only the library is
#      linked), the `candor` binary and the Rust SDK probe (examples/sdk_probe);
#   2. installs the wheel into a venv (with pytest and grpcio for the
#      tampering proxy);
#   3. generates the Swift and Kotlin sources with uniffi-bindgen and checks
#      they expose the API (compiling them needs Xcode / a Kotlin toolchain,
#      which this machine lacks: the interface is tested through Python);
#   4. runs pytest, which starts one `candor dev` for the session on a free
#      loopback port with its own data directory.
#
# Run from anywhere, as root on a fresh machine. Environment:
#   CARGO_TARGET_DIR     shared target dir (default ./target)
#   CANDOR_CARGO_LOCK    a file to `flock` around each cargo command (unset: none)
#   CANDOR_FFI_RELEASE=1 build everything with --release instead (for figures)
#   CANDOR_FFI_BENCH_SECONDS  seconds per side of the lookup benchmark (default 3)
#   PYTEST_ARGS          extra pytest arguments
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
WORK="$CARGO_TARGET_DIR/ffi-tests"
mkdir -p "$WORK"
start=$(date +%s)
step() { echo; echo "=== [ffi $(( $(date +%s) - start ))s] $*"; }

cargo_() {
  if [ -n "${CANDOR_CARGO_LOCK:-}" ]; then flock "$CANDOR_CARGO_LOCK" cargo "$@"; else cargo "$@"; fi
}

if [ "${CANDOR_FFI_RELEASE:-0}" = 1 ]; then
  PROFILE=release; CARGO_PROFILE=(--release); MATURIN_PROFILE=(--release)
else
  PROFILE=debug; CARGO_PROFILE=(); MATURIN_PROFILE=()
fi

step "python venv ($WORK/venv): maturin, pytest, grpcio"
PY=python3
if ! $PY -m venv --help >/dev/null 2>&1 || ! $PY -c 'import ensurepip' >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
fi
[ -x "$WORK/venv/bin/python" ] || $PY -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install -q --disable-pip-version-check \
  'maturin>=1.9,<2' 'pytest>=8' 'grpcio>=1.60'

step "build: candor binary and the Rust SDK probe ($PROFILE)"
cargo_ build "${CARGO_PROFILE[@]}" -p candor -p candor-ffi --example sdk_probe
# Private copies: the shared target dir may be rebuilt by someone else. Hard
# links where possible (cargo replaces files rather than rewriting them, so
# the linked inode stays as built; no extra disk space).
for f in "$PROFILE/candor:candor" "$PROFILE/examples/sdk_probe:sdk_probe"; do
  rm -f "$WORK/${f#*:}"
  ln "$CARGO_TARGET_DIR/${f%%:*}" "$WORK/${f#*:}" 2>/dev/null \
    || cp "$CARGO_TARGET_DIR/${f%%:*}" "$WORK/${f#*:}"
done

step "build: the wheel (maturin, uniffi bindings, $PROFILE)"
rm -rf "$WORK/wheels"
(cd crates/candor-ffi && if [ -n "${CANDOR_CARGO_LOCK:-}" ]; then
   flock "$CANDOR_CARGO_LOCK" "$WORK/venv/bin/maturin" build "${MATURIN_PROFILE[@]}" --out "$WORK/wheels"
 else
   "$WORK/venv/bin/maturin" build "${MATURIN_PROFILE[@]}" --out "$WORK/wheels"
 fi)
WHEEL=$(ls "$WORK"/wheels/candor-*.whl)
"$VPY" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$WHEEL"
echo "installed $WHEEL"

step "generate: Swift and Kotlin sources (uniffi-bindgen, library mode)"
# The library inside the installed wheel: exactly what the Python tests load.
LIB=$("$VPY" -c 'import os, candor._ffi as f; print(os.path.join(os.path.dirname(f.__file__), "libcandor_ffi.so"))')
rm -rf "$WORK/bindings"
cargo_ run -q "${CARGO_PROFILE[@]}" -p candor-ffi-bindgen --bin uniffi-bindgen -- generate \
  --library "$LIB" --language swift --language kotlin --out-dir "$WORK/bindings"
SWIFT="$WORK/bindings/candor_ffi.swift"
KOTLIN=$(find "$WORK/bindings" -name 'candor_ffi.kt' | head -1)
for sym in 'class Client' 'func lookup(' 'func history(' 'func publish(' 'func waitMerged(' \
           'class Monitor' 'func poll(' 'class Verifier' 'func contactCode(' 'enum CandorError'; do
  grep -qF "$sym" "$SWIFT" || { echo "Swift bindings lack '$sym'"; exit 1; }
done
for sym in 'class Client' 'fun `lookup`' 'fun `history`' 'fun `publish`' 'fun `waitMerged`' \
           'class Monitor' 'fun `poll`' 'class Verifier' 'fun `contactCode`' 'class CandorException'; do
  grep -qF "$sym" "$KOTLIN" || { echo "Kotlin bindings lack '$sym'"; exit 1; }
done
ls -l "$WORK/bindings" "$(dirname "$KOTLIN")"
echo "Swift and Kotlin sources generated (not compiled: no Swift/Kotlin toolchain here)"

step "pytest (candor dev on loopback; bench ${CANDOR_FFI_BENCH_SECONDS:-3}s per side)"
export CANDOR_BIN="$WORK/candor" CANDOR_SDK_PROBE="$WORK/sdk_probe"
export CANDOR_FFI_BENCH_OUT="$WORK/bench.json" CANDOR_FFI_PIDFILE="$WORK/candor-dev.pid"
rm -f "$CANDOR_FFI_BENCH_OUT" "$CANDOR_FFI_PIDFILE"
cleanup() {
  # A `candor dev` left behind by a killed pytest (only the one we started).
  if [ -f "$CANDOR_FFI_PIDFILE" ]; then kill "$(cat "$CANDOR_FFI_PIDFILE")" 2>/dev/null || true; fi
}
trap cleanup EXIT
(cd tests/ffi && timeout -k 10 600 "$VPY" -m pytest -q -p no:cacheprovider ${PYTEST_ARGS:-} .)

step "verified lookups per second ($PROFILE build), from $CANDOR_FFI_BENCH_OUT"
cat "$CANDOR_FFI_BENCH_OUT" 2>/dev/null || echo "(benchmark not run)"
step "done"
