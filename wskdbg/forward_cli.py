"""Plugs the real-world bridges into the `wskdbg` command (imported by wskdbg.cli, see EXTENSIONS).

    wskdbg --forward 127.0.0.1:8080=winsrv:80              the TUI, with the forward open
    wskdbg repl --forward 8080=winsrv:80 --forward 4007=winsrv:40007
    wskdbg --headless --forward 8080=winsrv:80 --record run.wbr    serve until Ctrl+C
    wskdbg --tap [--tap-loss 0.02]                          (root) TAP namespace wskdbg-<pid>
    wskdbg tap-exec -- curl http://winsrv/                  run a program in that namespace
    wskdbg run run.wbr                                      replay a recording (no bridge)
    wskdbg --replay run.wbr                                 the TUI/REPL on the replayed lab

The bridged lab is `stack.bridge.lab.bridge_lab` (the standard lab: echosrv and khttpd run on
winsrv), so the servers are there to be reached.
"""

from __future__ import annotations

import argparse
import atexit
import sys
from typing import Any, Callable

from stack.bridge.realtime import BridgeError
from stack.bridge.record import RecordingError, read_recording
from stack.bridge.session import BridgeSession
from stack.bridge.spec import ForwardSpecError
from wskdbg import cli
from wskdbg.bridge_cli import (add_bridge_options, bridge_requested, is_recording, open_bridge, replay_main,
                               run_headless, tap_exec_main)

WorldFactory = Callable[[int], Any]


def _global_options(parser: argparse.ArgumentParser) -> None:
    add_bridge_options(parser)
    parser.add_argument("--replay", metavar="FILE", default=None,
                        help="debug the lab of a bridge recording, its inputs replayed (no host I/O)")


def _lab_factory(args: argparse.Namespace, base: WorldFactory) -> WorldFactory:
    if getattr(args, "world", "lab") != "lab":
        return base
    from stack.bridge.lab import bridge_lab
    return bridge_lab


def wrap_world_factory(args: argparse.Namespace, base: WorldFactory) -> WorldFactory:
    """The engine's world factory with the bridges (or the replay) the command line asked for."""
    replay = getattr(args, "replay", None)
    if replay:
        def replay_factory(_seed: int) -> Any:
            try:
                session = BridgeSession.replay_session(read_recording(replay))
            except (RecordingError, BridgeError, ForwardSpecError, OSError) as exc:
                raise SystemExit(f"wskdbg: {exc}") from None
            session.start()
            return session.world
        return replay_factory
    if not bridge_requested(args):
        return base
    make_lab = _lab_factory(args, base)
    current: dict[str, BridgeSession] = {}

    def bridged_factory(seed: int) -> Any:
        old = current.pop("session", None)
        if old is not None:  # .reboot: free the ports and the namespace before opening them again
            old.close()
        world = make_lab(seed)
        try:
            session = open_bridge(world, args, sys.stdout)
        except (BridgeError, ForwardSpecError) as exc:
            raise SystemExit(f"wskdbg: {exc}") from None
        current["session"] = session
        atexit.register(session.close)
        return world

    return bridged_factory


def headless_handler(args: argparse.Namespace) -> int | None:
    if not getattr(args, "headless", False):
        return None
    if not bridge_requested(args):
        print("wskdbg: --headless serves bridges: give --forward or --tap", file=sys.stderr)
        return 2
    return run_headless(args, world_factory=_lab_factory(args, cli.world_factory(getattr(args, "world", "lab"))))


def recording_runner(args: argparse.Namespace) -> int | None:
    """`wskdbg run FILE` for a bridge recording: replay it and report."""
    path = getattr(args, "file", None)
    if path is None or not is_recording(path):
        return None
    return replay_main(path)


def _configure_tap_exec(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ns", default=None, help="namespace name (default: the only running wskdbg-* one)")
    p.add_argument("program", nargs=argparse.REMAINDER, help="-- program and arguments")


def _run_tap_exec(args: argparse.Namespace) -> int:
    return tap_exec_main(args.program, args.ns)


def _configure_replay(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", help="a bridge recording (--record FILE)")
    p.add_argument("--events", action="store_true", help="print every event (seq, kind, text)")


def _run_replay(args: argparse.Namespace) -> int:
    return replay_main(args.recording, print_events=args.events)


cli.add_global_option(_global_options)
cli.add_subcommand("tap-exec", "run a program inside the TAP bridge's namespace", _configure_tap_exec, _run_tap_exec)
cli.add_subcommand("replay", "replay a bridge recording and report", _configure_replay, _run_replay)
cli.WORLD_WRAPPERS.append(wrap_world_factory)
cli.EARLY_HANDLERS.append(headless_handler)
cli.FILE_RUNNERS.append(recording_runner)
