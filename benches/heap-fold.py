#!/usr/bin/env python3
"""Folds a heaptrack flame-graph stack file (heaptrack_print -F) by owner.

usage: benches/heap-fold.py STACKS [N]

Each allocation stack is charged to its deepest Candor frame, shown with the
first library frame below it (what that Candor code called to allocate), so the
bytes read as "the tree cache", "fjall's memtables", "openraft's per-group
state" rather than as `alloc::raw_vec`. Prints the total and the N largest
owners (default 25), in MiB.
"""
import collections
import re
import sys

# Frames that say nothing about who holds the memory.
GENERIC = re.compile(
    r"^(alloc::|core::|std::|_RN|hashbrown::|__rust|<alloc|<core|<std|_<alloc|_<core|_<std|bytes::|smallvec|0x)"
)


def clean(frame):
    frame = re.sub(r" \(.*\)$", "", frame)
    frame = re.sub(r"::h[0-9a-f]{16}$", "", frame)
    for a, b in (("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("..", "::"), ("$C$", ","),
                 ("$RF$", "&"), ("$u7b$", "{"), ("$u7d$", "}")):
        frame = frame.replace(a, b)
    return frame


def owner(frames):
    for i in range(len(frames) - 1, -1, -1):
        if "candor_" in frames[i]:
            below = next((f for f in frames[i + 1:] if not GENERIC.match(f)), "")
            return frames[i] + ("  ->  " + below if below else "")
    lib = next((f for f in reversed(frames) if not GENERIC.match(f)), frames[-1] if frames else "?")
    return "(no candor frame) " + lib


def main():
    totals = collections.Counter()
    total = 0
    with open(sys.argv[1]) as stacks:
        for line in stacks:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if not n.isdigit():
                continue
            total += int(n)
            totals[owner([clean(f) for f in stack.split(";") if f])] += int(n)
    print(f"{total / 2**20:8.1f} MiB  in all")
    for k, v in totals.most_common(int(sys.argv[2]) if len(sys.argv) > 2 else 25):
        print(f"{v / 2**20:8.1f} MiB  {k[:200]}")


if __name__ == "__main__":
    main()
