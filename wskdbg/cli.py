"""The `wskdbg` command.

    wskdbg                      the TUI (the first start opens the tour)
    wskdbg repl                 the `0: kd> ` prompt
    wskdbg run FILE.wds         run a session script (--check, --update, --json)
    wskdbg tour FILE.wds        present a session script step by step (classroom mode)
    wskdbg -c "cmd; cmd"        run commands in batch and print the transcript
    --seed N, --world lab|bare|kernel, --cpu x64|2003|zero [--cpu-hosts winsrv,client], --version

Other parts add subcommands with `add_subcommand` from a module listed in
`EXTENSIONS`, imported when the parser is built (an import error is a real bug
and surfaces).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from wskdbg import __version__

# Modules that register more options and subcommands (--forward, tap-exec, replay ...) when imported.
# They import this module, so they are imported when the parser is built, not at the top.
EXTENSIONS: list[str] = ["wskdbg.forward_cli"]


@dataclass(slots=True)
class Subcommand:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


SUBCOMMANDS: dict[str, Subcommand] = {}
GLOBAL_OPTIONS: list[Callable[[argparse.ArgumentParser], None]] = []
# Extension hooks (wskdbg.forward_cli uses them): wrap the engine's world factory (bridges, replays),
# handle a run before any front end starts (--headless; None = not mine), run FILE kinds other than .wds.
WORLD_WRAPPERS: list[Callable[[argparse.Namespace, Callable[[int], Any]], Callable[[int], Any]]] = []
EARLY_HANDLERS: list[Callable[[argparse.Namespace], "int | None"]] = []
FILE_RUNNERS: list[Callable[[argparse.Namespace], "int | None"]] = []


def add_subcommand(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None],
                   handler: Callable[[argparse.Namespace], int]) -> None:
    SUBCOMMANDS[name] = Subcommand(name, help, configure, handler)


def add_global_option(configure: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add options to the top-level parser (e.g. --forward)."""
    GLOBAL_OPTIONS.append(configure)


def world_factory(kind: str) -> Callable[[int], Any]:
    if kind == "kernel":
        from stack.kernel.machine import Machine
        return lambda seed: Machine(seed=seed)
    from wskdbg.engine import bare_world_factory, default_world_factory
    return bare_world_factory if kind == "bare" else default_world_factory


def make_engine(args: argparse.Namespace, **kwargs: Any) -> Any:
    from wskdbg.engine import Engine
    factory = world_factory(getattr(args, "world", "lab"))
    for wrap in WORLD_WRAPPERS:
        factory = wrap(args, factory)
    if getattr(args, "cpu", None):
        factory = _with_processors(factory, args.cpu, args.cpu_hosts.split(","))
    return Engine(factory=factory, seed=args.seed, **kwargs)


def make_session_engine(args: argparse.Namespace, views: bool = False) -> Any:
    """The engine of the REPL, `run`, `-c` and the TUI (`views=True`: the server also builds the
    TUI's views): in a machine server with checkpoints, so going back in time replays from the
    nearest checkpoint (wskdbg.machine_server), unless a bridge or another wrapped world is
    attached or WSKDBG_CHECKPOINTS=0."""
    from wskdbg.machine_server import open_engine
    plain = world_factory(getattr(args, "world", "lab"))
    factory = plain
    for wrap in WORLD_WRAPPERS:
        factory = wrap(args, factory)
    if factory is not plain:  # a bridge or a replay: its inputs are not replayable, keep it in-process
        return make_engine(args)
    if views:  # the TUI shows progress in its status bar
        return open_engine(lambda: make_engine(args), views=True)
    progress = _progress_printer() if sys.stderr.isatty() else None
    return open_engine(lambda: make_engine(args), progress_output=progress)


def _progress_printer() -> Callable[[str], None]:
    def show(text: str) -> None:
        sys.stderr.write(f"\r{text}\x1b[K")
        sys.stderr.flush()
    return show


def _with_processors(factory: Callable[[int], Any], profile: str, hosts: list[str]) -> Callable[[int], Any]:
    """--cpu PROFILE: the world starts with one processor of PROFILE on each of `hosts` (as `!cpu
    HOST PROFILE 1` would do at the first prompt; time travel rebuilds the world the same way)."""
    def make(seed: int) -> Any:
        world = factory(seed)
        set_processors = getattr(world, "set_processors", None)
        if set_processors is None:
            from stack.kernel.cpu import install
            install(world.kernel, profile, 1)  # --world kernel: its one host
        else:
            from stack.world import WorldError
            for host in hosts:
                try:
                    set_processors(host, profile, 1)
                except WorldError as err:
                    raise SystemExit(f"wskdbg: --cpu-hosts: {err}") from None
        return world
    return make


# --- built-in subcommands -------------------------------------------------------------------------

def _configure_repl(p: argparse.ArgumentParser) -> None:
    p.add_argument("--history", help="history file (default: $WSKDBG_HISTORY or ~/.local/share/wskdbg/history)")


def _run_repl(args: argparse.Namespace) -> int:
    from wskdbg.repl import Repl
    engine = make_session_engine(args)
    try:
        return Repl(engine, history_path=getattr(args, "history", None)).run()
    finally:
        engine.close()


def _configure_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="file", help="one or more .wds session scripts")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="compare with FILE.out; show a diff, exit 1 on mismatch")
    mode.add_argument("--update", action="store_true", help="rewrite FILE.out with this run's transcript")
    p.add_argument("--json", action="store_true", help="emit each command's text and data as JSON")


