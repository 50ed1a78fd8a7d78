"""Debugger commands, one module per area, all registered in one registry.

`load_all()` (called by the Engine) imports every module of this package, so a
new area (for example `network.py`) only has to exist and use `@command`.
"""

from __future__ import annotations

import importlib
import pkgutil

from .registry import (AREAS, PROMPT, REGISTRY, CommandError, CommandResult, CommandSpec, Invocation,  # noqa: F401
                       Registry, command, split_commands, tokenize)

_LOADED = False


def load_all() -> None:
    """Import every command module of this package (idempotent)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name != "registry" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")

