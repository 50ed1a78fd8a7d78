"""The REPL (pipe input, dummy output), session scripts, the CLI and the Python API."""

from __future__ import annotations

import io
import json
import os
import signal
import threading

import pytest
from dbg_harness import factory
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from wskdbg.api import Debugger
from wskdbg.engine import Engine
from wskdbg.repl import CommandCompleter, Repl, lex_line
from wskdbg.script import main_run


def run_repl(engine: Engine, keys: str, history_path) -> str:
    out = io.StringIO()
    with create_pipe_input() as pipe:
        pipe.send_text(keys)
        repl = Repl(engine, history_path=history_path, input=pipe, output=DummyOutput(), stdout=out, color=False)
        assert repl.run() == 0
    return out.getvalue()


def test_repl_runs_commands_writes_history_and_ctrl_d_exits(tmp_path):
    history = tmp_path / "history"
    engine = Engine(factory=factory("client"), seed=1)
    try:
        out = run_repl(engine, "? 1+1\r.echo hello\r\x04", history)
        assert out == "Evaluate expression: 2 = 00000000`00000002\nhello\n"
        assert "? 1+1" in history.read_text() and ".echo hello" in history.read_text()
        with create_pipe_input() as pipe:
            repl = Repl(engine, history_path=history, input=pipe, output=DummyOutput(), stdout=io.StringIO())
            assert list(repl.session.history.load_history_strings())[:2] == [".echo hello", "? 1+1"]
    finally:
        engine.close()


def test_repl_prints_dbgprint_live_and_q_quits(tmp_path):
    engine = Engine(factory=factory("client"), seed=1)
    try:
        out = run_repl(engine, "g\rq\r", tmp_path / "h")
        assert out.splitlines()[0] == "testdrv: request done, status 00000000, 40 bytes"
        assert out.splitlines()[1].startswith("The machine is idle")
    finally:
        engine.close()


def test_completion_of_command_names_and_routine_names():
    engine = Engine(factory=factory("client"), seed=1)
    try:
        completer = CommandCompleter(engine)
        names = [c.text for c in completer.get_completions(Document("!ir"), CompleteEvent())]
        assert names == ["!irp", "!irpfind", "!irql"]
        routines = [c.text for c in completer.get_completions(Document("bp testbus!TestBusD"), CompleteEvent())]
        assert routines == ["testbus!TestBusDispatchInternal", "testbus!TestBusDriverEntry"]
        engine.execute("lm")
        addresses = [c.text for c in completer.get_completions(Document("db fffff801"), CompleteEvent())]
        assert addresses and all(a.startswith("fffff801`") for a in addresses)
    finally:
        engine.close()


def test_address_completion_says_0x_when_n_changed_the_base_or_the_user_typed_it():
    engine = Engine(factory=factory("client"), seed=1)
    try:
        completer = CommandCompleter(engine)
        engine.execute("lm")
        typed = [c.text for c in completer.get_completions(Document("db 0xfffff801"), CompleteEvent())]
        assert typed and all(a.startswith("0xfffff801`") for a in typed)
        engine.execute("n 10")
        bare = [c.text for c in completer.get_completions(Document("db fffff801"), CompleteEvent())]
        assert bare == typed  # a bare hex address would be read as decimal (an error) after n 10
        assert not engine.execute(f"db {bare[0]} L1").error
    finally:
        engine.close()


def test_the_lexer_marks_commands_symbols_addresses_and_comments():
    styles = dict((text, style) for style, text in lex_line('bp echosrv!WskSampleAcceptEvent "kb"; db fffff801`4ae80000'))
    assert styles["bp"] == "class:command" and styles["db"] == "class:command"
    assert styles["echosrv!WskSampleAcceptEvent"] == "class:symbol"
    assert styles["fffff801`4ae80000"] == "class:address"
    assert styles['"kb"'] == "class:string"


def test_ctrl_c_while_the_machine_runs_breaks_in(tmp_path):
    # The event cap bounds the run: a lost break-in ends at the cap and fails, never hangs.
    engine = Engine(factory=factory("ticker"), seed=1, run_cap_ns=1 << 62, event_cap=200_000)
    sent = threading.Event()
    count = [0]

    def interrupt(ev) -> None:  # runs on the machine thread: SIGINT goes to the REPL's (main) thread
        count[0] += 1
        if count[0] == 300 and not sent.is_set():
            sent.set()
            os.kill(os.getpid(), signal.SIGINT)

    engine.bus.subscribe(interrupt)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when started from a shell that ignores SIGINT
    try:
        out = run_repl(engine, "g\r\x04", tmp_path / "h")
        assert out.splitlines()[0] == "Break instruction exception - code 80000003 (first chance)"
        assert sent.is_set() and not engine.running
        assert signal.getsignal(signal.SIGINT) == (before if before is not None else signal.default_int_handler)
    finally:
        engine.close()


