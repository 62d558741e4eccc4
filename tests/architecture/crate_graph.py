#!/usr/bin/env python3
"""docs/architecture.md's crate-graph table, from `cargo metadata --no-deps`.

  python3 tests/architecture/crate_graph.py          check: exit 1 if the doc's table
                                                     differs (or a crate is unnamed)
  python3 tests/architecture/crate_graph.py --write  regenerate the table in place
"""
import json
import re
import subprocess
import sys

DOC = "docs/architecture.md"
BEGIN, END = "<!-- crate-graph:begin -->", "<!-- crate-graph:end -->"


def table():
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"]))
    names = {p["name"] for p in meta["packages"]}
    rows = ["| crate | depends on (workspace crates, normal dependencies; `?` = optional) |",
            "|---|---|"]
    for p in sorted(meta["packages"], key=lambda p: p["name"]):
        deps = {}
        for d in p["dependencies"]:
            if d["name"] in names and d["name"] != p["name"] and d["kind"] is None:
                deps[d["name"]] = deps.get(d["name"], True) and d.get("optional", False)
        cell = ", ".join(f"`{n}`" + ("?" if opt else "") for n, opt in sorted(deps.items()))
        rows.append(f"| `{p['name']}` | {cell or '(none)'} |")
    return names, "\n".join(rows)


def main():
    names, t = table()
    doc = open(DOC).read()
    m = re.search(re.escape(BEGIN) + r"\n(.*?)" + re.escape(END), doc, re.S)
    if not m:
        sys.exit(f"{DOC}: no {BEGIN} ... {END} block")
    if "--write" in sys.argv:
        open(DOC, "w").write(doc[:m.start(1)] + t + "\n" + doc[m.end(1):])
        return
    bad = False
    if m.group(1) != t + "\n":
        print(f"{DOC}: the crate-graph table does not match cargo metadata; run "
              f"python3 tests/architecture/crate_graph.py --write\n--- expected:\n{t}")
        bad = True
    for n in sorted(names):
        if doc.count(f"`{n}`") < 2:  # in the graph table and described elsewhere
            print(f"{DOC}: crate {n} is not described outside the generated table")
            bad = True
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
