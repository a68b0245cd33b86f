#!/usr/bin/env python3
"""Fails when the source files of a crate import each other in a cycle.

A file's imports are its `crate::` and `super::` paths, each resolved to the file that declares the module it
names. A `mod` declaration is not an import, nor is a re-export (`pub use`) in a crate root or a `mod.rs`: both
only say where things are. A cycle means two files can only be understood, and changed, together.
"""
import re
import sys
from pathlib import Path

PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+|::\{)")
USE_GROUP = re.compile(r"\buse\s+(crate|super)::\{([^;]*)\};", re.S)


def modules(src: Path):
    """Module path (tuple) -> file, for every .rs file under src."""
    out = {}
    for f in sorted(src.rglob("*.rs")):
        rel = f.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        # A binary beside a library is a crate of its own, as is each of `src/bin`.
        if parts[0] == "bin" or (parts == ["main"] and (src / "lib.rs").exists()):
            continue
        if parts == ["lib"] or parts == ["main"]:
            parts = []
        elif parts[-1] == "mod":
            parts = parts[:-1]
        out[tuple(parts)] = f
    return out


def strip(text: str) -> str:
    """The text without comments, string literals and `#[cfg(test)]` modules."""
    m = re.search(r"^#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text, re.M)
    text = text[: m.start()] if m else text
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r"'(?:\\.|\\u\{[0-9a-fA-F]+\}|[^'\\])'", "' '", text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def resolve(mods, here, base, names):
    """The file a path from module `here` names."""
    path = [] if base == "crate" else list(here[:-1])
    for name in names:
        if name == "super":
            path = path[:-1]
            continue
        path.append(name)
    while path and tuple(path) not in mods:
        path.pop()
    return mods.get(tuple(path))


def imports(mods, here, f):
    text = strip(f.read_text())
    is_root = f.name in ("lib.rs", "main.rs", "mod.rs")
    lines = []
    for line in text.split(";"):
        if is_root and re.match(r"\s*pub(\([^)]*\))?\s+use\b", line):
            continue
        lines.append(line)
    text = ";".join(lines)
    found = set()
    # Paths relative to the file's own child modules (`mod links;` then `links::replace_rows`).
    for child in re.findall(r"\bmod\s+([a-z_][a-z0-9_]*)\s*;", text):
        if re.search(r"(?<![:\w])" + child + r"::", text):
            found.add(mods.get(here + (child,)))
    # `use crate::{a, b::c}` groups.
    for m in USE_GROUP.finditer(text):
        for item in re.split(r",", m.group(2)):
            names = [n for n in re.split(r"::|\{|\}|\s", item) if n and n != "self"]
            if names:
                found.add(resolve(mods, here, m.group(1), names[:1] + names[1:]))
    for m in PATH.finditer(text):
        names = [n for n in m.group(2).split("::") if n and n != "{"]
        found.add(resolve(mods, here, m.group(1), names))
    found.discard(None)
    found.discard(f)
    return found


def cycles(graph):
    seen, stack, out = set(), [], []

    def visit(node, on):
        seen.add(node)
        stack.append(node)
        on.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in on:
                out.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in seen:
                visit(nxt, on)
        stack.pop()
        on.discard(node)

    for node in sorted(graph):
        if node not in seen:
            visit(node, set())
    return out


def main(roots):
    status = 0
    for cargo in sorted(p for r in roots for p in Path(r).rglob("Cargo.toml")):
        src = cargo.parent / "src"
        if "target" in cargo.parts or not src.is_dir():
            continue
        mods = modules(src)
        graph = {f: imports(mods, here, f) for here, f in mods.items()}
        for c in cycles(graph):
            status = 1
            print("check-modules: files import each other: " + " -> ".join(str(p) for p in c), file=sys.stderr)
    if status == 0:
        print("check-modules: no crate's files import each other in a cycle")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["shared", "functions", "cli", "tests"]))
