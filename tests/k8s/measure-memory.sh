#!/usr/bin/env bash
# Memory of a `candor serve` member and of a front door under `candor bench` load, for
# the chart's resource requests and limits (helm/candor/values.yaml). Not part of
# run.sh. Usage: bash tests/k8s/measure-memory.sh [BIN] [DURATION] [SHARDS]
# Starts three members and one front door on 127.0.0.1 (ports 18700-18721), runs
# `candor bench` through the front door, and prints each process's peak RSS (VmHWM)
# and final RSS.
set -euo pipefail
BIN=${1:-${CANDOR_BIN:-target/debug/candor}}
DURATION=${2:-60s}
SHARDS=${3:-16}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
"$BIN" keygen --dir "$WORK/keys" >/dev/null
M="--member 1=127.0.0.1:18711 --member 2=127.0.0.1:18712 --member 3=127.0.0.1:18713"
for i in 1 2 3; do
  boot=""; [ "$i" = 1 ] && boot="--bootstrap"
  "$BIN" serve --role all --dev-token --node-id "$i" $boot --keys-dir "$WORK/keys" --data-dir "$WORK/m$i" \
    --listen "127.0.0.1:1870$i" --raft-listen "127.0.0.1:1871$i" --shards "$SHARDS" $M \
    >"$WORK/m$i.log" 2>&1 &
  PIDS+=($!)
done
"$BIN" serve --role api --listen 127.0.0.1:18700 --upstream http://127.0.0.1:18701 \
  --upstream http://127.0.0.1:18702 --upstream http://127.0.0.1:18703 >"$WORK/api.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 120); do [ -f "$WORK/m1/config.bin" ] && break; sleep 0.5; done
sleep 3
"$BIN" bench --target http://127.0.0.1:18700 --pin "$WORK/m1/config.bin" \
  --token "$(cat "$WORK/keys/dev-token")" --duration "$DURATION" --attempts 5 --quiet \
  >"$WORK/bench.txt" 2>&1 &
BENCH=$!
while kill -0 "$BENCH" 2>/dev/null; do sleep 1; done
rc=0; wait "$BENCH" || rc=$?
cat "$WORK/bench.txt"
echo "candor bench exited $rc"
names=(member-1 member-2 member-3 front-door)
for i in 0 1 2 3; do
  p=${PIDS[$i]}
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$p/status")
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$p/status")
  echo "${names[$i]}: peak RSS $((hwm / 1024)) MiB, RSS after the run $((rss / 1024)) MiB"
done
