"""Shared pieces of the bridge tests: running the lab in real time while a real client works."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pytest

from stack.bridge.session import BridgeSession

ECHO_CLIENT = str(Path(__file__).with_name("echo_client.py"))
PROCESS_WALL_S = 90.0  # a bound on any one real client; the test fails (never hangs) past it


def need_tools(*names: str) -> None:
    for name in names:
        if shutil.which(name) is None:
            pytest.skip(f"`{name}` is not installed (.ci/run installs it from Debian)")


def pattern(size: int, label: bytes = b"wskdbg-bridge") -> bytes:
    """Deterministic test bytes (a SHA-256 counter stream)."""
    out = bytearray()
    block = 0
    while len(out) < size:
        out += hashlib.sha256(label + block.to_bytes(8, "big")).digest()
        block += 1
    return bytes(out[:size])


@dataclass(slots=True)
class Finished:
    returncode: int
    stdout: bytes
    stderr: bytes


def _check_lab(session: BridgeSession) -> None:
    halted = session.world.scheduler.halted
    assert halted is None, f"the lab bug-checked: {halted.code:#x} {halted.detail[:1500]}"


def drive(session: BridgeSession, done: Callable[[], bool], max_wall_s: float = PROCESS_WALL_S) -> str:
    """Run the lab in real time until `done()`; bounded in wall time."""
    why = session.run(max_wall_s=max_wall_s, until=done)
    _check_lab(session)
    return why


def run_process(session: BridgeSession, argv: Sequence[str], max_wall_s: float = PROCESS_WALL_S,
                stdin: bytes | None = None, **popen: Any) -> Finished:
    """Start a real program and run the lab until it exits (its output goes to files, never a full pipe)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as feed:
        feed.write(stdin or b"")
        feed.seek(0)
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, stdin=feed, **popen)
        try:
            why = drive(session, lambda: proc.poll() is not None, max_wall_s)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        out.seek(0)
        err.seek(0)
        result = Finished(proc.returncode, out.read(), err.read())
    assert why == "done", f"{argv[0]} did not finish within {max_wall_s} s ({why}): {result.stderr[-500:]!r}"
    return result


def run_thread(session: BridgeSession, fn: Callable[[], Any], max_wall_s: float = PROCESS_WALL_S) -> Any:
    """Run `fn` (a real socket client) on a thread while the lab runs; returns its result or raises its error."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    why = drive(session, lambda: not thread.is_alive(), max_wall_s)
    thread.join(timeout=5)
    assert why == "done", f"client thread did not finish within {max_wall_s} s ({why})"
    if "error" in box:
        raise box["error"]
    return box.get("result")


def echo_client_argv(host: str, port: int, size: int) -> list[str]:
    return [sys.executable, ECHO_CLIENT, host, str(port), str(size)]
