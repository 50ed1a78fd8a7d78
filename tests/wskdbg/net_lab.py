"""Engines on the default lab for the network command tests (echosrv and khttpd started with sc)."""

from __future__ import annotations

from wskdbg.engine import Engine


def lab_engine(*drivers: str) -> Engine:
    """The default lab with `drivers` started on winsrv (sc start ... then g until idle)."""
    engine = Engine(seed=1)
    for name in drivers:
        result = engine.execute(f"sc start {name}")
        assert not result.error, result.text
    if drivers:
        engine.execute("g")
    return engine


def run(engine: Engine, line: str) -> str:
    result = engine.execute(line)
    assert not result.error, result.text
    return result.text
