"""The Python package against a real `candor dev`: publish, SMT verified,
merged, lookup and history verified, heads, monitor, contact codes, raw-byte
verification."""

from __future__ import annotations

import os
import pathlib

import pytest

import candor
from wire import bytes_field, field_bytes, raw_call, varint_field


def test_publish_verified_merged_lookup_history(service):
    c = service.client()
    label, value = "dave@example.com", b"dave device key \x00\x01"
    p = c.publish(label, value)
    # The SMT was verified against exactly this label and value.
    assert p.label == label.encode() and p.version == 1
    assert len(p.index) == 32 and len(p.leaf_hash) == 32 and p.prev_leaf_hash == bytes(32)
    assert p.merge_deadline_ms > p.timestamp_ms
    assert any("SMT signature" in v for v in p.verified)
    assert any("commitment opens" in v for v in p.verified)
    assert candor.Verifier(candor.make_pin(service.config)).verify_smt(p.smt).leaf_hash == p.leaf_hash

    m = c.wait_merged(p, timeout=60)
    assert m.version == 1 and m.leaf_hash == p.leaf_hash
    assert m.head.timestamp_ms <= p.merge_deadline_ms
    assert m.history.versions[0].leaf_hash == p.leaf_hash

    r = c.lookup(label)
    assert r.found and r.version == 1 and r.value == value
    assert r.leaf_hash == p.leaf_hash and r.index == p.index
    assert r.head.epoch >= m.head.epoch
    assert any("consistent" in v for v in r.verified)

    p2 = c.publish(label, b"dave device key 2")
    assert p2.version == 2 and p2.prev_leaf_hash == p.leaf_hash
    c.wait_merged(p2, timeout=60)
    h = c.history(label)
    assert h.latest_version == 2
    assert [v.value for v in h.versions] == [value, b"dave device key 2"]
    assert [v.leaf_hash for v in h.versions] == [p.leaf_hash, p2.leaf_hash]
    assert h.versions[1].prev_leaf_hash == p.leaf_hash

    # Lookup at the epoch of the first merge still shows version 1.
    old = c.lookup(label, epoch=m.head.epoch)
    assert old.version == 1 and old.head.epoch == m.head.epoch


def test_absent_label_is_proven_absent(service):
    r = service.client().lookup("nobody-" + os.urandom(6).hex())
    assert not r.found and r.version is None and r.value is None
    h = service.client().history(b"nobody-" + os.urandom(6).hex().encode())
    assert h.latest_version == 0 and h.versions == []


def test_heads_and_consistency(service, published):
    c = service.client()
    latest = c.latest_head()
    assert latest.config_digest.hex() == service.digest
    assert len(latest.map_root) == 32 and latest.signed
    first = c.head(1)
    assert first.epoch == 1
    checks = c.verify_consistency(first.signed, latest.signed)
    assert any("prefix" in x for x in checks)
    # A fresh client restored from the tracker state accepts newer heads by
    # consistency proof.
    state = c.tracker_state()
    c2 = service.client(tracker_state=state)
    assert c2.last_head().epoch == latest.epoch
    assert c2.observe_head(c.latest_head().signed).epoch >= latest.epoch
    with pytest.raises(candor.InvalidArgumentError):
        c.verify_consistency(latest.signed, first.signed)


def test_token_required_for_publish(service):
    c = service.client(token=None)
    with pytest.raises(candor.ServerStatusError) as e:
        c.publish("eve@example.com", "x")
    assert e.value.code == 16 and e.value.code_name == "Unauthenticated"


def test_bad_input_is_typed(service):
    c = service.client()
    with pytest.raises(candor.InvalidArgumentError):
        c.lookup(b"")
    with pytest.raises(TypeError):
        c.lookup(12)  # type: ignore[arg-type]
    with pytest.raises(candor.StateError):
        service.client(tracker_state=b"garbage")
    with pytest.raises(candor.Error):
        c.wait_merged(candor.PublishResult(
            label=b"x", version=1, index=bytes(32), leaf_hash=bytes(32), commitment=bytes(32),
            nonce=bytes(32), prev_leaf_hash=bytes(32), shard=0, timestamp_ms=0,
            merge_deadline_ms=0, smt=b"not an smt", idempotency_key="k", verified=[]))


def test_unreachable_service_is_a_transport_error():
    with pytest.raises(candor.TransportError):
        candor.Client("http://127.0.0.1:1", pin="00" * 32)


