#!/usr/bin/env bash
# usage: benches/heap-profile.sh [LABELS] [ROLE]   (after cargo build --release -p candor)
# Issue 15: what holds `candor dev`'s memory. Runs the dev process under heaptrack
# (apt install heaptrack; LD_PRELOAD, so the release binary as built), loads LABELS
# new labels (default 300,000) with `candor bench --mix new=100 --batch 500`, lets
# epochs go by idle for 20 s, stops it with SIGTERM (a clean shutdown), and prints
#   * the heap in use at its peak and still allocated at the stop, and the
#     largest holders at the peak folded by owner (benches/heap-fold.py); the
#     backtraces are in $W/peak.txt;
#   * resident memory just before the stop, for comparison with the heap (the
#     difference is allocator overhead, thread stacks and code).
# ROLE=api (second argument) profiles a stateless front door instead: a `candor
# dev` serves behind it and the load goes through the front door.
#   CONCURRENCY=N sets the load generator's requests in flight (default 16).
#   FROM=DIR benches/heap-profile.sh 100000   starts from the store in DIR (moved,
#   not copied: e.g. the data directory benches/memory.sh leaves in
#   /tmp/candor-memory/data) instead of an empty one, to see what a large store
#   holds in memory once it is opened and written to again.
set -u
LABELS=${1:-300000}; ROLE=${2:-dev}
B=${B:-target/release/candor}; B=$(realpath "$B")
HERE=$(cd "$(dirname "$0")" && pwd)
W=${CANDOR_BENCH_DIR:-/tmp/candor-heap}
command -v heaptrack >/dev/null || { echo "heaptrack is not installed (apt install heaptrack)"; exit 1; }
rm -rf "$W" && mkdir -p "$W" && cd "$W"
if [ -n "${FROM:-}" ]; then
  [ -f "$FROM/config.bin" ] || { echo "FROM=$FROM holds no candor store"; exit 1; }
  mv "$FROM" "$W/data"
fi
if [ "$ROLE" = api ]; then
  CANDOR_LOG=warn $B dev --data-dir data --listen 127.0.0.1:8790 > dev.log 2>&1 &
  for _ in $(seq 1 120); do [ -f data/config.bin ] && [ -f data/dev-token ] && break; sleep 0.5; done
  CANDOR_LOG=warn heaptrack -o "$W/heap" $B serve --role api --listen 127.0.0.1:8791 \
    --upstream http://127.0.0.1:8790 > profiled.log 2>&1 &
  TARGET=http://127.0.0.1:8791
else
  CANDOR_LOG=warn heaptrack -o "$W/heap" $B dev --data-dir data --listen 127.0.0.1:8790 > profiled.log 2>&1 &
  TARGET=http://127.0.0.1:8790
fi
trap 'pkill -P $$ 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 1 240); do [ -f data/config.bin ] && [ -f data/dev-token ] && break; sleep 0.5; done
# A large store takes a while to open: wait until the API port answers.
for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/${TARGET##*:}") 2>/dev/null && break; sleep 0.5; done
sleep 5
if [ "$ROLE" = api ]; then PROF=$(pgrep -n -f "serve --role api"); else PROF=$(pgrep -n -f "candor dev --data-dir data"); fi
$B bench --target "$TARGET" --pin data/config.bin --token "$(cat data/dev-token)" \
  --mix new=100 --batch 500 --merge-sample 0 --preload 0 --concurrency "${CONCURRENCY:-16}" --ops "$LABELS" \
  --json load.json --quiet > load.txt 2>&1 || { echo "load failed:"; tail -5 load.txt; exit 1; }
echo "loaded $LABELS labels at $(python3 -c "import json; print(round(json.load(open('load.json'))['mutations_per_s']))") labels/s (under heaptrack)"
sleep 20
echo "resident before the stop: $(awk '/^VmRSS/ {print int($2/1024)}' /proc/$PROF/status) MiB, peak $(awk '/^VmHWM/ {print int($2/1024)}' /proc/$PROF/status) MiB"
kill -TERM "$PROF"
for _ in $(seq 1 120); do kill -0 "$PROF" 2>/dev/null || break; sleep 0.5; done
sleep 2
F=$(ls "$W"/heap*.zst "$W"/heap*.gz 2>/dev/null | head -1)
[ -n "$F" ] || { echo "no heaptrack output"; tail -20 profiled.log; exit 1; }
heaptrack_print -f "$F" --print-peaks 1 --print-allocators 0 --print-temporary 0 \
  --print-leaks 1 --peak-limit 40 --sub-peak-limit 8 > peak.txt 2>/dev/null
grep -E "^(peak heap memory consumption|peak RSS|total memory leaked)" peak.txt
heaptrack_print -f "$F" --flamegraph-cost-type peak -F peak.folded > /dev/null 2>&1
echo "largest holders at the peak, by owner:"
python3 "$HERE/heap-fold.py" peak.folded 25
