"""The two Python examples, run as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import candor

EXAMPLES = Path(__file__).resolve().parents[2] / "crates" / "candor-ffi" / "python" / "examples"


def _run(*args, expect=0):
    r = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=180)
    assert r.returncode == expect, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def test_publish_then_monitor_prints_the_contact_code(service, published, tmp_path):
    label = "grace-" + os.urandom(4).hex() + "@example.com"
    key = os.urandom(32)
    state = tmp_path / "grace.monitor"
    common = ["--target", service.target, "--pin", service.config_path]
    out = _run(EXAMPLES / "publish_device_key.py", *common, "--token", service.token,
               "--label", label, "--key-hex", key.hex(), "--state", state)
    assert "published version 1" in out and "merged in epoch" in out and state.exists()

    out = _run(EXAMPLES / "monitor_device_key.py", *common, "--label", label,
               "--state", state, "--contact", "bob@example.com")
    assert "version 1 of" in out and "confirmed" in out and "ALARM" not in out
    bob = service.client().lookup("bob@example.com").value
    assert candor.contact_code(label, key, "bob@example.com", bob) in out

    # Someone else publishes under the label: the monitor alarms (exit 1).
    c = service.client()
    c.wait_merged(c.publish(label, b"not grace's key"))
    out = _run(EXAMPLES / "monitor_device_key.py", *common, "--label", label,
               "--state", state, expect=1)
    assert "ALARM" in out and "unexpected_change" in out
