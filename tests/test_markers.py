"""Every test that needs a parity reference (torch & co.) carries ``pytest.mark.parity``.

So ``pytest -m "not parity"`` runs on a runtime-only install. A test needs the marker when
it imports a reference module, directly (``import torch``, ``require_module("torch")``,
``importlib.import_module``, ``pytest.importorskip``) or through a helper that does: a
function of its own module, or of a ``tests`` module it imports (``ref.torch_loss(...)``,
``from tests.x import helper``), followed transitively. A module-level import of one needs a
module ``pytestmark`` with ``parity`` (or the marker on every test).
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
REFERENCES = {"torch", "torchvision", "segmentation_models_pytorch", "timm", "pycocotools"}
IMPORTERS = {"require_module", "import_module", "importorskip"}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def _is_reference(name: str) -> bool:
    return name.split(".")[0] in REFERENCES


def _imports_reference(node: ast.AST) -> bool:
    """A reference import directly inside ``node`` (nested defs included)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Import) and any(_is_reference(a.name) for a in sub.names):
            return True
        if isinstance(sub, ast.ImportFrom) and sub.module and _is_reference(sub.module):
            return True
        if isinstance(sub, ast.Call) and sub.args and isinstance(sub.args[0], ast.Constant):
            func = sub.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in IMPORTERS and isinstance(sub.args[0].value, str):
                if _is_reference(sub.args[0].value):
                    return True
    return False


def _module_level_import(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(node, ast.Try):  # a guarded import still needs the reference
            if _imports_reference(node):
                return True
        elif _imports_reference(node):
            return True
    return False


def _has_parity(node: ast.AST | None) -> bool:
    if node is None:
        return False
    return any(isinstance(sub, ast.Attribute) and sub.attr == "parity" for sub in ast.walk(node))


class _Module:
    def __init__(self, path: Path):
        self.path = path
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.functions = {
            n.name: n
            for n in self.tree.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        }
        self.classes = [n for n in self.tree.body if isinstance(n, ast.ClassDef)]
        self.module_aliases: dict[str, str] = {}  # local name -> tests module
        self.imported_names: dict[str, tuple[str, str]] = {}  # local name -> (module, name)
        for node in self.tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tests"):
                for alias in node.names:
                    local = alias.asname or alias.name
                    self.module_aliases[local] = f"{node.module}.{alias.name}"
                    self.imported_names[local] = (node.module, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("tests"):
                        self.module_aliases[alias.asname or alias.name] = alias.name
        self.pytestmark = next(
            (
                n.value
                for n in self.tree.body
                if isinstance(n, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)
            ),
            None,
        )


def _load_modules() -> dict[str, _Module]:
    return {_module_name(p): _Module(p) for p in sorted(TESTS.rglob("*.py"))}


def _needing_functions(modules: dict[str, _Module]) -> set[tuple[str, str]]:
    """(module, function) pairs that import a reference, followed through calls."""
    need = {
        (name, fn)
        for name, module in modules.items()
        for fn, node in module.functions.items()
        if _imports_reference(node)
    }
    changed = True
    while changed:
        changed = False
        for name, module in modules.items():
            for fn, node in module.functions.items():
                if (name, fn) not in need and _calls_needing(node, name, module, need):
                    need.add((name, fn))
                    changed = True
    return need


def _calls_needing(node: ast.AST, name: str, module: _Module, need: set) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            if (name, sub.id) in need:
                return True
            if sub.id in module.imported_names and module.imported_names[sub.id] in need:
                return True
        elif isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name):
            target = module.module_aliases.get(sub.value.id)
            if target is not None and (target, sub.attr) in need:
                return True
    return False


def find_unmarked() -> list[str]:
    modules = _load_modules()
    need = _needing_functions(modules)
    problems = []
    for name, module in modules.items():
        if not module.path.name.startswith("test_") or _has_parity(module.pytestmark):
            continue
        at_module_level = _module_level_import(module.tree)
        tests = [(fn, node, None) for fn, node in module.functions.items()]
        tests += [
            (f"{cls.name}.{n.name}", n, cls)
            for cls in module.classes
            for n in cls.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        ]
        for fn, node, cls in tests:
            if not fn.split(".")[-1].startswith("test"):
                continue
            needs = at_module_level or _imports_reference(node) or (name, fn) in need
            needs = needs or _calls_needing(node, name, module, need)
            marked = any(_has_parity(d) for d in node.decorator_list)
            marked = marked or (cls is not None and any(_has_parity(d) for d in cls.decorator_list))
            if needs and not marked:
                where = "module-level import" if at_module_level else "imports a reference"
                problems.append(f"{module.path.relative_to(REPO)}::{fn} ({where}) lacks parity")
    return problems


def test_every_reference_test_is_marked_parity():
    problems = find_unmarked()
    assert not problems, "add pytest.mark.parity:\n" + "\n".join(problems)


def test_the_check_flags_an_unmarked_test(tmp_path, monkeypatch):
    # The checker itself: a test using a torch helper without the marker is named; a marked
    # test and a test without references are not.
    source = (
        "import pytest\n\n\ndef _helper():\n    import torch\n    return torch\n\n\n"
        "def test_uses_helper():\n    _helper()\n\n\n"
        "@pytest.mark.parity\ndef test_marked():\n    import torchvision\n\n\n"
        "def test_plain():\n    pass\n"
    )
    sample_path = tmp_path / "test_sample.py"
    sample_path.write_text(source)
    monkeypatch.setattr(
        "tests.test_markers._load_modules", lambda: {"tests.test_sample": _Module(sample_path)}
    )
    monkeypatch.setattr("tests.test_markers.REPO", tmp_path)
    assert find_unmarked() == [
        "test_sample.py::test_uses_helper (imports a reference) lacks parity"
    ]
