"""Every narrated session in sessions/ replays its checked transcript byte for byte, twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wskdbg.engine import Engine
from wskdbg.machine_server import open_engine
from wskdbg.script import expected_path, run_file

ROOT = Path(__file__).resolve().parent.parent
SESSIONS = sorted((ROOT / "sessions").glob("*.wds"))
REQUIRED = {"echo-ipv4", "echo-ipv6", "khttpd-zero-copy", "wpp-echosrv", "tcp-loss", "bugcheck"}


def run_session(path: Path):
    # As `wskdbg run` runs it: in a machine server with checkpoints where fork() exists.
    engine = open_engine(lambda: Engine(seed=1))
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
def test_session_matches_its_transcript_and_replays_identically(path: Path):
    expected = Path(expected_path(str(path))).read_text(encoding="utf-8")
    run = run_session(path)
    assert run.error_lines() == []
    assert run.transcript == expected, f"{path.name} no longer matches its transcript (wskdbg run --update)"
    assert run_session(path).transcript == run.transcript


def test_wskdbg_run_check_passes_from_the_command_line():
    path = ROOT / "sessions" / "bugcheck.wds"
    proc = subprocess.run([sys.executable, "-m", "wskdbg", "run", "--check", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "transcript matches" in proc.stderr
