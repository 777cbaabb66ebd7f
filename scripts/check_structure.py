#!/usr/bin/env python3
"""The code's shape rules (docs/ARCHITECTURE.md), checked on the sources; a ctest.

  - no include cycle between files, and the folders' include graph is acyclic (a folder that
    includes another's headers is never included back by it, directly or around a loop);
  - no C file over 1,200 lines;
  - no function over 150 lines outside the kernels (runtime/cpu/);
  - tools/ (the CLI: argv only) under 1,500 lines in all.

Exits 1 naming every breach. Comments and strings are skipped when counting braces.
"""
import os
import re
import subprocess
import sys

MAX_FILE, MAX_FUNCTION, MAX_TOOLS = 1200, 150, 1500
LIBRARY_SKIP = ("tests/", "bench/", "docs/")


def sources(root):
    out = subprocess.run(["git", "ls-files", "*.c", "*.h"], capture_output=True, text=True,
                         cwd=root, check=True).stdout.split()
    return [f for f in out if os.path.exists(os.path.join(root, f))]


def includes(root, files):
    known = set(files)
    graph = {}
    for f in files:
        text = open(os.path.join(root, f), encoding="utf-8", errors="replace").read()
        graph[f] = [p for p in re.findall(r'#include "([^"]+)"', text) if p in known]
    return graph


def file_cycles(graph):
    color, found = {}, []

    def visit(v, path):
        color[v] = 1
        path.append(v)
        for w in graph.get(v, ()):
            if color.get(w) == 1:
                found.append(path[path.index(w):] + [w])
            elif not color.get(w):
                visit(w, path)
        path.pop()
        color[v] = 2

    for v in graph:
        if not color.get(v):
            visit(v, [])
    return found


def folder_cycles(graph):
    folders = {}
    for f, deps in graph.items():
        if f.startswith(LIBRARY_SKIP):
            continue
        for p in deps:
            a, b = os.path.dirname(f), os.path.dirname(p)
            if a != b:
                folders.setdefault(a, {}).setdefault(b, (f, p))

    def reaches(a, b, seen):
        for c in folders.get(a, {}):
            if c == b:
                return True
            if c not in seen:
                seen.add(c)
                if reaches(c, b, seen):
                    return True
        return False

    return [(a, b, why) for a in folders for b, why in folders[a].items() if reaches(b, a, set())]


def strip(text):
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(\\.|[^"\\\n])*"', '""', text)
    return re.sub(r"'(\\.|[^'\\\n])*'", "''", text)


def long_functions(root, f):
    lines = strip(open(os.path.join(root, f), encoding="utf-8", errors="replace").read()).split("\n")
    depth, start, found = 0, None, []
    for i, line in enumerate(lines):
        for ch in line:
            if ch == "{":
                if depth == 0:
                    start = (i, ")" in line)
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0 and start:
                    if start[1] and i - start[0] + 1 > MAX_FUNCTION:
                        found.append((start[0] + 1, i - start[0] + 1))
                    start = None
    return found


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    files = sources(root)
    graph = includes(root, files)
    bad = []
    for c in file_cycles(graph):
        bad.append("include cycle: " + " -> ".join(c))
    for a, b, (f, p) in folder_cycles(graph):
        bad.append(f"folders include each other: {a}/ -> {b}/ ({f} includes {p}) and back")
    tools = 0
    for f in files:
        if not f.endswith(".c") or f.startswith(LIBRARY_SKIP):
            continue
        n = sum(1 for _ in open(os.path.join(root, f), encoding="utf-8", errors="replace"))
        if n > MAX_FILE:
            bad.append(f"{f}: {n} lines (at most {MAX_FILE})")
        if f.startswith("tools/"):
            tools += n
        if not f.startswith("runtime/cpu/"):
            for line, length in long_functions(root, f):
                bad.append(f"{f}:{line}: a function of {length} lines (at most {MAX_FUNCTION})")
    tools += sum(sum(1 for _ in open(os.path.join(root, f))) for f in files
                 if f.startswith("tools/") and f.endswith(".h"))
    if tools > MAX_TOOLS:
        bad.append(f"tools/: {tools} lines (at most {MAX_TOOLS}: the CLI only parses arguments)")
    for b in bad:
        print("structure:", b)
    if not bad:
        print(f"structure: ok ({len(files)} files; tools/ {tools} lines)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