def test_ctrl_c_as_the_command_starts_never_escapes_the_repl(tmp_path):
    # SIGINT raised before the worker thread is even waited on: the REPL's own handler takes it.
    engine = Engine(factory=factory("ticker"), seed=1, run_cap_ns=1 << 62, event_cap=200_000)
    sent = threading.Event()

    def interrupt(ev) -> None:
        if not sent.is_set():
            sent.set()
            os.kill(os.getpid(), signal.SIGINT)

    engine.bus.subscribe(interrupt)
    try:
        out = run_repl(engine, "g\r\x04", tmp_path / "h")
        assert sent.is_set()
        assert out.splitlines()[0] == "Break instruction exception - code 80000003 (first chance)"
    finally:
        engine.close()


def test_ctrl_c_before_the_machine_takes_its_turn_is_not_lost(tmp_path):
    # SIGINT raised on the command thread before `g` starts the machine: the REPL keeps asking
    # for the break until the machine runs, instead of letting the run go on to its cap.
    engine = Engine(factory=factory("ticker"), seed=1, run_cap_ns=1 << 62, event_cap=200_000)
    real_execute, real_break_in = engine.execute, engine.break_in
    asked = threading.Event()

    def break_in() -> None:
        asked.set()
        real_break_in()

    def execute_after_ctrl_c(line: str):
        os.kill(os.getpid(), signal.SIGINT)
        assert asked.wait(30)  # the REPL asked for the break while the machine was not running yet
        return real_execute(line)

    engine.break_in = break_in  # type: ignore[method-assign]
    engine.execute = execute_after_ctrl_c  # type: ignore[method-assign]
    try:
        out = run_repl(engine, "g\r\x04", tmp_path / "h")
        assert out.splitlines()[0] == "Break instruction exception - code 80000003 (first chance)"
    finally:
        engine.close()


@pytest.mark.parametrize("line", ["g", "g; g"])
def test_closing_the_engine_stops_a_machine_that_is_still_running(line):
    # Repeated: closing races with the machine thread publishing an event, and with a command
    # line that resumes the machine again after the first run was stopped.
    for _ in range(20):
        engine = Engine(factory=factory("ticker"), seed=1, run_cap_ns=1 << 62, event_cap=1 << 40)
        running = threading.Event()
        engine.bus.subscribe(lambda ev: running.set())
        runner = threading.Thread(target=engine.execute, args=(line,), daemon=True)
        runner.start()
        assert running.wait(30)
        engine.close()  # must not wait for a run that would never end
        runner.join(30)
        assert not runner.is_alive()


# --- scripts ---------------------------------------------------------------------------------------

SCRIPT = """$$ a session
bp testbus!TestBusDispatchInternal
g
kc
!irpfind; .echo done
g
"""


def script_engine():
    return Engine(factory=factory("client"), seed=1)


def test_run_prints_the_transcript_and_check_and_update_round_trip(tmp_path):
    path = tmp_path / "s.wds"
    path.write_text(SCRIPT)
    out = io.StringIO()
    assert main_run(str(path), make_engine=script_engine, out=out, err=io.StringIO()) == 0
    transcript = out.getvalue()
    lines = transcript.splitlines()
    assert lines[0] == "0: kd> $$ a session"
    assert lines[1] == "0: kd> bp testbus!TestBusDispatchInternal"
    assert lines[2] == "0: kd> g" and lines[3] == "Breakpoint 0 hit"
    assert "0: kd> !irpfind; .echo done" in lines and lines[-1].startswith("The machine is idle")
    err = io.StringIO()
    assert main_run(str(path), make_engine=script_engine, check=True, out=io.StringIO(), err=err) == 1
    assert "no expected transcript" in err.getvalue()
    assert main_run(str(path), make_engine=script_engine, update=True, out=io.StringIO(), err=io.StringIO()) == 0
    assert (tmp_path / "s.out").read_text() == transcript
    assert main_run(str(path), make_engine=script_engine, check=True, out=io.StringIO(), err=io.StringIO()) == 0
    (tmp_path / "s.out").write_text(transcript.replace("Breakpoint 0 hit", "Breakpoint 9 hit"))
    diff = io.StringIO()
    assert main_run(str(path), make_engine=script_engine, check=True, out=diff, err=io.StringIO()) == 1
    assert "-Breakpoint 9 hit\n+Breakpoint 0 hit\n" in diff.getvalue()


