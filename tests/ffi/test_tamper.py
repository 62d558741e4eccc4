"""A proxy that flips one byte of a proof or a head in every response: every
call raises candor.VerificationError. A wrong pin is refused."""

from __future__ import annotations

import os

import pytest

import candor
from wire import TamperProxy

LABEL = "alice@example.com"


def _every_call(service, honest: candor.Client, target: str):
    """(name, thunk) for every network call of the API, through `target`."""
    merged_epoch = honest.latest_head().epoch
    older = honest.head(1)
    newer = honest.latest_head()

    def client():
        return candor.Client(target, pin=service.config, token=service.token)

    def wait_merged():
        p = honest.publish("tamper-" + os.urandom(4).hex(), b"k")
        return client().wait_merged(p, timeout=30)

    def observe_newer():
        # A client that remembers epoch 1 must fetch a consistency proof.
        c = candor.Client(target, pin=service.config, tracker_state=_tracker_at(service, 1))
        return c.observe_head(newer.signed)

    def monitor_poll():
        m = client().monitor()
        m.watch(LABEL)
        return m.poll()

    return [
        ("publish", lambda: client().publish("tamper-" + os.urandom(4).hex(), b"v")),
        ("lookup latest", lambda: client().lookup(LABEL)),
        ("lookup at epoch", lambda: client().lookup(LABEL, epoch=merged_epoch)),
        ("lookup absent", lambda: client().lookup("absent-" + os.urandom(4).hex())),
        ("history", lambda: client().history(LABEL)),
        ("history at epoch", lambda: client().history(LABEL, epoch=merged_epoch)),
        ("latest_head", lambda: client().latest_head()),
        ("head", lambda: client().head(1)),
        ("verify_consistency", lambda: client().verify_consistency(older.signed, newer.signed)),
        ("observe_head", observe_newer),
        ("wait_merged", wait_merged),
        ("monitor poll", monitor_poll),
    ]


def _tracker_at(service, epoch):
    c = service.client()
    c.head(epoch)
    return c.tracker_state()


@pytest.mark.parametrize("mode", ["proof", "head"])
def test_every_call_fails_verification_through_a_tampering_proxy(service, published, mode, seed):
    honest = service.client()
    proxy = TamperProxy(service.target, mode, seed).start()
    try:
        calls = _every_call(service, honest, proxy.target)
        failures = []
        for name, call in calls:
            try:
                call()
            except candor.VerificationError as e:
                assert e.kind in (candor.VerificationKind.PROOF, candor.VerificationKind.EQUIVOCATION), name
                continue
            except Exception as e:  # noqa: BLE001
                failures.append(f"{name}: raised {e!r}, not VerificationError")
                continue
            failures.append(f"{name}: returned normally")
        assert not failures, f"seed={seed} tampered={proxy.tampered}: {failures}"
        assert proxy.tampered, "the proxy tampered with nothing"
    finally:
        proxy.stop()


def test_faithful_proxy_changes_nothing(service, published, seed):
    """Control: the same calls through a proxy that does not tamper succeed."""
    honest = service.client()
    proxy = TamperProxy(service.target, None, seed).start()
    try:
        for name, call in _every_call(service, honest, proxy.target):
            call()
    finally:
        proxy.stop()


def test_wrong_pin_is_refused(service):
    wrong = os.urandom(32).hex()
    with pytest.raises(candor.VerificationError) as e:
        candor.Client(service.target, pin=wrong)
    assert e.value.kind == candor.VerificationKind.PIN_MISMATCH
    assert service.digest in e.value.detail and wrong in e.value.detail
    with pytest.raises(candor.InvalidArgumentError):
        candor.Client(service.target, pin="not hex")
    with pytest.raises(candor.InvalidArgumentError):
        candor.Client(service.target, pin=b"not a configuration")


def test_tampered_configuration_is_refused(service, seed):
    """The pin is right, the served configuration is not: refused."""
    proxy = TamperProxy(service.target, "config", seed).start()
    try:
        for pin in (service.digest, service.config):
            with pytest.raises(candor.VerificationError):
                candor.Client(proxy.target, pin=pin)
    finally:
        proxy.stop()
