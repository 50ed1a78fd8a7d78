"""Engines for the network command tests: the standard lab (WSK, kfs, echosrv and khttpd already
running on winsrv, the dns and httpbin hosts) and the bare lab (tcpip and AFD only)."""

from __future__ import annotations

from typing import Any

from stack.world import default_world
from wskdbg.engine import Engine


def bare_world(seed: int) -> Any:
    return default_world(seed, services=False)


def lab_engine() -> Engine:
    """The standard lab, as `wskdbg` starts it."""
    return Engine(seed=1)


def bare_engine() -> Engine:
    """winsrv and client with nothing listening (drivers are started with `sc start`)."""
    return Engine(factory=bare_world, seed=1)


def run(engine: Engine, line: str) -> str:
    result = engine.execute(line)
    assert not result.error, result.text
    return result.text
