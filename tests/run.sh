#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the system tests need,
# then runs every Rust test and every system-test suite under tests/.
#
#   tests/run.sh            everything (as root: apt/pip installs, network namespaces)
#   CANDOR_SKIP_SYSTEM=1    only `cargo test --workspace`
#
# Each suite under tests/<suite>/run.sh installs its own tools (pip, apt) and is
# bounded in time; with CI=true the slow ones run their short mode.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { echo; echo "=== [tests $(( $(date +%s) - start ))s] $*"; }

step "cargo test --workspace"
cargo test --workspace

if [ "${CANDOR_SKIP_SYSTEM:-0}" = 1 ]; then
  echo "CANDOR_SKIP_SYSTEM=1: system suites under tests/ not run"
  exit 0
fi

failed=()
for suite in tests/*/run.sh; do
  [ -f "$suite" ] || continue
  step "$suite"
  if bash "$suite"; then
    echo "--- $suite: ok"
  else
    echo "--- $suite: FAILED (exit $?)"
    failed+=("$suite")
  fi
done

step "done"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed suites: ${failed[*]}"
  exit 1
fi
