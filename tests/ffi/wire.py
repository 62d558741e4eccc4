"""Raw gRPC access to a Candor service and a tampering proxy, for the tests.

Neither decodes messages with generated code: responses are handled as raw
protobuf bytes (a minimal wire-format reader), which is all a proxy that
flips a byte of a proof or a head needs, and what a caller that brings its
own transport hands to ``candor.Verifier``.
"""

from __future__ import annotations

import random
import socket
import threading
from concurrent import futures
from typing import Dict, List, Optional, Tuple

import grpc

SERVICE = "/candor.v1.KeyTransparency/"


# ------------------------------------------------------------ wire format


def _varint(buf: bytes, i: int) -> Tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def enc_varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def fields(buf: bytes) -> List[Tuple[int, int, int, int]]:
    """Top-level fields as (number, wire type, value start, value end)."""
    out = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            start = i
            _, i = _varint(buf, i)
        elif wt == 2:
            n, i = _varint(buf, i)
            start = i
            i += n
        elif wt == 1:
            start = i
            i += 8
        elif wt == 5:
            start = i
            i += 4
        else:
            raise ValueError(f"wire type {wt}")
        out.append((num, wt, start, i))
    return out


def field_bytes(buf: bytes, num: int) -> bytes:
    """The value of length-delimited field ``num`` (b"" when absent)."""
    for n, wt, s, e in fields(buf):
        if n == num and wt == 2:
            return buf[s:e]
    return b""


def bytes_field(num: int, value: bytes) -> bytes:
    return enc_varint(num << 3 | 2) + enc_varint(len(value)) + value


def varint_field(num: int, value: int) -> bytes:
    return enc_varint(num << 3) + enc_varint(value)


# ----------------------------------------------------------------- raw calls


def raw_call(target: str, method: str, request: bytes, metadata=None) -> bytes:
    """Calls ``method`` (e.g. ``Lookup``) with raw request bytes."""
    addr = target.split("://", 1)[-1]
    with grpc.insecure_channel(addr) as ch:
        call = ch.unary_unary(SERVICE + method)
        return call(request, metadata=metadata, timeout=30)


# ------------------------------------------------------------- the proxy

# Response fields (protobuf numbers) a tamper mode flips a byte in, per
# method. "proof": the proof where the response has one, else the signed
# object (head, SMT); "head": the signed head (or SMT for Publish).
TARGETS: Dict[str, Dict[str, List[int]]] = {
    "proof": {
        "Publish": [5],  # vrf_proof
        "Lookup": [2],
        "History": [2, 5],  # proof (whole history) or page (paged)
        "GetEpoch": [2],  # signed_head (no proof in this response)
        "GetLatestEpoch": [2],
        "Consistency": [1],
    },
    "head": {
        "Publish": [1],  # smt
        "Lookup": [3],
        "History": [3],
        "GetEpoch": [2],
        "GetLatestEpoch": [2],
        "Consistency": [2, 3],
    },
    "config": {"GetConfig": [1]},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TamperProxy:
    """A gRPC proxy to ``upstream`` that flips one byte (at a seeded random
    position) of the chosen field of every response it tampers with.
    Mode ``None`` forwards faithfully."""

    def __init__(self, upstream: str, mode: Optional[str], seed: int) -> None:
        self.mode = mode
        self.seed = seed
        self.rng = random.Random(seed)
        self.tampered: List[str] = []
        self.lock = threading.Lock()
        self.channel = grpc.insecure_channel(upstream.split("://", 1)[-1])
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers((_Handler(self),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.target = f"http://127.0.0.1:{self.port}"

    def start(self) -> "TamperProxy":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=None)
        self.channel.close()

    def tamper(self, method: str, resp: bytes) -> bytes:
        if self.mode is None:
            return resp
        nums = TARGETS[self.mode].get(method)
        if not nums:
            return resp
        spans = [(s, e) for n, wt, s, e in fields(resp) if n in nums and wt == 2 and e > s]
        if not spans:
            return resp
        with self.lock:
            s, e = spans[self.rng.randrange(len(spans))]
            pos = self.rng.randrange(s, e)
            bit = 1 << self.rng.randrange(8)
            self.tampered.append(f"{method}@{pos - s}")
        out = bytearray(resp)
        out[pos] ^= bit
        return bytes(out)


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, proxy: TamperProxy) -> None:
        self.proxy = proxy

    def service(self, details):
        full = details.method
        if not full.startswith(SERVICE):
            return None
        method = full[len(SERVICE):]
        proxy = self.proxy

        def unary(request: bytes, context):
            md = [(k, v) for k, v in context.invocation_metadata() if k == "authorization"]
            try:
                resp = proxy.channel.unary_unary(full)(request, metadata=md, timeout=30)
            except grpc.RpcError as e:
                context.abort(e.code(), e.details() or "")
            return proxy.tamper(method, resp)

        return grpc.unary_unary_rpc_method_handler(unary)
