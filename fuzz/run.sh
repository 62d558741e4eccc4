#!/usr/bin/env bash
# Fuzz every target (or those named) for SECONDS each with cargo-fuzz (libFuzzer,
# nightly toolchain), growing the committed corpora under fuzz/corpus/<target>/.
#
#   fuzz/run.sh [SECONDS] [TARGET ...]      default 60 s, every target
#
# A crash leaves its input under fuzz/artifacts/<target>/; reproduce with
#   cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...
# CI does not fuzz: it replays the corpora on stable
# (`cargo test -p candor-core --test fuzz_corpus` for the decoder targets,
# `cargo test -p candor --test fuzz_corpus` for those of fuzz/harness).
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"; shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
python3 seed.py >/dev/null
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
for t in "${targets[@]}"; do
  echo "=== $t: ${secs}s"
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -max_len=65536 2>&1 \
    | grep -E "^#[0-9]+.*(DONE|pulse)|Done [0-9]+ runs|SUMMARY|panicked|ERROR" | tail -3
  # Keep the corpus small: only inputs that add coverage.
  tmp=$(mktemp -d)
  cargo +nightly fuzz cmin "$t" "corpus/$t" >/dev/null 2>&1 || true
  rm -rf "$tmp"
  echo "corpus/$t: $(ls "corpus/$t" | wc -l) inputs"
done
