"""The import-layering contract: no import cycle, and imports only point down the layers.

Every ``import`` of a kerasseg module counts, including the ones inside functions and under
``TYPE_CHECKING``: a function-local import is a dependency that is merely paid later.
``from package import name`` is an edge to ``package.name`` when that is a module, else to
``package``. A package's ``__init__`` belongs to the package's layer. The root package
``kerasseg`` is the facade that imports everything: only the top layer (the CLI) imports it;
importing its ``__version__`` is free.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The layers, lowest first: a module may import its own layer's modules (no cycle) and the
#: layers below it, never one above. Modules in one layer entry that are listed together
#: (a tuple) are siblings and must not import each other.
LAYERS: list[tuple[str, ...]] = [
    # The detection format and box-format names are leaves the metrics and data loaders
    # share with the detectors (listed before the `kerasseg.detection` prefix they are in).
    ("kerasseg.registry", "kerasseg.utils", "kerasseg.detection.format"),
    (
        "kerasseg.layers",
        "kerasseg.losses",
        "kerasseg.metrics",
        "kerasseg.data",
        "kerasseg.visualize",
    ),
    ("kerasseg.encoders", "kerasseg.callbacks"),
    ("kerasseg.segmentation", "kerasseg.detection"),
    ("kerasseg.training", "kerasseg.saving"),
    ("kerasseg.zoo",),
    ("kerasseg.cli_detection",),
    ("kerasseg.cli",),
]


def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under `package_dir`."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def import_edges(package_dir: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same top-level package it imports (anywhere in the file)."""
    modules = module_names(package_dir)
    top = package_dir.name

    def owner(name: str) -> str:
        while name not in modules and "." in name:
            name = name.rpartition(".")[0]
        return name

    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets |= {owner(a.name) for a in node.names if a.name.split(".")[0] == top}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    kept = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(kept + ([node.module] if node.module else []))
                if base.split(".")[0] != top:
                    continue
                for alias in node.names:
                    if base == top and alias.name == "__version__":
                        continue
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in modules else owner(base))
        targets.discard(name)
        edges[name] = targets
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def layer_of(module: str, layers: list[tuple[str, ...]]) -> tuple[int, str] | None:
    """``(layer index, the layer entry's prefix)`` of a module; None for the root facade."""
    for index, entries in enumerate(layers):
        for prefix in entries:
            if module == prefix or module.startswith(prefix + "."):
                return index, prefix
    return None


def layering_violations(
    edges: dict[str, set[str]], layers: list[tuple[str, ...]], root: str
) -> list[str]:
    """Imports that point up a layer or across siblings, and modules in no layer."""
    problems = []
    for module in sorted(edges):
        if module == root:
            continue
        here = layer_of(module, layers)
        if here is None:
            problems.append(f"{module} is in no layer of LAYERS")
            continue
        for target in sorted(edges[module]):
            there = layer_of(target, layers)
            if target == root and here[0] < len(layers) - 1:
                problems.append(f"{module} imports the root package {root} (a facade)")
            elif target == root or there is None:
                continue  # reported as a module in no layer
            elif there[0] > here[0]:
                problems.append(f"{module} imports {target}, a higher layer")
            elif there[0] == here[0] and there[1] != here[1]:
                problems.append(f"{module} imports {target}, a sibling in the same layer")
    return problems


def test_no_import_cycle():
    cycle = find_cycle(import_edges(ROOT / "kerasseg"))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_point_down_the_layers():
    edges = import_edges(ROOT / "kerasseg")
    assert layering_violations(edges, LAYERS, "kerasseg") == []


# The checker itself, on a small package written for the purpose.


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = tmp_path / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "pkg"


def test_checker_finds_a_cycle_through_a_function_local_import(tmp_path):
    package = _package(
        tmp_path,
        {
            "__init__.py": "",
            "low/__init__.py": "",
            "low/a.py": "def f():\n    from pkg.high import b\n",
            "high/__init__.py": "",
            "high/b.py": "from pkg.low import a\n",
        },
    )
    edges = import_edges(package)
    assert edges["pkg.low.a"] == {"pkg.high.b"} and edges["pkg.high.b"] == {"pkg.low.a"}
    assert find_cycle(edges) == ["pkg.high.b", "pkg.low.a", "pkg.high.b"]


def test_checker_finds_back_edges_siblings_and_relative_imports(tmp_path):
    package = _package(
        tmp_path,
        {
            "__init__.py": "from pkg import __version__\n",
            "low/__init__.py": "",
            "low/a.py": "from ..high.b import thing\n",  # relative, upward
            "low/c.py": "import pkg.side.d\n",  # sibling
            "side/__init__.py": "",
            "side/d.py": "if False:\n    from pkg import base\n",  # downward: fine
            "base/__init__.py": "",
            "high/__init__.py": "",
            "high/b.py": "thing = 1\nimport pkg\n",
        },
    )
    layers = [("pkg.base",), ("pkg.low", "pkg.side"), ("pkg.high",), ("pkg.top",)]
    problems = layering_violations(import_edges(package), layers, "pkg")
    assert problems == [
        "pkg.high.b imports the root package pkg (a facade)",
        "pkg.low.a imports pkg.high.b, a higher layer",
        "pkg.low.c imports pkg.side.d, a sibling in the same layer",
    ]
    assert find_cycle(import_edges(package)) is None


@pytest.mark.parametrize("module", ["kerasseg.zoo.registry", "kerasseg.registry"])
def test_every_module_has_a_layer(module):
    assert layer_of(module, LAYERS) is not None
