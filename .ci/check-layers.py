#!/usr/bin/env python3
"""Checks that imports between the top-level modules of src/ point down the declared layers.

Reads every `crate::…` path in code (comments and doc comments are ignored, tests included)
and fails when
  - a top-level module is missing from LAYERS (place every new module deliberately),
  - a module imports a module of a higher rank, or
  - two modules import each other (even of the same rank).

Usage: .ci/check-layers.py [src] [--graph]    (--graph also prints every edge)
"""
import collections
import os
import re
import sys

# Rank: a module may import modules of its own rank or lower, never higher. Lowest first.
# See docs/architecture.md for each module's job.
LAYERS = [
    # leaf helpers: import nothing above them
    ("helpers", ["util", "error", "body", "classify"]),
    # the core: targets, live state, snapshot, selection contract, hooks
    ("core", ["target"]),
    # built on the core only
    ("core users", ["algorithm", "key", "discover", "health", "stats"]),
    # the TargetGroup handle: ties health and discovery to the core
    ("group", ["group"]),
    # the Balance service
    ("balancing", ["balance"]),
    # resilience layers and HTTP glue (error -> response, target client)
    ("layers", ["retry", "breaker", "limit", "timeout", "upstream"]),
    # the edge, bottom to top
    ("edge: client_ip", ["client_ip"]),
    ("edge: forward", ["forward"]),
    ("edge: server", ["server"]),
    ("edge: sticky", ["sticky"]),
    ("edge: route", ["route"]),
    ("edge: lb", ["lb"]),
    ("edge: admin", ["admin"]),
    ("edge: config", ["config"]),
]
# lib.rs is the table of contents: it may re-export anything.
ROOTS = {"lib"}

RANK = {m: i for i, (_, ms) in enumerate(LAYERS) for m in ms}


def strip_comments(text):
    # Drop `//` comments (and doc comments) but keep string literals such as "http://…".
    out = []
    for line in text.split("\n"):
        in_str = False
        cut = len(line)
        i = 0
        while i < len(line):
            c = line[i]
            if c == "\\" and in_str:
                i += 2
                continue
            if c == '"':
                in_str = not in_str
            elif not in_str and line.startswith("//", i):
                cut = i
                break
            i += 1
        out.append(line[:cut])
    return "\n".join(out)


def edges_of(root):
    mods = {n.removesuffix(".rs") for n in os.listdir(root) if n.endswith(".rs") or os.path.isdir(os.path.join(root, n))}
    edges = collections.defaultdict(lambda: collections.defaultdict(list))
    for d, _, files in os.walk(root):
        for f in sorted(files):
            if not f.endswith(".rs"):
                continue
            p = os.path.join(d, f)
            top = os.path.relpath(p, root).split(os.sep)[0].removesuffix(".rs")
            code = strip_comments(open(p, encoding="utf-8").read())
            for m in re.finditer(r"crate::(\{[^}]*\}|\w+)", code, re.S):
                g = m.group(1)
                names = re.findall(r"(?:^|[{,])\s*(\w+)", g) if g.startswith("{") else [g]
                for t in names:
                    if t in mods and t != top:
                        line = code[: m.start()].count("\n") + 1
                        edges[top][t].append(f"{p}:{line}")
    return mods, edges


def self_test():
    """The check catches an upward import, a two-way pair and an unplaced module."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for path, text in {
            "lib.rs": "pub mod target; pub mod balance; pub mod mystery;",
            "target/mod.rs": "use crate::balance::Balance; // an upward import\n",
            "balance/mod.rs": "use crate::target::Target;\n/// crate::retry in a doc comment is ignored\n",
            "mystery.rs": "",
        }.items():
            os.makedirs(os.path.dirname(os.path.join(d, path)), exist_ok=True)
            open(os.path.join(d, path), "w").write(text)
        mods, edges = edges_of(d)
        assert mods == {"lib", "target", "balance", "mystery"}, mods
        assert set(edges["target"]) == {"balance"} and set(edges["balance"]) == {"target"}, edges
        assert RANK["target"] < RANK["balance"]
        assert "mystery" not in RANK
    print("layers: self-test passed")


def main():
    if "--self-test" in sys.argv:
        self_test()
        return
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    root = args[0] if args else "src"
    mods, edges = edges_of(root)
    problems = []
    for m in sorted(mods - ROOTS):
        if m not in RANK:
            problems.append(f"module `{m}` is not in the layer table of {sys.argv[0]}: place it")
    for a in sorted(edges):
        for b in sorted(edges[a]):
            where = ", ".join(edges[a][b][:3])
            if a in ROOTS or a not in RANK or b not in RANK:
                continue
            if RANK[b] > RANK[a]:
                problems.append(
                    f"upward import: {a} ({LAYERS[RANK[a]][0]}) -> {b} ({LAYERS[RANK[b]][0]}) at {where}"
                )
            if a < b and a in edges.get(b, {}):
                problems.append(f"two-way import: {a} <-> {b} at {where}; {', '.join(edges[b][a][:3])}")
    if "--graph" in sys.argv:
        for a in sorted(edges):
            print(a, "->", ", ".join(sorted(edges[a])))
    for p in problems:
        print("layers:", p)
    n = sum(len(v) for v in edges.values())
    print(f"layers: {len(mods)} modules, {n} module-to-module imports, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