def test_a_script_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.wds"
    path.write_text(".echo fine\n\ndb zz\n")
    err = io.StringIO()
    out = io.StringIO()
    assert main_run(str(path), make_engine=script_engine, out=out, err=err) == 1
    assert err.getvalue() == "bad.wds:3: error: Couldn't resolve error at 'zz'\n"
    assert "0: kd> db zz\n          ^ Couldn't resolve error at 'zz'\n" in out.getvalue()


def test_running_a_script_twice_gives_an_identical_transcript(tmp_path):
    path = tmp_path / "det.wds"
    path.write_text(SCRIPT + "!poolused\nr\n.position\n")
    a, b = io.StringIO(), io.StringIO()
    main_run(str(path), make_engine=script_engine, out=a, err=io.StringIO())
    main_run(str(path), make_engine=script_engine, out=b, err=io.StringIO())
    assert a.getvalue() == b.getvalue()
    assert str(tmp_path) not in a.getvalue()


def test_json_output_carries_text_and_data(tmp_path):
    path = tmp_path / "j.wds"
    path.write_text("? 5\nbl\n")
    out = io.StringIO()
    assert main_run(str(path), make_engine=script_engine, as_json=True, out=out, err=io.StringIO()) == 0
    steps = json.loads(out.getvalue())
    assert steps[0] == {"line": 1, "command": "? 5", "text": "Evaluate expression: 5 = 00000000`00000005",
                        "data": {"value": 5, "signed": 5}, "error": False}


def test_a_missing_script_is_exit_status_2():
    err = io.StringIO()
    assert main_run("/nonexistent/x.wds", make_engine=script_engine, out=io.StringIO(), err=err) == 2
    assert err.getvalue().startswith("wskdbg: cannot read /nonexistent/x.wds")


# --- CLI and API -----------------------------------------------------------------------------------

def test_cli_batch_mode_on_a_kernel_only_world(capsys):
    from wskdbg.cli import main
    assert main(["--world", "kernel", "--seed", "2", "-c", "? 3; lm 1m"]) == 0
    assert capsys.readouterr().out == "0: kd> ? 3; lm 1m\nEvaluate expression: 3 = 00000000`00000003\nnt\nhal\n"
    assert main(["--world", "kernel", "-c", "nonsense"]) == 1


def test_cli_version_and_subcommands_are_listed(capsys):
    from wskdbg.cli import SUBCOMMANDS, build_parser, main
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == "wskdbg 0.1.0"
    assert {"repl", "run"} <= set(SUBCOMMANDS)
    assert build_parser().parse_args(["run", "x.wds", "--check"]).check


def test_api_debugger_executes_and_exposes_world_and_kernel():
    with Debugger(factory=factory("client"), seed=1) as dbg:
        r = dbg.execute("bp testbus!TestBusDispatchInternal")
        assert not r.error
        r = dbg.execute("g")
        assert r.text.startswith("Breakpoint 0 hit")
        assert dbg.kernel.name == "winsrv" and dbg.world.kernels["winsrv"] is dbg.kernel
        irps = dbg.execute("!irpfind").data["irps"]
        assert len(irps) == 1
        assert dbg.evaluate("testbus") == dbg.kernel.module("testbus").base


def test_ctrl_c_breaks_in_when_started_from_a_shell_that_ignores_sigint():
    # `cmd &` in a non-interactive shell starts Python with SIGINT ignored (SIG_IGN, no
    # KeyboardInterrupt handler): the REPL's own handler still turns Ctrl+C into a break-in.
    import subprocess
    import sys
    here = os.path.dirname(__file__)
    test = f"{os.path.join(here, 'test_repl_and_scripts.py')}::test_ctrl_c_while_the_machine_runs_breaks_in"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
                          capture_output=True, text=True, timeout=300, cwd=os.path.dirname(os.path.dirname(here)))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_cls_clears_a_terminal_also_in_a_command_line_of_several(tmp_path):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    engine = Engine(seed=1)
    try:
        out = Terminal()
        with create_pipe_input() as pipe:
            repl = Repl(engine, history_path=tmp_path / "h", input=pipe, output=DummyOutput(), stdout=out,
                        color=False)
            repl.show(engine.execute("? 1; .cls"))
        assert "\x1b[2J\x1b[H" in out.getvalue()
    finally:
        engine.close()
