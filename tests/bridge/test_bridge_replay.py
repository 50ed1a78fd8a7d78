"""A recorded bridged session replays, without any bridge, to the same event sequence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from bridge_harness import echo_client_argv, need_tools, run_process

from stack.bridge.lab import bridge_lab
from stack.bridge.realtime import bus_recorder
from stack.bridge.record import read_recording
from stack.bridge.session import BridgeSession, TapOptions
from stack.bridge.tap import tap_unavailable_reason
from stack.fs.docroot_manifest import docroot_files, file_bytes
from wskdbg.bridge_cli import is_recording, replay_main, replay_recording

ROOT = Path(__file__).resolve().parents[2]


def _live(path: Path, **bridges) -> tuple[BridgeSession, list[tuple[int, str, str]]]:
    session = BridgeSession.live_session(bridge_lab(1), record=path, **bridges)
    events, _ = bus_recorder(session.world.bus)  # watched from the attach point, as the replay is
    session.start()
    return session, events


def _finish(session: BridgeSession) -> None:
    if session.forwarder is not None:
        session.run(max_wall_s=20, until=lambda: not session.forwarder.relays)
    session.close()


def test_forwarded_session_replays_to_the_same_events_and_output(tmp_path: Path) -> None:
    need_tools("curl")
    path = tmp_path / "forward.wbr"
    session, live_events = _live(path, forwards=["127.0.0.1:0=winsrv:80", "127.0.0.1:0=winsrv:40007"])
    (_, http), (_, echo) = session.forward_host.bound_addresses()
    run_process(session, ["curl", "-sS", "-o", os.devnull, f"http://127.0.0.1:{http}/",
                          "-o", os.devnull, f"http://127.0.0.1:{http}/files/64KB.bin"])
    run_process(session, echo_client_argv("127.0.0.1", echo, 96 * 1024))
    _finish(session)
    live_digest = session.forwarder.output_digest()

    recording = read_recording(path)
    assert recording.complete and recording.inputs
    assert {i.kind for i in recording.inputs} >= {"accept", "data", "eof", "drain"}
    replayed, replay_events, why = replay_recording(path)
    assert why == "replay-end" and replayed.hub.divergence is None
    assert replay_events == live_events
    assert replayed.forwarder.output_digest() == live_digest
    assert replayed.world.scheduler.events_run == recording.end_event


def test_tap_session_replays_to_the_same_events(tmp_path: Path) -> None:
    reason = tap_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    need_tools("ping", "curl")
    path = tmp_path / "tap.wbr"
    session, live_events = _live(path, tap=TapOptions(loss=0.05))
    ns = session.tap.namespace
    run_process(session, ns.exec_argv(["ping", "-6", "-c", "2", "-i", "0.2", "-W", "3", "winsrv"]))
    run_process(session, ns.exec_argv(["curl", "-sS", "-o", os.devnull, "--max-time", "30",
                                       "http://10.0.0.1/files/16KB.bin"]))
    _finish(session)
    replayed, replay_events, why = replay_recording(path)
    assert why == "replay-end" and replayed.hub.divergence is None
    assert any(kind == "bridge.input" for _, kind, _ in replay_events)
    assert replay_events == live_events


def test_replay_main_reports_and_recordings_are_recognised(tmp_path: Path, capsys) -> None:
    path = tmp_path / "idle.wbr"
    session = BridgeSession.live_session(bridge_lab(1), forwards=["127.0.0.1:0=winsrv:80"], record=path)
    session.start()
    session.run(max_events=200)
    session.close()
    assert is_recording(path) and not is_recording(ROOT / "pyproject.toml")
    assert replay_main(str(path)) == 0
    assert "replayed 0 inputs" in capsys.readouterr().out


def test_headless_cli_serves_until_interrupted_and_its_recording_replays(tmp_path: Path) -> None:
    need_tools("curl")
    path = tmp_path / "headless.wbr"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    serve = subprocess.Popen([sys.executable, "-m", "wskdbg.bridge_cli", "serve", "--forward",
                              "127.0.0.1:0=winsrv:80", "--record", str(path), "--serve-seconds", "120"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        banner = serve.stdout.readline()  # "forward 127.0.0.1:PORT -> winsrv 10.0.0.1:80 (...)"
        assert banner.startswith("forward 127.0.0.1:"), banner + serve.stderr.read()
        port = banner.split()[1].rsplit(":", 1)[1]
        for _ in range(5):
            if "serving" in serve.stdout.readline():
                break
        else:
            pytest.fail("the server never said it was serving")
        done = subprocess.run(["curl", "-sS", "--max-time", "60", f"http://127.0.0.1:{port}/about.txt"],
                              capture_output=True, timeout=90)
        assert done.returncode == 0, done.stderr
        assert done.stdout == file_bytes(docroot_files()["about.txt"])
        serve.send_signal(signal.SIGINT)
        out, err = serve.communicate(timeout=60)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait(timeout=10)
    assert serve.returncode == 0, err
    assert "stopped (stopped)" in out and "forwarded 1 connections" in out
    replay = subprocess.run([sys.executable, "-m", "wskdbg.bridge_cli", "replay", str(path)],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "replayed" in replay.stdout and "DIVERGED" not in replay.stdout
