"""Candor key transparency for Python: a verifying client.

Nothing the service says is believed until it is checked, in Rust (the same
``candor-core`` / ``candor-client`` code as the Rust SDK, loaded through
uniffi), against a configuration you pinned:

>>> import candor
>>> c = candor.Client("http://127.0.0.1:8700", pin=open("config.bin", "rb").read())
>>> r = c.lookup("alice@example.com")
>>> r.found, r.version, r.value, r.head.epoch
(True, 1, b'alice key v1', 42)

Any failed check raises :class:`VerificationError` (a security event: the
service sent something an honest service never sends). Other failures are
:class:`TransportError`, :class:`ServerStatusError` (a gRPC status, with its
``code``), :class:`InvalidArgumentError`, :class:`StateError`,
:class:`WaitTimeoutError`; all derive from :class:`Error`. Calls block; the
library releases the GIL while it works.
"""

from __future__ import annotations

import os
from typing import Iterable, List, Optional, Sequence, Tuple, Union

from ._ffi import candor_ffi as _ffi

__all__ = [
    "Client",
    "Monitor",
    "Verifier",
    "Pin",
    "make_pin",
    "contact_code",
    "suite",
    "Head",
    "PublishResult",
    "LookupResult",
    "HistoryResult",
    "HistoryVersion",
    "MergeResult",
    "MonitorEvent",
    "MonitorEventKind",
    "KnownVersion",
    "SmtInfo",
    "PublishResponseParts",
    "ConsistencyResponseParts",
    "VerificationKind",
    "Error",
    "VerificationError",
    "TransportError",
    "ServerStatusError",
    "InvalidArgumentError",
    "StateError",
    "WaitTimeoutError",
    "InternalError",
]

# ----------------------------------------------------------------- errors

#: Base class of every error a call raises.
Error = _ffi.CandorError
#: A response did not verify (``kind``: a :class:`VerificationKind`;
#: ``detail``; ``evidence``: bytes for equivocation and broken promises).
VerificationError = _ffi.CandorError.Verification
#: The connection could not be established or broke (``detail``).
TransportError = _ffi.CandorError.Transport
#: The server answered with a gRPC status (``code``, ``code_name``, ``detail``).
ServerStatusError = _ffi.CandorError.ServerStatus
#: The caller passed something unusable (``detail``).
InvalidArgumentError = _ffi.CandorError.InvalidArgument
#: Persisted state (tracker, monitor) is corrupt or for another deployment.
StateError = _ffi.CandorError.State
#: :meth:`Client.wait_merged` gave up before a decision (not a broken promise).
WaitTimeoutError = _ffi.CandorError.Timeout
#: A bug in the library (a caught Rust panic).
InternalError = _ffi.CandorError.Internal

# ------------------------------------------------------- records and enums

Pin = _ffi.Pin
Head = _ffi.Head
PublishResult = _ffi.PublishResult
LookupResult = _ffi.LookupResult
HistoryResult = _ffi.HistoryResult
HistoryVersion = _ffi.HistoryVersion
MergeResult = _ffi.MergeResult
MonitorEvent = _ffi.MonitorEvent
MonitorEventKind = _ffi.MonitorEventKind
KnownVersion = _ffi.KnownVersion
SmtInfo = _ffi.SmtInfo
PublishResponseParts = _ffi.PublishResponseParts
ConsistencyResponseParts = _ffi.ConsistencyResponseParts
VerificationKind = _ffi.VerificationKind
#: Verification of raw head / SMT / proof bytes (bring your own transport).
Verifier = _ffi.Verifier

BytesLike = Union[str, bytes, bytearray, memoryview]
PinLike = Union[str, bytes, bytearray, "os.PathLike[str]", "_ffi.Pin"]


def _b(x: BytesLike, what: str) -> bytes:
    if isinstance(x, str):
        return x.encode("utf-8")
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x)
    raise TypeError(f"{what} must be str or bytes, not {type(x).__name__}")


