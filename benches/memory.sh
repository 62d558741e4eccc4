#!/usr/bin/env bash
# usage: benches/memory.sh [LABELS] [STEP]   (after cargo build --release -p candor)
# Issue 15's memory and insert-rate curve: a `candor dev` (16 shards, 1 s epochs) is
# loaded with new labels in steps of STEP (default 250,000) up to LABELS (default
# 1,000,000) by `candor bench --mix new=100 --batch 500`; after each step it prints the
# labels held, the step's insert rate, the dev process's resident memory (now and
# peak, from /proc), and the store's bytes on disk per label-version.
#   TOKIO_WORKER_THREADS=16 benches/memory.sh   reproduces a 16-core machine's thread
#   count on a small one (more threads: more allocator arenas and caches).
#   LOOKUPS=1 benches/memory.sh 1000000 100000   the scale curve: after each step also
#   10 s of verified lookups (32 in flight, --vrf-memo 0: every VRF proof verified) of
#   2,000 labels published for it, printing lookups/s, lookup p50/p99 and the median
#   proof bytes at that size.
set -u
LABELS=${1:-1000000}; STEP=${2:-250000}
B=${B:-target/release/candor}; B=$(realpath "$B")
W=${CANDOR_BENCH_DIR:-/tmp/candor-memory}
rm -rf "$W" && mkdir -p "$W" && cd "$W"
CANDOR_LOG=warn $B dev --data-dir data --listen 127.0.0.1:8790 > dev.log 2>&1 &
DEV=$!
trap 'kill $DEV 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 1 120); do [ -f data/config.bin ] && [ -f data/dev-token ] && break; sleep 0.5; done
sleep 3
rss() { awk '/^VmRSS/ {print int($2/1024)}' /proc/$DEV/status; }
hwm() { awk '/^VmHWM/ {print int($2/1024)}' /proc/$DEV/status; }
LOOKUPS=${LOOKUPS:-0}
printf "%10s %12s %9s %9s %14s" labels "labels/s" "RSS MiB" "peak MiB" "disk B/label"
[ "$LOOKUPS" = 1 ] && printf " %10s %9s %9s %9s" "lookups/s" "p50 ms" "p99 ms" "proof B"
echo
held=0
while [ "$held" -lt "$LABELS" ]; do
  $B bench --target http://127.0.0.1:8790 --pin data/config.bin --token "$(cat data/dev-token)" \
    --mix new=100 --batch 500 --merge-sample 0 --preload 0 --concurrency 16 --ops "$STEP" \
    --json step.json --quiet > step.txt 2>&1 || { echo "bench failed:"; tail -5 step.txt; exit 1; }
  held=$((held + STEP))
  rate=$(python3 -c "import json; print(round(json.load(open('step.json'))['mutations_per_s']))")
  disk=$(du -sb data | awk '{print $1}')
  extra=""
  if [ "$LOOKUPS" = 1 ]; then
    $B bench --target http://127.0.0.1:8790 --pin data/config.bin --token "$(cat data/dev-token)" \
      --mix lookup=100 --preload 2000 --merge-sample 0 --concurrency 32 --vrf-memo 0 --duration 10s \
      --json look.json --quiet > look.txt 2>&1 || { echo "lookup bench failed:"; tail -5 look.txt; exit 1; }
    look=$(python3 -c "import json; j=json.load(open('look.json')); l=j['lookup_latency_ms']; print(round(j['lookups_per_s']), round(l['p50'], 1), round(l['p99'], 1), j['proof_bytes_median'])")
    # shellcheck disable=SC2086 # four numbers
    extra=$(printf " %10s %9s %9s %9s" $look)
  fi
  printf "%10d %12s %9s %9s %14d%s\n" "$held" "$rate" "$(rss)" "$(hwm)" $((disk / held)) "$extra"
done
# Resident memory while epochs go by with no load.
sleep 30
echo "after 30 s idle: RSS $(rss) MiB"
