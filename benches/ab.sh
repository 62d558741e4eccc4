#!/usr/bin/env bash
# Interleaved A/B of two candor binaries under the same `candor bench --embedded`
# load: A, B, A, B, ... so that the machine's other load falls on both alike.
#
#   benches/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]
#   OPTS="--mix lookup=100 --preload 10000 --concurrency 32" benches/ab.sh a b
#
# Prints one line per run: mutations/s, SMT p50/p99, merge delay, lookups/s, lookup
# p50/p99, verify median (from each run's --json summary) and the load average.
set -euo pipefail
a=${1:?usage: benches/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]}
b=${2:?usage: benches/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]}
rounds=${3:-2}
opts=${OPTS:---mix new=50,update=50 --batch 100 --concurrency 16}
duration=${DURATION:-20s}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
summary='
import json, sys
side, binary, path, load = sys.argv[1:5]
j = json.load(open(path))
sp50, sp99 = j["smt_latency_ms"]["p50"], j["smt_latency_ms"]["p99"]
lp50, lp99 = j["lookup_latency_ms"]["p50"], j["lookup_latency_ms"]["p99"]
mp50, mp99 = j["merge_delay_ms"]["p50"], j["merge_delay_ms"]["p99"]
m, n, v = j["mutations_per_s"], j["lookups_per_s"], j["verify_us_median"]
e = sum(j["errors"].values())
print(f"{side} {binary}: {m:,.0f} mutations/s, SMT p50 {sp50:.1f} ms p99 {sp99:.1f} ms,"
      f" merge delay p50 {mp50:.0f} ms p99 {mp99:.0f} ms;"
      f" {n:,.0f} lookups/s, p50 {lp50:.1f} ms p99 {lp99:.1f} ms, verify median {v:.0f} us;"
      f" errors {e}; load {load}")
'
echo "options: $opts --duration $duration"
for r in $(seq 1 "$rounds"); do
  for side in A B; do
    bin=$a
    [ "$side" = B ] && bin=$b
    # shellcheck disable=SC2086 # OPTS is a list of flags
    "$bin" bench --embedded --quiet $opts --duration "$duration" --json "$out/$side$r.json" >/dev/null
    python3 -c "$summary" "$side" "$bin" "$out/$side$r.json" "$(cut -d' ' -f1-3 /proc/loadavg)"
  done
done
