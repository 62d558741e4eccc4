#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ from the protocol vectors (docs/vectors/candor-v1.json):
every valid and every tampered encoding goes to the target that decodes it. Files
are named by their SHA-1, as libFuzzer names what it adds, so re-running is a no-op."""

import hashlib
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent
VECTORS = ROOT.parent / "docs" / "vectors" / "candor-v1.json"


def put(target, hexstr):
    data = bytes.fromhex(hexstr)
    d = ROOT / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main():
    v = json.loads(VECTORS.read_text())
    for c in v["cases"]:
        k = c["kind"]
        if k == "lookup":
            put("lookup_proof", c["proof"])
        elif k == "history":
            put("history_proof", c["proof"])
        elif k == "history_pages":
            for p in c["pages"]:
                put("history_page", p)
        elif k == "audit":
            put("audit_proof", c["proof"])
        elif k == "inclusion":
            put("inclusion_proof", c["proof"])
        elif k == "extension":
            put("head_extension", c["proof"])
            put("signed_head", c["old_head"])
            put("signed_head", c["new_head"])
        elif k == "signed_head":
            put("signed_head", c["signed_head"])
            put("public_config", c["config"])
        elif k == "smt":
            put("smt", c["smt"])
        elif k == "cosignature":
            put("cosignature", c["cosignature"])
            put("signed_head", c["signed_head"])
        elif k == "config":
            put("public_config", c["config"])
        elif k == "rotation":
            for h in c["history"]:
                put("public_config", h["config"])
                if h["rotation"]:
                    put("config_rotation", h["rotation"])
            for key in ("signed_head", "smt"):
                if key in c:
                    put("signed_head" if key == "signed_head" else "smt", c[key])
    # A head extension proof is a consistency proof followed by an inclusion
    # proof: its bytes seed the consistency decoder too.
    for c in v["cases"]:
        if c["kind"] == "extension":
            put("consistency_proof", c["proof"])
    for t in sorted((ROOT / "corpus").iterdir()):
        print(f"{t.name}: {len(list(t.iterdir()))} inputs")


if __name__ == "__main__":
    main()
