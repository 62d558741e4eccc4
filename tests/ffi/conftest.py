"""Fixtures: a real `candor dev` started for the session, the Rust SDK probe."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from wire import free_port  # noqa: E402

import candor  # noqa: E402


@dataclass
class Service:
    target: str
    data_dir: Path
    config_path: Path
    config: bytes
    token: str
    digest: str
    epoch_interval_ms: int

    def client(self, **kw) -> candor.Client:
        kw.setdefault("token", self.token)
        return candor.Client(self.target, pin=self.config, **kw)


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"candor dev exited ({proc.returncode}):\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"candor dev did not listen on {port} in {timeout}s:\n{log.read_text()}")


@pytest.fixture(scope="session")
def service():
    binary = os.environ.get("CANDOR_BIN") or shutil.which("candor")
    if not binary:
        pytest.exit("CANDOR_BIN is not set and no candor on PATH", returncode=2)
    tmp = Path(tempfile.mkdtemp(prefix="candor-ffi-"))
    data = tmp / "data"
    port = free_port()
    interval = 200
    log = tmp / "candor-dev.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                binary,
                "dev",
                "--data-dir",
                str(data),
                "--listen",
                f"127.0.0.1:{port}",
                "--epoch-interval",
                f"{interval}ms",
                "--shards",
                "4",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
    pidfile = os.environ.get("CANDOR_FFI_PIDFILE")
    if pidfile:
        Path(pidfile).write_text(str(proc.pid))
    try:
        _wait_port(port, proc, log, 120)
        config_path = data / "config.bin"
        deadline = time.monotonic() + 30
        while not config_path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        config = config_path.read_bytes()
        token = (data / "dev-token").read_text().strip()
        target = f"http://127.0.0.1:{port}"
        probe_client = candor.Client(target, pin=config)
        digest = probe_client.config_digest
        # Reads fail with FAILED_PRECONDITION until the first epoch is signed.
        deadline = time.monotonic() + 60
        while True:
            try:
                probe_client.latest_head()
                break
            except candor.ServerStatusError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield Service(target, data, config_path, config, token, digest, interval)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if pidfile:
            Path(pidfile).unlink(missing_ok=True)
        if os.environ.get("CANDOR_FFI_KEEP") is None:
            shutil.rmtree(tmp, ignore_errors=True)


class Probe:
    """The plain Rust SDK (examples/sdk_probe.rs) answering the same calls."""

    def __init__(self, binary: str, service: Service) -> None:
        self.binary = binary
        self.service = service

    def run(self, *args: str) -> object:
        out = subprocess.run(
            [self.binary, self.service.target, str(self.service.config_path), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return json.loads(out.stdout)

    def lookup(self, epoch: int, labels: List[str]):
        return self.run("lookup", str(epoch), *labels)

    def history(self, epoch: int, labels: List[str]):
        return self.run("history", str(epoch), *labels)

    def contact_code(self, la: str, ka: str, lb: str, kb: str) -> str:
        return self.run("contact-code", la, ka, lb, kb)

    def bench(self, seconds: float, labels: List[str]):
        return self.run("bench", str(seconds), *labels)

    def verify_bench(self, seconds: float, label: str, epoch: int, head: bytes, proof: bytes):
        return self.run("verify-bench", str(seconds), label, str(epoch), head.hex(), proof.hex())


@pytest.fixture(scope="session")
def probe(service):
    binary = os.environ.get("CANDOR_SDK_PROBE")
    if not binary:
        pytest.exit("CANDOR_SDK_PROBE is not set (tests/ffi/run.sh sets it)", returncode=2)
    return Probe(binary, service)


@pytest.fixture(scope="session")
def published(service):
    """A few labels published and merged once for the whole session:
    label -> list of MergeResult, in version order."""
    c = service.client()
    merged = {}
    for label, values in {
        "alice@example.com": ["alice key v1", "alice key v2"],
        "bob@example.com": ["bob key v1"],
        "carol@example.com": ["carol key v1"],
    }.items():
        merged[label] = []
        for v in values:
            p = c.publish(label, v)
            merged[label].append(c.wait_merged(p, timeout=60))
    return merged


@pytest.fixture
def seed():
    s = int(os.environ.get("CANDOR_FFI_SEED", "0")) or int.from_bytes(os.urandom(4), "big")
    print(f"seed={s} (rerun with CANDOR_FFI_SEED={s})")
    return s
