"""The code's shape, as the README's "How the code is laid out" promises it: every module says
what it owns in its first line, and no class grows past ~250 lines."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import ROOT

MODULES = sorted(p for folder in ("engine", "tui", "integrations") for p in (ROOT / folder).rglob("*.py"))
MAX_CLASS_LINES = 260


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_module_says_what_it_owns_and_has_no_giant_class(path):
    tree = ast.parse(path.read_text())
    doc = ast.get_docstring(tree)
    assert doc and doc.splitlines()[0].strip(), f"{path}: no module docstring"
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            size = node.end_lineno - node.lineno + 1
            assert size <= MAX_CLASS_LINES, f"{path}: class {node.name} has {size} lines; split it by responsibility"


def test_every_module_is_in_the_readme_layout():
    readme = (ROOT / "README.md").read_text()
    missing = [
        str(p.relative_to(ROOT))
        for p in MODULES
        if p.name != "__init__.py" and f"`{p.relative_to(ROOT)}`" not in readme
    ]
    assert not missing, f"README's layout section lacks {missing}"


def _imports(path) -> set[str]:
    """The modules a file imports (relative ones resolved within deeptui.engine), type checking's too."""
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # from .loop import X, from . import loop
                base = node.module or ""
                out.update({base} if base else {a.name for a in node.names})
            else:
                out.add(node.module or "")
                out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_only_the_builder_imports_the_loop():
    """The engine's parts reach the run through engine.surface: only engine/build.py makes an
    Engine (the thread runs whatever run() it is given)."""
    importers = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "engine").rglob("*.py")
        if p.name != "loop.py" and {"loop", "deeptui.engine.loop"} & _imports(p)
    )
    assert importers == ["engine/build.py"]
