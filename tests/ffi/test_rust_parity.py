"""The Python results equal the plain Rust SDK's for the same calls, and
verified lookups per second from Python next to the Rust SDK, in one run."""

from __future__ import annotations

import json
import os
import time

import candor
from wire import bytes_field, field_bytes, raw_call, varint_field

LABELS = ["alice@example.com", "bob@example.com", "carol@example.com", "absent@example.com"]


def _hex(b):
    return None if b is None else b.hex()


def test_lookup_and_history_equal_the_rust_sdk(service, published, probe):
    c = service.client()
    epoch = c.latest_head().epoch
    rust = {r["label"]: r for r in probe.lookup(epoch, LABELS)}
    for label in LABELS:
        py = c.lookup(label, epoch=epoch)
        assert {
            "label": label,
            "epoch": py.head.epoch,
            "map_root": py.head.map_root.hex(),
            "index": py.index.hex(),
            "found": py.found,
            "version": py.version,
            "value": _hex(py.value),
            "leaf_hash": _hex(py.leaf_hash),
            "commitment": _hex(py.commitment),
        } == rust[label]

    rust = {r["label"]: r for r in probe.history(epoch, LABELS)}
    for label in LABELS:
        py = c.history(label, epoch=epoch)
        assert {
            "label": label,
            "epoch": py.head.epoch,
            "index": py.index.hex(),
            "latest_version": py.latest_version,
            "versions": [
                {
                    "version": v.version,
                    "value": _hex(v.value),
                    "leaf_hash": v.leaf_hash.hex(),
                    "commitment": v.commitment.hex(),
                }
                for v in py.versions
            ],
        } == rust[label]
    # And what was published is what both see.
    alice = rust["alice@example.com"]
    assert [v["value"] for v in alice["versions"]] == [b"alice key v1".hex(), b"alice key v2".hex()]
    assert alice["versions"][1]["leaf_hash"] == published["alice@example.com"][1].leaf_hash.hex()


def test_contact_codes_equal_the_rust_sdk(probe):
    for args in [
        ("alice", "key-a", "bob", "key-b"),
        ("alice@example.com", "alice key v2", "bob@example.com", "bob key v1"),
        ("x", "", "y", "z"),
    ]:
        assert candor.contact_code(*args) == probe.contact_code(*args)


def test_verified_lookups_per_second(service, published, probe, capsys):
    """Sequential verified lookups at the latest epoch, same labels, same
    service, same duration: Python (through the bindings) then the Rust SDK.
    Reports; asserts only that both did work (never wall-clock figures)."""
    seconds = float(os.environ.get("CANDOR_FFI_BENCH_SECONDS", "3"))
    labels = LABELS[:3]
    c = service.client()
    for label in labels:  # warm up: connection, head tracking
        c.lookup(label)
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        r = c.lookup(labels[done % len(labels)])
        assert r.found
        done += 1
    elapsed = time.perf_counter() - start
    python = {"lookups": done, "seconds": elapsed, "per_second": done / elapsed}
    rust = probe.bench(seconds, labels)
    assert python["lookups"] > 0 and rust["lookups"] > 0

    # The client side alone: one raw lookup response (head + proof bytes)
    # verified over and over, no network (Verifier vs candor_client::verify).
    epoch = c.latest_head().epoch
    label = labels[0]
    resp = raw_call(service.target, "Lookup", bytes_field(1, label.encode()) + varint_field(2, epoch))
    head, proof = field_bytes(resp, 3), field_bytes(resp, 2)
    v = candor.Verifier(candor.make_pin(service.config))
    args = (label.encode(), epoch, head, proof)
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        v.verify_lookup(*args)
        done += 1
    elapsed = time.perf_counter() - start
    py_verify = {"verifications": done, "seconds": elapsed, "per_second": done / elapsed}
    rust_verify = probe.verify_bench(seconds, label, epoch, head, proof)
    assert py_verify["verifications"] > 0 and rust_verify["verifications"] > 0

    report = {
        "end_to_end": {
            "python": python,
            "rust_sdk": rust,
            "python_over_rust": python["per_second"] / rust["per_second"],
            "note": "sequential verified lookups at the latest epoch over gRPC, one client each, same candor dev",
        },
        "verify_only": {
            "python": py_verify,
            "rust_sdk": rust_verify,
            "python_over_rust": py_verify["per_second"] / rust_verify["per_second"],
            "note": "one lookup response (signed head + proof) verified repeatedly, no network",
        },
        "labels": labels,
    }
    out = os.environ.get("CANDOR_FFI_BENCH_OUT")
    if out:
        with open(out, "w") as f:
            json.dump(report, f, indent=2)
    with capsys.disabled():
        print(
            f"\nverified lookups/s: python {python['per_second']:.0f} "
            f"({python['lookups']} in {python['seconds']:.1f}s), "
            f"rust sdk {rust['per_second']:.0f} ({rust['lookups']} in {rust['seconds']:.1f}s), "
            f"ratio {report['end_to_end']['python_over_rust']:.2f}; "
            f"verify only: python {py_verify['per_second']:.0f}/s, "
            f"rust {rust_verify['per_second']:.0f}/s, "
            f"ratio {report['verify_only']['python_over_rust']:.2f}"
        )
