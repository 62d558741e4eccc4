#!/usr/bin/env bash
# Checks that docs/architecture.md names every workspace crate and that its crate-graph
# table matches `cargo metadata` (regenerate with crate_graph.py --write).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v python3 >/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3 >/dev/null
fi
python3 tests/architecture/crate_graph.py
