"""Type stubs for the `candor` package (the verifying Candor client)."""

import enum
import os
from typing import Iterable, List, Optional, Tuple, Union

BytesLike = Union[str, bytes, bytearray, memoryview]

# ----------------------------------------------------------------- errors

class Error(Exception):
    """Base class of every error a call raises."""

class VerificationError(Error):
    """A response did not verify: a security event (never retry silently)."""
    kind: VerificationKind
    detail: str
    #: Canonical evidence for EQUIVOCATION and BROKEN_PROMISE, else None.
    evidence: Optional[bytes]

class TransportError(Error):
    """The connection could not be established or broke."""
    detail: str

class ServerStatusError(Error):
    """The server answered with a gRPC status."""
    #: The gRPC code (3 invalid argument, 5 not found, 16 unauthenticated...).
    code: int
    #: Its name, e.g. "NotFound".
    code_name: str
    detail: str

class InvalidArgumentError(Error):
    detail: str

class StateError(Error):
    """Persisted tracker or monitor state is corrupt or for another deployment."""
    detail: str

class WaitTimeoutError(Error):
    """`Client.wait_merged` gave up before a decision."""
    detail: str

class InternalError(Error):
    """A bug in the library (a caught Rust panic)."""
    detail: str

class VerificationKind(enum.Enum):
    PROOF = 0
    PIN_MISMATCH = 1
    EQUIVOCATION = 2
    BROKEN_PROMISE = 3

# ----------------------------------------------------------------- pins

class Pin:
    class DIGEST(Pin):
        hex: str
        def __init__(self, hex: str) -> None: ...
    class CONFIG(Pin):
        bytes: bytes
        def __init__(self, bytes: bytes) -> None: ...

PinLike = Union[str, bytes, bytearray, os.PathLike[str], Pin]

def make_pin(pin: PinLike) -> Pin:
    """str: hex digest; bytes: canonical configuration; PathLike: a file with it."""

# ----------------------------------------------------------------- records

class Head:
    """A signed epoch head, signature and configuration digest verified."""
    epoch: int
    timestamp_ms: int
    namespace: str
    map_root: bytes
    log_size: int
    log_root: bytes
    config_digest: bytes
    #: The canonical signed head (gossip it, `Client.observe_head` it).
    signed: bytes

class PublishResult:
    """A publish whose SMT was verified against exactly the label and value sent."""
    label: bytes
    version: int
    index: bytes
    leaf_hash: bytes
    commitment: bytes
    nonce: bytes
    prev_leaf_hash: bytes
    shard: int
    timestamp_ms: int
    merge_deadline_ms: int
    #: The canonical signed SMT (keep it until `wait_merged` succeeds).
    smt: bytes
    idempotency_key: str
    #: The checks that passed.
    verified: List[str]
    def __init__(
        self, *, label: bytes, version: int, index: bytes, leaf_hash: bytes,
        commitment: bytes, nonce: bytes, prev_leaf_hash: bytes, shard: int,
        timestamp_ms: int, merge_deadline_ms: int, smt: bytes, idempotency_key: str,
        verified: List[str],
    ) -> None: ...

class LookupResult:
    label: bytes
    head: Head
    index: bytes
    found: bool
    version: Optional[int]
    #: None when absent, or found with its opening deleted.
    value: Optional[bytes]
    leaf_hash: Optional[bytes]
    commitment: Optional[bytes]
    verified: List[str]

class HistoryVersion:
    version: int
    value: Optional[bytes]
    leaf_hash: bytes
    commitment: bytes
    prev_leaf_hash: bytes

class HistoryResult:
    label: bytes
    head: Head
    index: bytes
    versions: List[HistoryVersion]
    latest_version: int
    verified: List[str]

class MergeResult:
    label: bytes
    version: int
    leaf_hash: bytes
    head: Head
    history: HistoryResult
    history_proof: bytes
    verified: List[str]

class MonitorEventKind(enum.Enum):
    CONFIRMED = 0
    UNEXPECTED_CHANGE = 1
    HISTORY_REWRITTEN = 2
    ROLLBACK = 3

class MonitorEvent:
    kind: MonitorEventKind
    alarm: bool
    label: bytes
    epoch: int
    version: Optional[int]
    leaf_hash: Optional[bytes]
    previous_leaf_hash: Optional[bytes]
    previous_length: Optional[int]
    length: Optional[int]

