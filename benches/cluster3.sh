#!/usr/bin/env bash
# usage: benches/cluster3.sh plain|mtls  (after cargo build --release -p candor)
# Three local members (16 shards, 1 s epochs), a write-heavy and a lookup-only
# `candor bench` run; `mtls` turns on mutual TLS on the Raft port. Prints the figures.
set -u
case "${1:-}" in plain|mtls) ;; *) echo "usage: $0 plain|mtls" >&2; exit 1;; esac
B=${B:-target/release/candor}; B=$(realpath "$B")
W=${CANDOR_BENCH_DIR:-/tmp/candor-cluster3}/$1
rm -rf $W && mkdir -p $W && cd $W
$B keygen --dir keys >/dev/null
$B tls gen-dev-certs --dir certs --nodes 1,2,3 >/dev/null
M="--member 1=127.0.0.1:9811 --member 2=127.0.0.1:9812 --member 3=127.0.0.1:9813"
for i in 1 2 3; do
  if [ "$1" = mtls ]; then
    export CANDOR_TLS__CLUSTER=true CANDOR_TLS__CA=$W/certs/ca.crt CANDOR_TLS__CERT=$W/certs/node-$i.crt CANDOR_TLS__KEY=$W/certs/node-$i.key
  fi
  CANDOR_LOG=warn $B serve --dev-token --node-id $i --data-dir n$i --keys-dir keys --listen 127.0.0.1:980$i --raft-listen 127.0.0.1:981$i $M $([ $i = 1 ] && echo --bootstrap) > n$i.log 2>&1 &
  echo $! >> pids
done
unset CANDOR_TLS__CLUSTER CANDOR_TLS__CA CANDOR_TLS__CERT CANDOR_TLS__KEY
for t in $(seq 1 120); do [ -f n1/config.bin ] && break; sleep 0.5; done
sleep 4
# CPU seconds (user + system) each member has used so far, to say what the
# cluster spends per mutation next to `candor dev` on the same cores.
cpu() { for p in $(cat pids); do awk -v t="$(getconf CLK_TCK)" '{printf "%.1f ", ($14+$15)/t}' /proc/$p/stat; done; }
echo "cpu0 $(cpu)" > cpu.txt
$B bench --target http://127.0.0.1:9801 --pin n1/config.bin --token "$(cat keys/dev-token)" --mix new=50,update=50 --batch 100 --concurrency 4 --duration 20s --json pub.json > pub.txt 2>&1
echo "cpu1 $(cpu)" >> cpu.txt
$B bench --target http://127.0.0.1:9802 --pin n1/config.bin --mix lookup=100 --preload 5000 --concurrency 32 --duration 15s --token "$(cat keys/dev-token)" --json look.json > look.txt 2>&1
echo "cpu2 $(cpu)" >> cpu.txt
kill $(cat pids); wait 2>/dev/null
python3 - <<PY
import json
p=json.load(open("pub.json")); l=json.load(open("look.json"))
def g(d,*ks):
    for k in ks: d=d.get(k,{}) if isinstance(d,dict) else {}
    return d
print("$1", "mut/s", p.get("mutations_per_s"), "smt", p.get("smt_latency_ms"), "merge", p.get("merge_delay_ms"), "errors", p.get("errors"))
c = {l.split()[0]: [float(x) for x in l.split()[1:]] for l in open("cpu.txt")}
w = [b - a for a, b in zip(c["cpu0"], c["cpu1"])]
r = [b - a for a, b in zip(c["cpu1"], c["cpu2"])]
n = p.get("counts", {}).get("mutations", 0)
print("$1", "member CPU s during the write run", w, "=", round(sum(w) / max(n, 1) * 1e6), "us per mutation, all members")
print("$1", "member CPU s during the lookup run (incl. preload)", r)
print("$1", "lookups/s", l.get("lookups_per_s"), "lat", l.get("lookup_latency_ms"), "errors", l.get("errors"))
PY
