#!/usr/bin/env python3
"""Publish a device key under your label, verify the service's promise (the
SMT), wait until a signed epoch holds it, and save what the owner monitor
needs to recognise it as yours.

    python publish_device_key.py --target http://127.0.0.1:8700 \\
        --pin ./candor-data/config.bin --token "$(cat ./candor-data/dev-token)" \\
        --label alice@example.com --state alice.monitor

The key here is 32 random bytes standing in for a real device public key
(e.g. an X25519 or Ed25519 public key from your messaging library).
"""

import argparse
import os
import pathlib
import sys

import candor


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", required=True, help="http://host:port of the Candor API")
    ap.add_argument("--pin", required=True, type=pathlib.Path,
                    help="the service's config.bin (or pass a 64-hex digest with --pin-digest)")
    ap.add_argument("--token", required=True, help="bearer token allowed to publish")
    ap.add_argument("--label", required=True)
    ap.add_argument("--key-hex", help="the device public key (hex); random if omitted")
    ap.add_argument("--state", type=pathlib.Path, required=True,
                    help="monitor state file to create or update")
    args = ap.parse_args()

    key = bytes.fromhex(args.key_hex) if args.key_hex else os.urandom(32)
    client = candor.Client(args.target, pin=args.pin, token=args.token)
    print(f"pinned configuration {client.config_digest}")

    published = client.publish(args.label, key)
    print(f"published version {published.version} of {args.label}: key {key.hex()}")
    print(f"  SMT verified, merge deadline {published.merge_deadline_ms} ms:")
    for check in published.verified:
        print(f"    - {check}")

    merged = client.wait_merged(published, timeout=120)
    print(f"merged in epoch {merged.head.epoch} (signed at {merged.head.timestamp_ms} ms)")

    # Remember the version as ours, so the monitor alarms on any other.
    state = args.state.read_bytes() if args.state.exists() else None
    monitor = client.monitor(state)
    monitor.watch(args.label)
    monitor.expect(published)
    args.state.write_bytes(monitor.state())
    print(f"monitor state saved to {args.state}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except candor.VerificationError as e:
        print(f"VERIFICATION FAILED ({e.kind}): {e.detail}", file=sys.stderr)
        sys.exit(3)
    except candor.Error as e:
        print(f"error: {e!r}", file=sys.stderr)
        sys.exit(2)
