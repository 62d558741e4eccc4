#!/usr/bin/env python3
"""Monitor your label: check at each new signed epoch that its history holds
only the versions you published (alarm otherwise), then print the contact
verification code you and a contact compare to be sure each sees the other's
real key.

    python monitor_device_key.py --target http://127.0.0.1:8700 \\
        --pin ./candor-data/config.bin --label alice@example.com \\
        --state alice.monitor --contact bob@example.com --rounds 3

Exit status: 0 all confirmed, 1 alarm (someone else published or rewrote
your keys), 2 error, 3 the service's answers failed verification.
"""

import argparse
import pathlib
import sys
import time

import candor


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", required=True)
    ap.add_argument("--pin", required=True, type=pathlib.Path, help="the service's config.bin")
    ap.add_argument("--label", required=True, help="your label")
    ap.add_argument("--state", required=True, type=pathlib.Path,
                    help="monitor state written by publish_device_key.py")
    ap.add_argument("--contact", help="a contact's label, to print your contact code")
    ap.add_argument("--rounds", type=int, default=1, help="monitor steps (one per new epoch)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between steps")
    args = ap.parse_args()

    client = candor.Client(args.target, pin=args.pin)
    monitor = client.monitor(args.state.read_bytes())
    alarms = 0
    for i in range(args.rounds):
        if i:
            time.sleep(args.interval)
        for e in monitor.poll():
            what = e.kind.name.lower()
            if e.alarm:
                alarms += 1
                print(f"ALARM epoch {e.epoch}: {what} on {e.label.decode(errors='replace')} "
                      f"version {e.version}")
            else:
                print(f"epoch {e.epoch}: version {e.version} of "
                      f"{e.label.decode(errors='replace')} confirmed")
        print(f"checked up to epoch {monitor.last_epoch}")
    args.state.write_bytes(monitor.state())

    if args.contact:
        mine = client.lookup(args.label)
        theirs = client.lookup(args.contact)
        if not (mine.found and theirs.found and mine.value is not None and theirs.value is not None):
            print("no contact code: a key is missing", file=sys.stderr)
            return 2
        code = candor.contact_code(args.label, mine.value, args.contact, theirs.value)
        print(f"contact code with {args.contact} (epoch {theirs.head.epoch}):")
        print(f"  {code}")
    return 1 if alarms else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except candor.VerificationError as e:
        print(f"VERIFICATION FAILED ({e.kind}): {e.detail}", file=sys.stderr)
        sys.exit(3)
    except candor.Error as e:
        print(f"error: {e!r}", file=sys.stderr)
        sys.exit(2)