def test_monitor_confirms_own_versions_and_alarms_on_others(service):
    owner = service.client()
    label = "frank-" + os.urandom(4).hex()
    p = owner.publish(label, b"frank phone key")
    mon = owner.monitor()
    mon.watch(label, [p])
    owner.wait_merged(p)
    events = mon.poll()
    assert [(e.kind, e.version, e.alarm) for e in events] == [
        (candor.MonitorEventKind.CONFIRMED, 1, False)
    ]
    state = mon.state()

    # Someone else (anyone holding a token) publishes under frank's label.
    attacker = service.client()
    evil = attacker.publish(label, b"attacker key")
    attacker.wait_merged(evil)
    mon2 = owner.monitor(state=state)
    events = mon2.poll()
    alarms = [e for e in events if e.alarm]
    assert len(alarms) == 1
    assert alarms[0].kind == candor.MonitorEventKind.UNEXPECTED_CHANGE
    assert alarms[0].version == 2 and alarms[0].leaf_hash == evil.leaf_hash
    # Raised once only.
    attacker.wait_merged(attacker.publish("unrelated-" + os.urandom(4).hex(), b"x"))
    assert [e for e in mon2.poll() if e.alarm] == []


def test_contact_code(service, published):
    c = service.client()
    a, b = c.lookup("alice@example.com"), c.lookup("bob@example.com")
    code = candor.contact_code("alice@example.com", a.value, "bob@example.com", b.value)
    assert code == candor.contact_code("bob@example.com", b.value, "alice@example.com", a.value)
    groups = code.split(" ")
    assert len(groups) == 12 and all(len(g) == 5 and g.isdigit() for g in groups)
    # The SDK's test vector.
    assert candor.contact_code("alice", "key-a", "bob", "key-b") == (
        "98847 06193 14087 46920 68863 36146 34854 12433 54326 97644 94084 62124"
    )


def test_verifier_on_raw_bytes(service, published):
    """A caller with its own transport: raw gRPC bytes in, same results."""
    c = service.client()
    epoch = c.latest_head().epoch
    v = candor.Verifier(candor.make_pin(service.digest), served_config=field_bytes(
        raw_call(service.target, "GetConfig", b""), 1))
    assert v.config_digest() == service.digest
    label = b"alice@example.com"
    resp = raw_call(service.target, "Lookup", bytes_field(1, label) + varint_field(2, epoch))
    head, proof = field_bytes(resp, 3), field_bytes(resp, 2)
    r = v.verify_lookup(label, epoch, head, proof)
    via_client = c.lookup(label, epoch=epoch)
    assert (r.version, r.value, r.leaf_hash, r.head) == (
        via_client.version, via_client.value, via_client.leaf_hash, via_client.head)
    assert v.verify_head(head, epoch).epoch == epoch
    with pytest.raises(candor.VerificationError):
        v.verify_lookup(label, epoch + 1, head, proof)
    with pytest.raises(candor.VerificationError):
        v.verify_lookup(b"bob@example.com", epoch, head, proof)
    bad = bytearray(proof)
    bad[len(bad) // 2] ^= 1
    with pytest.raises(candor.VerificationError):
        v.verify_lookup(label, epoch, head, bytes(bad))

    hresp = raw_call(service.target, "History", bytes_field(1, label) + varint_field(2, epoch))
    h = v.verify_history(label, epoch, field_bytes(hresp, 3), field_bytes(hresp, 2))
    assert h.latest_version == 2

    cresp = raw_call(service.target, "Consistency", varint_field(1, 1) + varint_field(2, epoch))
    h1 = c.head(1).signed
    parts = candor.ConsistencyResponseParts(
        proof=field_bytes(cresp, 1), from_head=field_bytes(cresp, 2), to_head=field_bytes(cresp, 3))
    assert v.verify_consistency(h1, head, parts)

    with pytest.raises(candor.InvalidArgumentError):
        candor.Verifier(candor.make_pin(service.digest))


def test_pin_forms(service, tmp_path):
    path = tmp_path / "config.bin"
    path.write_bytes(service.config)
    for pin in (service.digest, service.config, pathlib.Path(path),
                candor.Pin.DIGEST(hex=service.digest)):
        assert candor.Client(service.target, pin=pin).config_digest == service.digest
    with pytest.raises(TypeError):
        candor.make_pin(42)  # type: ignore[arg-type]
