#!/usr/bin/env python3
"""Checks imrelay's module structure: no import cycles between its files, and
imports that point one way (adapters -> core -> upstream/config).

Usage: python3 .ci/layers.py [src]   (exit 1 on a cycle or a forbidden import)

It reads `use crate::...` and `crate::...` paths (and `super::` ones) as text
and resolves each to the file that defines the module, the way rustc lays
modules out (a/b.rs or a/b/mod.rs)."""
import os
import re
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else "src"
# What a layer may not import: (importer prefix, imported prefix, why).
FORBIDDEN = [
    ("core", "api", "the core knows no HTTP"),
    ("core", "clients", "the core knows no client wire format"),
    ("core", "demo", "the core serves every daemon"),
    ("core", "cluster", "the core reaches Redis only through its engine seam"),
    ("rocketchat", "cluster", "upstream knows no store"),
    ("rocketchat", "core", "upstream sits below the core"),
    ("rocketchat", "api", "upstream sits below the adapters"),
    ("rocketchat", "clients", "upstream sits below the adapters"),
    ("api", "clients", "the backend API does not reach into the client adapter"),
    ("config", "", "config is a leaf"),
]


def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    if parts in (["lib"], ["main"]):
        return []
    return parts


files = {}
for root, _, names in os.walk(SRC):
    for n in names:
        if n.endswith(".rs"):
            p = os.path.join(root, n)
            files[tuple(module_of(p))] = p


def resolve(parts):
    """The longest prefix of `parts` that is a module file."""
    for k in range(len(parts), 0, -1):
        if tuple(parts[:k]) in files:
            return tuple(parts[:k])
    return None


edges = {}
path_re = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
for mod, path in files.items():
    text = open(path, encoding="utf-8").read()
    # Tests may reach anywhere; the structure is about the code.
    text = re.split(r"#\[cfg\(test\)\]", text)[0]
    deps = set()
    for m in path_re.finditer(text):
        names = m.group(2).split("::")[1:]
        # `super` is the parent module, whether this is a/b.rs or a/b/mod.rs.
        base = [] if m.group(1) == "crate" else list(mod[:-1])
        target = resolve(base + names)
        if target and target != mod and target != ():
            deps.add(target)
    edges[mod] = deps

problems = []
for mod, deps in edges.items():
    for d in deps:
        for frm, to, why in FORBIDDEN:
            if mod and mod[0] == frm and d[0] != frm and (to == "" or d[0] == to):
                problems.append(f"{files[mod]} imports {files[d]}: {why}")

# Cycles between files (Tarjan's strongly connected components).
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]


def strong(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges.get(v, ()):
        if w not in index:
            strong(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(comp)


sys.setrecursionlimit(10000)
for v in list(edges):
    if v not in index:
        strong(v)
for comp in sccs:
    problems.append("import cycle: " + " <-> ".join(sorted(files[c] for c in comp)))

for p in problems:
    print(p)
print(f"layers: {len(files)} files, {sum(len(d) for d in edges.values())} imports, "
      f"{len(sccs)} cycles, {len(problems)} problems")
sys.exit(1 if problems else 0)
