#!/usr/bin/env bash
# The multi-host fault test (#19): five hosts as network namespaces on a bridge,
# three members and two front doors, a seeded nemesis (partitions, asymmetric
# drops, kill -9, SIGSTOP, a slow lossy link, a full disk), then a checker over
# the recorded history. Needs root (ip netns, iptables, tc, mount).
#
#   CANDOR_NEMESIS_SECS   seconds of faults (default 90; CI too)
#   CANDOR_NEMESIS_SEED   replay a run (the seed is printed)
#   CANDOR_NEMESIS_DIR    where the history and the processes' logs are written (default: target/nemesis)
#   CANDOR_NEMESIS_FAULTS only these fault kinds (e.g. slow-link,pause)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then
  echo "!!! tests/nemesis: SKIPPED: needs root (network namespaces, iptables, tc, mount) !!!"
  exit 0
fi
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
command -v tc >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
probe="candorprobe$$"
if ! ip netns add "$probe" 2>/dev/null; then
  echo "!!! tests/nemesis: SKIPPED: this host cannot create network namespaces (ip netns add failed) !!!"
  exit 0
fi
ip netns del "$probe"
export CANDOR_NEMESIS_DIR="${CANDOR_NEMESIS_DIR:-$PWD/target/nemesis}"
mkdir -p "$CANDOR_NEMESIS_DIR"
export CANDOR_NEMESIS_SECS="${CANDOR_NEMESIS_SECS:-90}"
cargo test -p candor --test nemesis -- --ignored --nocapture