class KnownVersion:
    version: int
    leaf_hash: bytes
    def __init__(self, *, version: int, leaf_hash: bytes) -> None: ...

class SmtInfo:
    namespace: str
    index: bytes
    version: int
    leaf_hash: bytes
    shard: int
    timestamp_ms: int
    merge_deadline_ms: int

class PublishResponseParts:
    smt: bytes
    vrf_proof: bytes
    nonce: bytes
    commitment: bytes
    prev_leaf_hash: bytes
    def __init__(self, *, smt: bytes, vrf_proof: bytes, nonce: bytes, commitment: bytes,
                 prev_leaf_hash: bytes) -> None: ...

class ConsistencyResponseParts:
    proof: bytes
    from_head: bytes
    to_head: bytes
    def __init__(self, *, proof: bytes, from_head: bytes, to_head: bytes) -> None: ...

# ----------------------------------------------------------------- API

def suite() -> str: ...
def contact_code(label_a: BytesLike, key_a: BytesLike, label_b: BytesLike, key_b: BytesLike) -> str:
    """12 groups of 5 digits; symmetric in the two parties."""

class Verifier:
    """The client's checks on raw bytes, for callers with their own transport."""
    def __init__(self, pin: Pin, served_config: Optional[bytes] = None) -> None: ...
    def config_digest(self) -> str: ...
    def verify_head(self, signed_head: bytes, expected_epoch: Optional[int] = None) -> Head: ...
    def verify_smt(self, smt: bytes) -> SmtInfo: ...
    def verify_publish(
        self, label: bytes, value: bytes, idempotency_key: str,
        response: PublishResponseParts, now_ms: Optional[int] = None,
        max_clock_skew_ms: int = 300000,
    ) -> PublishResult: ...
    def verify_lookup(self, label: bytes, requested_epoch: Optional[int], signed_head: bytes,
                      proof: bytes) -> LookupResult: ...
    def verify_history(self, label: bytes, requested_epoch: Optional[int], signed_head: bytes,
                       proof: bytes) -> HistoryResult: ...
    def verify_consistency(self, older: bytes, newer: bytes,
                           response: ConsistencyResponseParts) -> List[str]: ...
    def verify_vrf(self, label: bytes, vrf_proof: bytes) -> bytes: ...

class Client:
    target: str
    def __init__(
        self,
        target: str,
        pin: PinLike,
        token: Optional[str] = None,
        *,
        tls_ca_pem: Optional[bytes] = None,
        tracker_state: Optional[bytes] = None,
    ) -> None: ...
    @property
    def config_digest(self) -> str: ...
    @property
    def config_bytes(self) -> bytes: ...
    @property
    def namespace(self) -> str: ...
    def publish(self, label: BytesLike, value: BytesLike, *,
                idempotency_key: Optional[str] = None) -> PublishResult: ...
    def lookup(self, label: BytesLike, epoch: Optional[int] = None) -> LookupResult: ...
    def history(self, label: BytesLike, epoch: Optional[int] = None) -> HistoryResult: ...
    def wait_merged(self, published: PublishResult, timeout: float = 60.0,
                    poll: float = 0.2) -> MergeResult: ...
    def latest_head(self) -> Head: ...
    def head(self, epoch: int) -> Head: ...
    def observe_head(self, signed_head: bytes) -> Head: ...
    def verify_consistency(self, older: bytes, newer: bytes) -> List[str]: ...
    def last_head(self) -> Optional[Head]: ...
    def tracker_state(self) -> bytes: ...
    def monitor(self, state: Optional[bytes] = None) -> Monitor: ...

KnownLike = Union[KnownVersion, PublishResult, Tuple[int, bytes]]

class Monitor:
    def __init__(self, client: Client, state: Optional[bytes] = None) -> None: ...
    def watch(self, label: BytesLike, known: Iterable[KnownLike] = ()) -> None: ...
    def expect(self, published: PublishResult) -> None: ...
    def poll(self) -> List[MonitorEvent]: ...
    @property
    def last_epoch(self) -> int: ...
    @property
    def labels(self) -> List[bytes]: ...
    def state(self) -> bytes: ...
