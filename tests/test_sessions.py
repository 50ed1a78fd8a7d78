"""Every narrated session in sessions/ replays its checked transcript byte for byte.

The transcripts were written by another process (`wskdbg run --update`, its own hash seed), so a
match shows the session deterministic across processes.  Replaying in one process is shown once,
on sessions run one after another: each must give its transcript again after the others ran."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wskdbg.engine import Engine
from wskdbg.machine_server import open_engine
from wskdbg.script import expected_path, run_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "wskdbg"))
from lab_template import standard_engine  # noqa: E402
SESSIONS = sorted((ROOT / "sessions").glob("*.wds"))
REQUIRED = {"echo-ipv4", "echo-ipv6", "khttpd-zero-copy", "wpp-echosrv", "tcp-loss", "bugcheck"}


def run_session(path: Path, make_engine=lambda: Engine(seed=1)):
    # As `wskdbg run` runs it: in a machine server with checkpoints where fork() exists.
    engine = open_engine(make_engine)
    try:
        return run_file(engine, str(path))
    finally:
        engine.close()


def test_the_narrated_sessions_are_all_there_with_transcripts():
    names = {p.stem for p in SESSIONS}
    assert REQUIRED <= names
    for path in SESSIONS:
        assert Path(expected_path(str(path))).is_file(), f"{path.name} has no .out transcript"


@pytest.mark.parametrize("path", SESSIONS, ids=lambda p: p.stem)
def test_session_matches_its_transcript(path: Path):
    expected = Path(expected_path(str(path))).read_text(encoding="utf-8")
    run = run_session(path, standard_engine(1))  # the lab built once here, taken by each server's fork
    assert run.error_lines() == []
    assert run.transcript == expected, f"{path.name} no longer matches its transcript (wskdbg run --update)"


def test_sessions_replay_identically_one_after_another_in_one_process():
    # A bug check between two runs of the same session: nothing the first run or the crashed
    # machine left in the process (caches, counters, address allocators) may change the second.
    names = ["echo-ipv4", "bugcheck", "tcp-loss", "echo-ipv4", "bugcheck", "tcp-loss"]
    for name in names:
        path = ROOT / "sessions" / f"{name}.wds"
        expected = Path(expected_path(str(path))).read_text(encoding="utf-8")
        assert run_session(path).transcript == expected, f"{name} changed when run again in this process"


def test_wskdbg_run_check_passes_from_the_command_line():
    path = ROOT / "sessions" / "bugcheck.wds"
    proc = subprocess.run([sys.executable, "-m", "wskdbg", "run", "--check", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "transcript matches" in proc.stderr