def make_pin(pin: PinLike) -> "_ffi.Pin":
    """The :class:`Pin` for ``pin``: a ``str`` is the configuration digest
    (64 hex characters), ``bytes`` the canonical configuration
    (``config.bin``), an :class:`os.PathLike` a file holding it; a
    :class:`Pin` is returned as is."""
    if isinstance(pin, (_ffi.Pin.DIGEST, _ffi.Pin.CONFIG)):
        return pin
    if isinstance(pin, str):
        return _ffi.Pin.DIGEST(hex=pin)
    if isinstance(pin, (bytes, bytearray, memoryview)):
        return _ffi.Pin.CONFIG(bytes=bytes(pin))
    if isinstance(pin, os.PathLike):
        with open(pin, "rb") as f:
            return _ffi.Pin.CONFIG(bytes=f.read())
    raise TypeError(
        "pin must be a hex digest (str), configuration bytes, a path, or a candor.Pin"
    )


def suite() -> str:
    """The protocol suite this library verifies (``candor-v1``)."""
    return _ffi.suite()


def contact_code(label_a: BytesLike, key_a: BytesLike, label_b: BytesLike, key_b: BytesLike) -> str:
    """The contact verification code of two parties: 12 groups of 5 digits
    computed from each one's label and published key (the value under the
    label). Both compute it and compare out of band; symmetric in the parties.
    Use keys obtained from verified lookups."""
    return _ffi.contact_code(
        _b(label_a, "label_a"), _b(key_a, "key_a"), _b(label_b, "label_b"), _b(key_b, "key_b")
    )


class Client:
    """A verifying Candor client.

    ``target``: ``http://host:port`` (or ``https://`` with ``tls_ca_pem``).
    ``pin``: what you trust (see :func:`make_pin`); connecting fails with
    :class:`VerificationError` (kind ``PIN_MISMATCH``) when the service's
    configuration is not the pinned one. ``token``: bearer token for
    publishes. ``tracker_state``: bytes from :meth:`tracker_state` of an
    earlier session, so heads stay consistent across sessions.

    Every result is verified before it is returned, and every signed head
    seen must extend the heads seen before. Thread-safe.
    """

    def __init__(
        self,
        target: str,
        pin: PinLike,
        token: Optional[str] = None,
        *,
        tls_ca_pem: Optional[bytes] = None,
        tracker_state: Optional[bytes] = None,
    ) -> None:
        self._c = _ffi.Client(target, make_pin(pin), token, tls_ca_pem, tracker_state)
        self.target = target

    def __repr__(self) -> str:
        return f"candor.Client({self.target!r}, pin={self.config_digest!r})"

    @property
    def ffi(self) -> "_ffi.Client":
        """The underlying uniffi object (the API Swift and Kotlin see)."""
        return self._c

    @property
    def config_digest(self) -> str:
        """The pinned configuration's digest (64 hex characters)."""
        return self._c.config_digest()

    @property
    def config_bytes(self) -> bytes:
        """The pinned configuration, canonical encoding."""
        return self._c.config_bytes()

    @property
    def namespace(self) -> str:
        return self._c.namespace()

    def publish(
        self, label: BytesLike, value: BytesLike, *, idempotency_key: Optional[str] = None
    ) -> "_ffi.PublishResult":
        """Publishes ``value`` as the next version of ``label``; the returned
        SMT (a signed promise to merge by ``merge_deadline_ms``) is verified
        against exactly this label and value. Needs a token. Pass the
        ``idempotency_key`` of an interrupted publish to learn its outcome
        without publishing twice."""
        return self._c.publish(_b(label, "label"), _b(value, "value"), idempotency_key)

    def lookup(self, label: BytesLike, epoch: Optional[int] = None) -> "_ffi.LookupResult":
        """The label's current value at ``epoch`` (latest signed epoch when
        ``None``), with its proof, head and head consistency verified.
        ``found`` is False when the label is absent (absence is proven)."""
        return self._c.lookup(_b(label, "label"), epoch)

    def history(self, label: BytesLike, epoch: Optional[int] = None) -> "_ffi.HistoryResult":
        """Every version of ``label`` up to ``epoch`` (latest when ``None``),
        verified: each version chained to the previous, the last proven in
        the map. Nothing can be hidden from the owner."""
        return self._c.history(_b(label, "label"), epoch)

    def wait_merged(
        self, published: "_ffi.PublishResult", timeout: float = 60.0, poll: float = 0.2
    ) -> "_ffi.MergeResult":
        """Waits until ``published`` (a :meth:`publish` result) is in a signed
        epoch at or before its merge deadline, and returns the proof.
        Raises :class:`VerificationError` (kind ``BROKEN_PROMISE``, with
        ``evidence``) if the service provably broke the promise, and
        :class:`WaitTimeoutError` after ``timeout`` seconds."""
        return self._c.wait_merged(
            published.label,
            published.smt,
            max(1, int(timeout * 1000)),
            max(1, int(poll * 1000)),
        )

    def latest_head(self) -> "_ffi.Head":
        """The latest signed epoch head, verified and consistent with the
        heads seen before."""
        return self._c.latest_head()

    def head(self, epoch: int) -> "_ffi.Head":
        """The signed head of ``epoch``, verified and consistent."""
        return self._c.head(epoch)

    def observe_head(self, signed_head: bytes) -> "_ffi.Head":
        """Checks a signed head obtained elsewhere (gossip, another device)
        against this client's view (signature, then consistency)."""
        return self._c.observe_head(bytes(signed_head))

    def verify_consistency(self, older: bytes, newer: bytes) -> List[str]:
        """Verifies with a proof from the service that signed head ``older``'s
        epoch log is a prefix of ``newer``'s. Returns the checks made."""
        return self._c.verify_consistency(bytes(older), bytes(newer))

    def last_head(self) -> Optional["_ffi.Head"]:
        """The newest head this client verified, if any."""
        return self._c.last_head()

    def tracker_state(self) -> bytes:
        """The head tracker to persist (pass it as ``tracker_state`` later)."""
        return self._c.tracker_state()

    def monitor(self, state: Optional[bytes] = None) -> "Monitor":
        """An owner :class:`Monitor` over this client."""
        return Monitor(self, state)


