"""The bridges on the `wskdbg` command line: options, the debugger commands, `wskdbg run` of a recording."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.bridge.lab import bridge_lab
from stack.bridge.session import BridgeSession
from wskdbg import cli


def test_forward_option_opens_the_forward_and_bridge_command_shows_it(capsys) -> None:
    assert cli.main(["--forward", "127.0.0.1:0=winsrv:80", "-c", "!bridge"]) == 0
    out = capsys.readouterr().out
    assert "forward 127.0.0.1:" in out and "-> winsrv 10.0.0.1:80" in out
    assert "bridge (live): 0 inputs" in out


def test_bad_forward_option_is_an_argument_error(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--forward", "8080=winsrv", "-c", "k"])
    assert exc.value.code == 2
    assert "expected HOST:PORT" in capsys.readouterr().err


def test_headless_without_a_bridge_says_what_is_missing(capsys) -> None:
    assert cli.main(["--headless"]) == 2
    assert "--forward or --tap" in capsys.readouterr().err


def test_bridge_commands_without_a_bridge_explain_how_to_start_one(capsys) -> None:
    assert cli.main(["-c", "!bridge"]) == 1
    assert "no bridge is attached" in capsys.readouterr().out


def test_wskdbg_run_replays_a_recording_and_replay_option_loads_it(tmp_path: Path, capsys) -> None:
    path = tmp_path / "short.wbr"
    session = BridgeSession.live_session(bridge_lab(1), forwards=["127.0.0.1:0=winsrv:80"], record=path)
    session.start()
    session.run(max_events=100)
    session.close()
    assert cli.main(["run", str(path)]) == 0
    assert "replayed 0 inputs" in capsys.readouterr().out
    assert cli.main(["--replay", str(path), "-c", "!bridge"]) == 0
    out = capsys.readouterr().out
    assert "bridge (replay)" in out and "DIVERGED" not in out


def test_tap_exec_without_a_running_tap_fails_with_a_reason(capsys) -> None:
    status = cli.main(["tap-exec", "--ns", "wskdbg-0", "--", "true"])
    assert status == 2
    assert "wskdbg tap-exec:" in capsys.readouterr().err
