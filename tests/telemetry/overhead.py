#!/usr/bin/env python3
"""Telemetry export overhead (issue 12): `candor bench --embedded` with OTLP
export off and on, alternated in one run against a real OTLP/gRPC receiver
(the suite's), so both sides see the same machine state.

    python3 tests/telemetry/overhead.py [--bin target/release/candor]
        [--rounds 3] [--duration 20s] [--concurrency 64] [--sample-ratio 0.1]

Export on = OTEL_EXPORTER_OTLP_ENDPOINT set: traces and metrics go to the
receiver, and the Prometheus reader is on too (the server's configuration).
Prints each run's mutations/s and lookups/s, then the ratio of the medians.
A measurement, not a test: it asserts nothing about time.
"""

import argparse
import json
import os
import resource
import time
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Receiver  # noqa: E402


def run(bin_path, export_endpoint, duration, concurrency, tmp, name, sampler=None):
    out = os.path.join(tmp, f"{name}.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if export_endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = export_endpoint
        env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"
        env["OTEL_SERVICE_NAME"] = "candor-bench"
        if sampler:
            env["OTEL_TRACES_SAMPLER"], env["OTEL_TRACES_SAMPLER_ARG"] = sampler
    cmd = [bin_path, "bench", "--embedded", "--duration", duration,
           "--concurrency", str(concurrency), "--json", out, "--quiet"]
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out) as f:
        r = json.load(f)
    # CPU time (user + system) of the bench process per operation: steadier than
    # throughput on a shared machine, whose speed drifts between runs.
    cpu = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
    ops = r["counts"]["mutations"] + r["counts"]["lookups"]
    return r["mutations_per_s"], r["lookups_per_s"], sum(r["errors"].values()), 1e6 * cpu / max(ops, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/candor")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", default="20s")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--sample-ratio", type=float, default=None,
                    help="OTEL_TRACES_SAMPLER=parentbased_traceidratio with this ratio "
                         "(default: the SDK's default, every trace)")
    a = ap.parse_args()
    rx = Receiver()
    rows = {"off": [], "on": []}
    cpu_per_op = {"off": [], "on": []}
    # The receiver shares this machine's cores with the bench: its CPU time is
    # reported so the cost can be split between Candor and the collector.
    rx_cpu = {"off": 0.0, "on": 0.0}
    wall = {"off": 0.0, "on": 0.0}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(a.rounds):
                # Alternate which side goes first, so drift hits both.
                order = ["off", "on"] if i % 2 == 0 else ["on", "off"]
                for side in order:
                    ep = rx.endpoint if side == "on" else None
                    sampler = (None if a.sample_ratio is None
                               else ("parentbased_traceidratio", str(a.sample_ratio)))
                    r0 = resource.getrusage(resource.RUSAGE_SELF)
                    t0 = time.monotonic()
                    m, l, e, c = run(a.bin, ep, a.duration, a.concurrency, tmp, f"{side}{i}", sampler)
                    cpu_per_op[side].append(c)
                    r1 = resource.getrusage(resource.RUSAGE_SELF)
                    wall[side] += time.monotonic() - t0
                    rx_cpu[side] += (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
                    rows[side].append((m, l))
                    print(f"round {i + 1} export {side:3}: {m:9.0f} mutations/s "
                          f"{l:9.0f} lookups/s  {c:6.0f} CPU-us/op  errors {e}", flush=True)
    finally:
        spans = len(rx.span_list())
        rx.stop()
    med = {s: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
           for s, v in rows.items()}
    print(f"receiver got {spans} spans while export was on")
    cores = os.cpu_count() or 1
    print(f"receiver (this Python process) used {rx_cpu['on']:.1f} CPU-s in {wall['on']:.0f} s "
          f"of export on = {100 * rx_cpu['on'] / (wall['on'] * cores):.1f} % of the {cores} cores "
          f"the bench runs on (export off: {rx_cpu['off']:.1f} CPU-s)")
    for k, name in ((0, "mutations/s"), (1, "lookups/s")):
        on, off = med["on"][k], med["off"][k]
        # Each round's two runs are adjacent in time: their ratio cancels the
        # machine's drift, which on a small machine is as large as the effect.
        paired = statistics.median(r_on[k] / r_off[k] for r_on, r_off in zip(rows["on"], rows["off"]))
        print(f"median {name}: off {off:.0f}, on {on:.0f}, on/off = {on / off:.3f} "
              f"(cost {100 * (1 - on / off):+.1f} %); median of the {len(rows['on'])} paired "
              f"rounds' on/off = {paired:.3f} (cost {100 * (1 - paired):+.1f} %)")
    paired_cpu = statistics.median(on / off for on, off in zip(cpu_per_op["on"], cpu_per_op["off"]))
    print(f"median CPU per operation: off {statistics.median(cpu_per_op['off']):.0f} us, "
          f"on {statistics.median(cpu_per_op['on']):.0f} us; median of the paired rounds' "
          f"on/off = {paired_cpu:.3f} (cost {100 * (paired_cpu - 1):+.1f} %)")
    if spans == 0:
        print("the receiver got no span: export did not happen", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
