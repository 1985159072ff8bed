"""Count the package's own import graph: modules, import arrows, layers.

    python tools/import_graph.py [--package bayes_pmf] [--json] [--edges]

Every ``import`` and ``from ... import`` between the package's modules counts, wherever
it appears (function-level imports included); an import of a name that a package's
``__init__`` re-exports counts as an import of the module that defines it (re-exporting
``__init__`` files are looked through, and are not nodes themselves). Layers: the number
of modules on the longest chain in which each module imports the next.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_files(package: str) -> dict[str, Path]:
    base = ROOT / package
    files = {}
    for path in sorted(base.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def _resolve(current: str, is_package: bool, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    parts = current.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts + ([module] if module else []))


def build_graph(package: str = "bayes_pmf"):
    files = module_files(package)
    packages = {name for name, path in files.items() if path.name == "__init__.py"}
    raw: dict[str, set[str]] = {}
    reexports: dict[str, dict[str, str]] = {name: {} for name in packages}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == package:
                        targets.add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, name in packages, node.level, node.module)
                if base.split(".")[0] != package:
                    continue
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    target = full if full in files else base
                    targets.add(target)
                    if name in packages and name == base.rsplit(".", 1)[0] or name in packages:
                        reexports.setdefault(name, {})[alias.asname or alias.name] = target
        raw[name] = targets

    @lru_cache(maxsize=None)
    def look_through(target: str, attr: str | None = None) -> str:
        if target in packages and attr and attr in reexports.get(target, {}):
            inner = reexports[target][attr]
            return look_through(inner) if inner != target else target
        return target

    edges = set()
    for name, path in files.items():
        if name in packages:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            pairs = []
            if isinstance(node, ast.Import):
                pairs = [(alias.name, None) for alias in node.names
                         if alias.name.split(".")[0] == package]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, False, node.level, node.module)
                if base.split(".")[0] != package:
                    continue
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    pairs.append((full, None) if full in files else (base, alias.name))
            for target, attr in pairs:
                resolved = look_through(target, attr)
                if resolved in packages:  # a package's own code or an unknown name
                    continue
                if resolved != name and resolved in files:
                    edges.add((name, resolved))
    nodes = sorted(n for n in files if n not in packages)
    return nodes, sorted(edges)


def layers(nodes, edges) -> tuple[int, list[str]]:
    out = {n: [] for n in nodes}
    for a, b in edges:
        out[a].append(b)

    @lru_cache(maxsize=None)
    def longest(node: str) -> tuple[str, ...]:
        best: tuple[str, ...] = ()
        for nxt in out[node]:
            chain = longest(nxt)
            if len(chain) > len(best):
                best = chain
        return (node,) + best

    sys.setrecursionlimit(10_000)
    chain = max((longest(n) for n in nodes), key=len)
    return len(chain), list(chain)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default="bayes_pmf")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--edges", action="store_true")
    args = parser.parse_args(argv)
    nodes, edges = build_graph(args.package)
    depth, chain = layers(nodes, edges)
    summary = {"modules": len(nodes), "arrows": len(edges), "layers": depth,
               "longest_chain": chain}
    if args.json:
        print(json.dumps(summary | ({"edges": edges} if args.edges else {}), indent=1))
        return
    print(f"{len(nodes)} modules, {len(edges)} import arrows, {depth} layers")
    print("longest chain: " + " -> ".join(chain))
    if args.edges:
        for a, b in edges:
            print(f"  {a} -> {b}")


if __name__ == "__main__":
    main()
