"""Import directions (the layering of the design notes): every ``polyvision`` import in the
package, at module level or inside a function, read with ``ast`` without importing anything.

Dependencies point one way: scripts -> models -> heads, datamodules -> metrics,
models.layers, errors. Lazy imports inside functions count: they only move a cycle from
import time to call time.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent  # the repository root is the ``polyvision`` package
EXCLUDED = {"tests", "build"}

# The part of the package a module belongs to: the longest of these prefixes it starts with.
PARTS = ["polyvision", "polyvision.version", "polyvision.errors", "polyvision.metrics", "polyvision.models.layers", "polyvision.heads",
         "polyvision.datamodules", "polyvision.models", "polyvision.configs", "polyvision.scripts", "polyvision.cli"]

# part -> the parts it may import (besides itself). ``polyvision`` is the package __init__,
# the lazy public API (create_model, load_model, list_models).
ALLOWED = {
    "polyvision.version": set(),
    "polyvision.errors": set(),
    "polyvision.metrics": {"polyvision.errors"},
    "polyvision.models.layers": {"polyvision.errors"},
    "polyvision.heads": {"polyvision.metrics", "polyvision.models.layers", "polyvision.errors"},
    "polyvision.datamodules": {"polyvision.metrics", "polyvision.models.layers", "polyvision.errors"},
    "polyvision.models": {"polyvision.heads", "polyvision.datamodules", "polyvision.metrics", "polyvision.models.layers",
                          "polyvision.errors"},
    "polyvision.configs": set(),
    "polyvision.scripts": {"polyvision.models", "polyvision.heads", "polyvision.datamodules", "polyvision.metrics",
                           "polyvision.models.layers", "polyvision.errors", "polyvision.configs", "polyvision",
                           "polyvision.cli"},
    "polyvision.cli": {"polyvision.scripts", "polyvision.models", "polyvision.heads", "polyvision.datamodules",
                       "polyvision.metrics", "polyvision.models.layers", "polyvision.errors", "polyvision.configs",
                       "polyvision"},
    "polyvision": {"polyvision.models", "polyvision.errors"},
}
# The version string is a leaf every part may read (checkpoints record it).
for part, allowed in ALLOWED.items():
    if part != "polyvision.version":
        allowed.add("polyvision.version")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("polyvision", *parts))


def package_files() -> dict[str, Path]:
    files = {}
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT).parts
        if relative[0] in EXCLUDED or any(part.startswith(".") for part in relative[:-1]):
            continue
        files[module_name(path)] = path
    return files


MODULES = package_files()


def imported_modules(name: str, path: Path) -> dict[str, int]:
    """The package modules ``name`` imports -> the first line that does, anywhere in the file.
    ``from a.b import c`` imports module ``a.b.c`` when there is one, else ``a.b``."""
    is_package = path.name == "__init__.py"
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        for target in targets:
            while target not in MODULES and "." in target:  # ``import polyvision.a.b`` of an attribute path
                target = target.rpartition(".")[0]
            if target in MODULES and target != name and (target == "polyvision" or target.startswith("polyvision.")):
                found.setdefault(target, node.lineno)
    return found


GRAPH = {name: imported_modules(name, path) for name, path in MODULES.items()}


def part_of(module: str) -> str:
    return max((part for part in PARTS if module == part or module.startswith(part + ".")), key=len)


def test_the_walk_sees_the_package():
    assert {"polyvision", "polyvision.errors", "polyvision.models.base", "polyvision.heads.base"} <= set(MODULES)
    assert not any(name.startswith("polyvision.tests") for name in MODULES)
    assert all(part_of(name) in ALLOWED for name in MODULES), sorted(n for n in MODULES if part_of(n) not in ALLOWED)


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, iterators = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while path:
            child = next(iterators[-1], None)
            if child is None:
                state[path.pop()] = 2
                iterators.pop()
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                iterators.append(iter(sorted(graph[child])))
    return None


def test_find_cycle_reports_the_path():
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 1}}) is None


def test_no_import_cycles():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle (module:line of the import): " + " -> ".join(
        f"{module}:{GRAPH[module][following]}" for module, following in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_imports_follow_the_layering(part):
    wrong = [f"{module}:{line} imports {target}"
             for module, targets in sorted(GRAPH.items()) if part_of(module) == part
             for target, line in sorted(targets.items(), key=lambda item: item[1])
             if part_of(target) != part and part_of(target) not in ALLOWED[part]]
    assert not wrong, f"{part} may import only {sorted(ALLOWED[part]) or 'nothing from polyvision'}:\n" + "\n".join(wrong)