def _run_script(args: argparse.Namespace) -> int:
    """Each file in turn (`wskdbg run --check sessions/*.wds`); the worst exit status wins."""
    worst = 0
    for path in args.files:
        worst = max(worst, _run_one_script(argparse.Namespace(**{**vars(args), "file": path})))
    return worst


def _run_one_script(args: argparse.Namespace) -> int:
    for runner in FILE_RUNNERS:
        status = runner(args)
        if status is not None:
            return status
    from wskdbg.script import main_run
    return main_run(args.file, make_engine=lambda: make_session_engine(args), check=args.check, update=args.update,
                    as_json=args.json or getattr(args, "top_json", False))


def _configure_tour(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a .wds session script to present step by step")
    # Also accepted after the file (`wskdbg tour x.wds --seed 3`); SUPPRESS keeps the global value otherwise.
    p.add_argument("--seed", type=int, default=argparse.SUPPRESS, help="the world's seed (default 1)")


def _run_tour(args: argparse.Namespace) -> int:
    from wskdbg.tui.presentation import run_tour
    made: list[Any] = []

    def engine_factory() -> Any:  # only called once the script has been read
        made.append(make_engine(args))
        return made[-1]

    try:
        return run_tour(args.file, engine_factory=engine_factory, seed=args.seed)
    finally:
        for engine in made:
            engine.close()


add_subcommand("repl", "the 0: kd> prompt", _configure_repl, _run_repl)
add_subcommand("run", "run a .wds session script", _configure_run, _run_script)
add_subcommand("tour", "present a .wds session script step by step", _configure_tour, _run_tour)


def build_parser() -> argparse.ArgumentParser:
    for module in EXTENSIONS:
        importlib.import_module(module)  # registers itself through add_subcommand and the hooks
    parser = argparse.ArgumentParser(prog="wskdbg", description="A WinDbg-style kernel debugger over an emulated "
                                                                 "Windows kernel network stack.")
    parser.add_argument("--version", action="version", version=f"wskdbg {__version__}")
    parser.add_argument("--seed", type=int, default=1, help="the world's seed (default 1)")
    parser.add_argument("--world", choices=("lab", "bare", "kernel"), default="lab",
                        help="lab: the standard lab with its servers running (default); bare: winsrv and "
                             "client with tcpip and AFD only (start drivers with sc start); kernel: one host, "
                             "kernel only")
    parser.add_argument("--cpu", choices=("x64", "2003", "zero"), metavar="PROFILE",
                        help="start with processors that spend time (stack/kernel/costs.py): x64, 2003 (the "
                             "thesis's 1.1 GHz machine) or zero (off, the default); see also !cpu")
    parser.add_argument("--cpu-hosts", default="winsrv", metavar="HOST[,HOST...]",
                        help="the hosts --cpu gives one processor each (default winsrv)")
    parser.add_argument("-c", dest="commands", metavar="COMMANDS", help='run commands in batch, e.g. -c "lm; k"')
    parser.add_argument("--json", dest="top_json", action="store_true", help="with -c: emit JSON")
    for configure in GLOBAL_OPTIONS:
        configure(parser)
    sub = parser.add_subparsers(dest="subcommand", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for spec in SUBCOMMANDS.values():
        p = sub.add_parser(spec.name, help=spec.help)
        spec.configure(p)
        p.set_defaults(handler=spec.handler)
    return parser


def run_batch(args: argparse.Namespace, out: Any = None) -> int:
    from wskdbg.commands.registry import PROMPT
    from wskdbg.script import jsonable
    out = out or sys.stdout
    engine = make_session_engine(args)
    try:
        result = engine.execute(args.commands)
    finally:
        engine.close()
    if args.top_json:
        json.dump({"command": args.commands, "text": result.text, "data": jsonable(result.data),
                   "error": result.error}, out, indent=1)
        out.write("\n")
    else:
        out.write(f"{PROMPT}{args.commands}\n")
        if result.text:
            out.write(result.text + "\n")
    return 1 if result.error else 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # `wskdbg -c lm | head -1`: the reader went away.  Quietly, as a Unix filter does;
        # stdout is pointed at /dev/null so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a filter killed by the pipe


def _main(argv: Sequence[str] | None) -> int:
    from stack.kernel import hostgc
    hostgc.settle(freeze=False)  # a wider first generation: many held connections stay cheap
    parser = build_parser()
    args = parser.parse_args(argv)
    for early in EARLY_HANDLERS:
        status = early(args)
        if status is not None:
            return status
    if args.top_json and args.commands is None and args.subcommand != "run":
        parser.error("--json emits the results of -c COMMANDS (or of run FILE); give -c")
    if args.commands is not None:
        if args.subcommand is not None:
            parser.error("-c runs commands in batch; it does not combine with a subcommand")
        return run_batch(args)
    handler = getattr(args, "handler", None)
    if handler is not None:
        return handler(args)
    return _open_tui(args)


def _open_tui(args: argparse.Namespace) -> int:
    """`wskdbg` alone: the TUI over the engine the options describe; the tour on the first start."""
    from wskdbg.tui.app import run_app
    from wskdbg.tui.tour import mark_tour_seen, should_show_tour_on_start
    engine = make_session_engine(args, views=True)
    try:
        run_app(engine, seed=args.seed, tour_on_start=should_show_tour_on_start())
    finally:
        engine.close()
    mark_tour_seen()
    return 0


if __name__ == "__main__":
    sys.exit(main())