KnownLike = Union["_ffi.KnownVersion", "_ffi.PublishResult", Tuple[int, bytes]]


def _known(k: KnownLike) -> "_ffi.KnownVersion":
    if isinstance(k, _ffi.KnownVersion):
        return k
    if isinstance(k, _ffi.PublishResult):
        return _ffi.KnownVersion(version=k.version, leaf_hash=k.leaf_hash)
    version, leaf_hash = k
    return _ffi.KnownVersion(version=int(version), leaf_hash=bytes(leaf_hash))


class Monitor:
    """The owner monitor: watches your own labels and raises alarms for any
    version you did not publish, and for rewritten or shortened histories.

    Tell it what you published (:meth:`expect`, :meth:`watch`), call
    :meth:`poll` periodically (each epoch interval or slower), and persist
    :meth:`state` between sessions (pass it back as ``state``).
    """

    def __init__(self, client: Client, state: Optional[bytes] = None) -> None:
        self._m = _ffi.Monitor(client.ffi, state)

    def watch(self, label: BytesLike, known: Iterable[KnownLike] = ()) -> None:
        """Starts watching ``label``, published by you as the ``known``
        versions (``KnownVersion``, ``PublishResult`` or ``(version,
        leaf_hash)``); with none, any version is an alarm."""
        self._m.watch(_b(label, "label"), [_known(k) for k in known])

    def expect(self, published: "_ffi.PublishResult") -> None:
        """Records a version you just published."""
        self._m.expect_publish(published)

    def poll(self) -> List["_ffi.MonitorEvent"]:
        """One monitor step at the latest signed epoch (nothing when no new
        epoch since the last poll). Events with ``alarm`` True mean someone
        else published or rewrote your keys."""
        return self._m.poll()

    @property
    def last_epoch(self) -> int:
        """Epoch of the last check (0 before the first)."""
        return self._m.last_epoch()

    @property
    def labels(self) -> List[bytes]:
        return self._m.labels()

    def state(self) -> bytes:
        """Expectations, versions seen and alarms raised, to persist."""
        return self._m.state()


def _check_api() -> None:
    # Fail at import, not at first use, if the library and the generated
    # module disagree (uniffi also checks its own checksums on load).
    if _ffi.suite() != "candor-v1":
        raise ImportError("candor: unexpected protocol suite " + _ffi.suite())


_check_api()
