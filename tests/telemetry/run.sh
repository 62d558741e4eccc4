#!/bin/sh
# Telemetry suite (issue 12): promtool checks and unit tests of the alert
# rules, then pytest against real receivers: an OTLP/gRPC collector
# (opentelemetry-proto + grpcio, tests named *otlp*) and a Prometheus server
# (Debian `prometheus`, tests named *prometheus*). Run from the repo root as
# root on a fresh machine; installs what it needs. CANDOR_BIN overrides the
# binary (default: builds target/debug/candor).
set -eu
cd "$(dirname "$0")/../.."

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi
python3 -c 'import grpc, pytest, opentelemetry.proto' 2>/dev/null \
    || python3 -m pip install -q opentelemetry-proto grpcio pytest

echo "== promtool check rules / test rules"
promtool check rules deploy/observability/prometheus/candor-alerts.yml
(cd deploy/observability/prometheus && promtool test rules candor-alerts.test.yml)
python3 -c 'import json,sys; json.load(open("deploy/observability/grafana/candor-dashboard.json"))'

if [ -z "${CANDOR_BIN:-}" ]; then
    cargo build -p candor
    CANDOR_BIN="${CARGO_TARGET_DIR:-target}/debug/candor"
fi
export CANDOR_BIN
echo "== pytest (otlp, prometheus) with $CANDOR_BIN"
timeout 600 python3 -m pytest -q -s -p no:cacheprovider tests/telemetry "$@"
