"""Layering: `stack/` never imports `wskdbg`; WSK and TDI never reach below the transport with ctypes."""

from __future__ import annotations

import ast
from pathlib import Path

STACK = Path(__file__).resolve().parents[3] / "stack"


def _imported_modules(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            names.append(str(node.args[0].value))
    return names


def test_stack_never_imports_wskdbg():
    sources = sorted(STACK.rglob("*.py"))
    assert any(p.parent.name == "kernel" for p in sources)  # really scanning the tree
    offenders = []
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name in _imported_modules(tree):
            if name == "wskdbg" or name.startswith("wskdbg."):
                offenders.append(f"{path.relative_to(STACK.parent)}: {name}")
    assert offenders == []


def test_afd_and_tdi_build_their_mdls_from_the_transports_runs_without_ctypes():
    """The transport hands afd and tdx (physical address, view) runs: neither recovers where a
    Python buffer lies in memory with ctypes pointer arithmetic (issue 15, layering repairs)."""
    offenders = []
    for package in ("afd", "tdi", "wsk"):
        sources = sorted((STACK / package).rglob("*.py"))
        assert sources, package
        for path in sources:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            offenders += [f"{path.relative_to(STACK.parent)}: {name}" for name in _imported_modules(tree)
                          if name == "ctypes" or name.startswith("ctypes.")]
    assert offenders == []
