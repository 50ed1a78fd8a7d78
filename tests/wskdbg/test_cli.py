"""The `wskdbg` command: the TUI with the tour on first start, `tour FILE`, and extensions that import."""

from __future__ import annotations

from typing import Any

import pytest

from wskdbg import cli


@pytest.fixture
def fake_tui(monkeypatch, tmp_path):
    """Record run_app's arguments instead of starting Textual; the tour marker lives in tmp_path."""
    import wskdbg.tui.app as app

    calls: list[dict[str, Any]] = []

    def run_app(engine: Any = None, **options: Any) -> None:
        calls.append({"engine": engine, "host": engine.current_host if engine is not None else "", **options})

    monkeypatch.setattr(app, "run_app", run_app)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    return calls


def test_first_start_opens_the_tui_with_the_tour_and_later_starts_do_not(fake_tui, tmp_path):
    assert cli.main(["--world", "kernel", "--seed", "4"]) == 0
    assert (tmp_path / "wskdbg" / "tour-seen").exists()
    assert cli.main(["--world", "kernel"]) == 0
    assert [call["tour_on_start"] for call in fake_tui] == [True, False]
    assert fake_tui[0]["seed"] == 4 and fake_tui[0]["engine"] is not None
    assert fake_tui[0]["host"]  # the engine the options describe (in its machine server), not a default one


def test_tour_subcommand_is_registered_and_takes_the_seed_after_the_file():
    parser = cli.build_parser()
    assert "tour" in cli.SUBCOMMANDS
    args = parser.parse_args(["tour", "sessions/echo-ipv4.wds", "--seed", "5"])
    assert args.file == "sessions/echo-ipv4.wds" and args.seed == 5
    assert parser.parse_args(["--seed", "6", "tour", "x.wds"]).seed == 6  # the global --seed still counts


def test_tour_of_a_missing_script_is_exit_status_2_without_building_an_engine(monkeypatch, capsys):
    built: list[int] = []
    monkeypatch.setattr(cli, "make_engine", lambda args, **kw: built.append(1))
    assert cli.main(["tour", "/nonexistent/x.wds"]) == 2
    assert capsys.readouterr().err.startswith("wskdbg tour: ")
    assert built == []


def test_tour_runs_the_presentation_with_the_cli_engine_and_closes_it(monkeypatch, tmp_path):
    import wskdbg.tui.presentation as presentation

    script = tmp_path / "t.wds"
    script.write_text("? 1\n")
    seen: dict[str, Any] = {}

    class FakeEngine:
        closed = False

        def close(self) -> None:
            self.closed = True

    engine = FakeEngine()
    monkeypatch.setattr(cli, "make_engine", lambda args, **kw: engine)

    def run_tour(path, engine=None, *, engine_factory=None, seed=1, poll_hz=10.0):
        seen.update(path=path, engine=engine_factory(), seed=seed)
        return 0

    monkeypatch.setattr(presentation, "run_tour", run_tour)
    assert cli.main(["tour", str(script), "--seed", "9"]) == 0
    assert seen == {"path": str(script), "engine": engine, "seed": 9}
    assert engine.closed


def test_every_extension_module_exists_and_imports():
    import importlib

    for name in cli.EXTENSIONS:
        importlib.import_module(name)  # no silent skipping: a broken extension fails here
    assert {"tap-exec", "replay"} <= set(cli.SUBCOMMANDS)


def test_run_check_takes_many_session_files(tmp_path, capsys):
    for name, text in (("a", ".echo one"), ("b", ".echo two")):
        (tmp_path / f"{name}.wds").write_text(text + "\n")
    files = [str(tmp_path / "a.wds"), str(tmp_path / "b.wds")]
    assert cli.main(["--world", "kernel", "run", "--update", *files]) == 0
    assert cli.main(["--world", "kernel", "run", "--check", *files]) == 0
    err = capsys.readouterr().err
    assert "a.wds: transcript matches" in err and "b.wds: transcript matches" in err
    (tmp_path / "b.wds").write_text(".echo changed\n")
    assert cli.main(["--world", "kernel", "run", "--check", *files]) == 1  # the worst status wins


def test_json_without_commands_is_an_error_not_the_tui(fake_tui, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--world", "kernel", "--json"])
    assert exc.value.code == 2
    assert "--json" in capsys.readouterr().err
    assert fake_tui == []


def test_batch_output_into_a_closed_pipe_exits_quietly():
    # `wskdbg -c lm | head -1`: the reader goes away after one line; no BrokenPipeError traceback.
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    commands = "; ".join(["lm"] * 300)  # more than a pipe buffer holds
    proc = subprocess.Popen([sys.executable, "-m", "wskdbg", "--world", "kernel", "-c", commands],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=root,
                            env={**os.environ, "PYTHONPATH": root})
    assert proc.stdout.readline().startswith(b"0: kd> lm")
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
