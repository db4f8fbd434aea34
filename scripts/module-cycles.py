#!/usr/bin/env python3
"""Finds import cycles between the modules of each crate in the workspace.

A module is one source file (`src/a.rs` or `src/a/mod.rs` is `a`, `src/a/b.rs` is `a::b`).
Module A imports B when A's file names a path through B: `crate::b::…`, `super::…` that
resolves to B, or an item the crate root re-exports from B (`crate::Item` where lib.rs says
`pub use b::Item`). A parent and its own children are one unit (a child naming `super::X`
is containment, not an import), so only modules of which neither contains the other count.
Prints every cycle (strongly connected set of two or more modules) and exits 1 if any.

Usage: scripts/module-cycles.py [CRATE_DIR ...]   (default: every crate with a src/)
"""

import re
import sys
from pathlib import Path

PATH = re.compile(r"\b(crate|super|self)((?:::\w+)+|::\{)")


def modules_of(src: Path):
    """Maps module path tuples to files for one crate's src/ folder."""
    mods = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "mod":
            parts = parts[:-1]
        if parts in (["lib"], ["main"]):
            parts = []
        mods[tuple(parts)] = f
    return mods


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def expand_group(text: str, start: int):
    """Expands `{a, b::c, d::{e, f}}` beginning at text[start] == '{' into path lists."""
    depth, i = 0, start
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                break
        i += 1
    body = text[start + 1 : i]
    out, item, depth = [], "", 0
    for ch in body + ",":
        if ch == "," and depth == 0:
            item = item.strip()
            if item:
                m = re.match(r"([\w:]*?)(?:::)?\{(.*)\}$", item, flags=re.S)
                if m:
                    head = [s for s in m.group(1).split("::") if s]
                    for sub in expand_group("{" + m.group(2) + "}", 0):
                        out.append(head + sub)
                else:
                    out.append([s for s in re.split(r"\s+as\s+", item)[0].split("::") if s])
            item = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        item += ch
    return out


def paths_in(text: str):
    """Yields (anchor, segments) for every crate/super/self path in the text."""
    for m in PATH.finditer(text):
        anchor, rest = m.group(1), m.group(2)
        if rest == "::{":
            for segs in expand_group(text, m.end() - 1):
                yield anchor, segs
        else:
            segs = [s for s in rest.split("::") if s]
            end = m.end()
            if text[end : end + 3] == "::{":
                for sub in expand_group(text, end + 2):
                    yield anchor, segs + sub
            else:
                yield anchor, segs


def root_reexports(mods, text: str):
    """Maps names the crate root re-exports to the module they come from."""
    out = {}
    for m in re.finditer(r"pub\s+use\s+([^;]+);", text):
        stmt = m.group(1).strip()
        head = re.match(r"(\w+)::", stmt)
        if not head or (head.group(1),) not in mods:
            continue
        if "{" in stmt:
            idx = stmt.index("{")
            prefix = [s for s in stmt[:idx].split("::") if s]
            for segs in expand_group(stmt, idx):
                full = prefix + segs
                out[full[-1]] = longest_module(mods, full)
        else:
            segs = [s.strip() for s in re.split(r"\s+as\s+", stmt)[0].split("::")]
            name = re.split(r"\s+as\s+", stmt)[-1].split("::")[-1].strip()
            out[name] = longest_module(mods, segs)
    return out


def longest_module(mods, segs):
    for n in range(len(segs), -1, -1):
        if tuple(segs[:n]) in mods:
            return tuple(segs[:n])
    return ()


def related(a, b):
    return a[: len(b)] == b or b[: len(a)] == a


def cycles(crate: Path):
    src = crate / "src"
    mods = modules_of(src)
    root = mods.get(())
    reexp = root_reexports(mods, strip_comments(root.read_text())) if root else {}
    edges = {m: set() for m in mods}
    for mod, f in mods.items():
        text = strip_comments(f.read_text())
        for anchor, segs in paths_in(text):
            if anchor == "crate":
                base = []
            elif anchor == "self":
                base = list(mod)
            else:
                # `super` is the parent of this module (from a/b.rs, a; from a/mod.rs, the root).
                base = list(mod)
                while segs and segs[0] == "super":
                    segs = segs[1:]
                    base = base[:-1]
                base = base[:-1]
            target = longest_module(mods, base + segs)
            if target == () and segs and segs[0] in reexp:
                target = reexp[segs[0]]
            if not related(mod, target):
                edges[mod].add(target)
    return sccs(edges)


def sccs(edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
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
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def main():
    top = Path(__file__).resolve().parent.parent
    crates = [Path(a) for a in sys.argv[1:]] or sorted(p.parent for p in top.glob("*/src"))
    bad = 0
    for crate in crates:
        for comp in cycles(crate):
            bad += 1
            names = ", ".join("::".join(m) or "(root)" for m in comp)
            print(f"{crate.name}: cycle among {names}")
    print(f"module-cycles: {len(crates)} crates, {bad} cycles")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
