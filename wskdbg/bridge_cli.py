"""The command line of the bridges to the real world (issue 7).

Options the main `wskdbg` parser takes (`add_bridge_options`):

    --forward [ADDR:]PORT=HOST:PORT   (repeatable) listen on the host, carry into the lab
    --tap                             Linux, root: a TAP in namespace wskdbg-<pid> on the lab's switch
    --tap-loss P                      loss probability on the TAP's emulated link (each way)
    --record FILE                     record every input from outside (replay: `wskdbg run FILE`)
    --headless                        no REPL/TUI: serve until Ctrl+C (or --serve-seconds)

Subcommands (`add_bridge_subcommands`): ``tap-exec [--ns NAME] -- CMD...`` runs a
program inside the TAP namespace; ``replay FILE`` replays a recording.  The same
functions back the REPL's ``!tapexec`` (`tap_exec`) and `wskdbg run FILE.wbr`
(`is_recording`, `replay_main`).

This module runs standalone too: ``python -m wskdbg.bridge_cli serve --forward 8080=winsrv:80``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Sequence, TextIO

from stack.bridge.realtime import BridgeError, bus_recorder
from stack.bridge.record import FORMAT, RecordingError, read_recording
from stack.bridge.session import BridgeSession, TapOptions, build_topology
from stack.bridge.spec import ForwardSpec, ForwardSpecError
from stack.bridge.tap import NS_PREFIX, TapUnavailable, live_namespaces, tap_unavailable_reason

RECORDING_SUFFIX = ".wbr"


# -- argparse --------------------------------------------------------------------------------

def _forward_arg(text: str) -> ForwardSpec:
    try:
        return ForwardSpec.parse(text)
    except ForwardSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _probability(text: str) -> float:
    try:
        p = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= p < 1.0:
        raise argparse.ArgumentTypeError(f"loss {p} must be in [0, 1)")
    return p


def add_bridge_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("bridges to the real world")
    group.add_argument("--forward", action="append", type=_forward_arg, default=[], metavar="[ADDR:]PORT=HOST:PORT",
                       help="listen on the host (loopback unless ADDR is given) and carry each connection "
                            "into the lab, e.g. 127.0.0.1:8080=winsrv:80 or [::1]:4007=winsrv:40007")
    group.add_argument("--tap", action="store_true",
                       help="(Linux, root) plug the lab's switch into a TAP device in a network namespace of "
                            "its own; run programs there with `wskdbg tap-exec -- CMD`")
    group.add_argument("--tap-loss", type=_probability, default=0.0, metavar="P",
                       help="frame loss probability on the TAP's emulated link")
    group.add_argument("--record", metavar="FILE", default=None,
                       help=f"record every input from outside (replay with `wskdbg run FILE`; suffix {RECORDING_SUFFIX})")
    group.add_argument("--headless", action="store_true",
                       help="no REPL or TUI: serve the bridges until interrupted (Ctrl+C)")
    group.add_argument("--serve-seconds", type=float, default=None, metavar="S",
                       help="with --headless: stop after S seconds of wall time")


def add_bridge_subcommands(subparsers: Any) -> None:
    p = subparsers.add_parser("tap-exec", help="run a program inside the TAP bridge's namespace")
    p.add_argument("--ns", default=None, help=f"namespace name (default: the only live {NS_PREFIX}* one)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- program and arguments")
    p.set_defaults(bridge_command="tap-exec")
    r = subparsers.add_parser("replay", help="replay a bridge recording without the bridge")
    r.add_argument("recording")
    r.add_argument("--events", action="store_true", help="print every event (seq, kind, text)")
    r.set_defaults(bridge_command="replay")
    s = subparsers.add_parser("serve", help="serve bridges headless (same as --headless)")
    add_bridge_options(s)
    s.add_argument("--seed", type=int, default=1)
    s.set_defaults(bridge_command="serve")


def bridge_requested(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "forward", None)) or bool(getattr(args, "tap", False))


# -- opening a bridge on a lab the caller built -------------------------------------------------------

def open_bridge(world: Any, args: argparse.Namespace, out: TextIO | None = None,
                topology: str = "default") -> BridgeSession:
    """Attach the bridges asked for on the command line to `world`; prints where they listen."""
    tap = TapOptions(loss=args.tap_loss) if getattr(args, "tap", False) else None
    session = BridgeSession.live_session(world, forwards=list(args.forward), tap=tap, record=args.record,
                                         topology=topology)
    session.start()
    if out is not None:
        for line in session.banner():
            print(line, file=out)
        out.flush()
    return session


def run_headless(args: argparse.Namespace, *, out: TextIO | None = None,
                 world_factory: Callable[[int], Any] | None = None) -> int:
    """Build the lab, open the bridges, serve until Ctrl+C/SIGTERM (or --serve-seconds)."""
    out = out if out is not None else sys.stdout
    seed = getattr(args, "seed", 1)
    try:
        world = world_factory(seed) if world_factory is not None else build_topology("default", seed)
        session = open_bridge(world, args, out)
    except (BridgeError, ForwardSpecError) as exc:
        print(f"wskdbg: {exc}", file=sys.stderr)
        return 2
    hub = session.hub
    if session.forwarder is not None:
        def log_state(conn: int, state: str, detail: str, now_ns: int) -> None:
            extra = f" {detail}" if detail else ""
            print(f"[{now_ns / 1e9:12.6f}] conn {conn} {state}{extra}", file=out, flush=True)
        session.forwarder.on_state = log_state

    def request_stop(_signum: int, _frame: Any) -> None:
        if hub.stop_requested:
            raise KeyboardInterrupt  # a second Ctrl+C stops at once
        hub.stop_requested = True

    old = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    print("serving; Ctrl+C to stop", file=out, flush=True)
    started = time.monotonic()
    why = "stopped"
    try:
        why = session.run(max_wall_s=args.serve_seconds)
    except KeyboardInterrupt:
        why = "interrupted"
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        session.close()
    wall = time.monotonic() - started
    stats = hub.stats
    print(f"stopped ({why}) after {wall:.1f} s wall, {world.scheduler.now_ns / 1e9:.3f} s virtual, "
          f"{world.scheduler.events_run} events, {stats.inputs} inputs ({stats.input_bytes} bytes)", file=out)
    if session.forward_host is not None:
        fs = session.forward_host.stats
        print(f"forwarded {fs.accepted} connections, {fs.bytes_in} bytes in, {fs.bytes_out} bytes out", file=out)
    if world.scheduler.halted is not None:
        info = world.scheduler.halted
        print(f"*** the lab bug-checked: {info.code:#x} on {info.host}", file=out)
        return 1
    return 0


# -- tap-exec ---------------------------------------------------------------------------------------

def find_namespace(name: str | None = None) -> str:
    if name is not None:
        if not name.startswith(NS_PREFIX):
            raise BridgeError(f"{name!r} is not a wskdbg namespace")
        if not os.path.exists(os.path.join("/run/netns", name)):
            raise BridgeError(f"no namespace {name!r}: is `wskdbg --tap` running?")
        return name
    live = live_namespaces()
    if not live:
        raise BridgeError("no TAP bridge is running (start one with `wskdbg --tap`)")
    if len(live) > 1:
        raise BridgeError(f"several TAP bridges are running ({', '.join(live)}); choose one with --ns")
    return live[0]


def tap_exec(command: Sequence[str], namespace: str | None = None, **run_kwargs: Any) -> subprocess.CompletedProcess:
    """Run `command` inside the TAP namespace (what `!tapexec CMD` and `wskdbg tap-exec` do)."""
    reason = tap_unavailable_reason()
    if reason is not None:
        raise TapUnavailable(reason)
    argv = list(command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise BridgeError("tap-exec needs a command, e.g. wskdbg tap-exec -- curl http://winsrv/")
    ns = find_namespace(namespace)
    return subprocess.run(["ip", "netns", "exec", ns, *argv], **run_kwargs)


def tap_exec_main(command: Sequence[str], namespace: str | None = None) -> int:
    try:
        return tap_exec(command, namespace).returncode
    except BridgeError as exc:
        print(f"wskdbg tap-exec: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"wskdbg tap-exec: {exc}", file=sys.stderr)
        return 127


# -- replay -------------------------------------------------------------------------------------------

def is_recording(path: str | os.PathLike[str]) -> bool:
    """True for a bridge recording (what `wskdbg run` hands to `replay_main`)."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            first = f.readline(4096)
    except OSError:
        return False
    return f'"format":"{FORMAT}"' in first.replace(" ", "")


def replay_recording(path: str | os.PathLike[str], *, max_events: int = 50_000_000
                     ) -> tuple[BridgeSession, list[tuple[int, str, str]], str]:
    """Replay a recording; returns the session, its (seq, kind, describe()) events and why it stopped."""
    recording = read_recording(path)
    session = BridgeSession.replay_session(recording)
    events, unsubscribe = bus_recorder(session.world.bus)
    try:
        why = session.run(max_events=max_events)
    finally:
        unsubscribe()
        session.close()
    return session, events, why


def replay_main(path: str, *, out: TextIO | None = None, print_events: bool = False) -> int:
    out = out if out is not None else sys.stdout
    try:
        session, events, why = replay_recording(path)
    except (RecordingError, BridgeError, ForwardSpecError, OSError) as exc:
        print(f"wskdbg replay: {exc}", file=sys.stderr)
        return 2
    if print_events:
        for seq, kind, text in events:
            print(f"{seq:8d} {kind:16s} {text}", file=out)
    hub = session.hub
    sched = session.world.scheduler
    print(f"replayed {hub.stats.inputs} inputs: {sched.events_run} scheduler events, {len(events)} bus events, "
          f"{sched.now_ns / 1e9:.6f} s virtual ({why})", file=out)
    if session.forwarder is not None:
        print(f"lab output digest {session.forwarder.output_digest()}", file=out)
    if hub.divergence:
        print(f"DIVERGED: {hub.divergence}", file=out)
        return 1
    return 0


# -- standalone ----------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wskdbg-bridge", description="wskdbg bridges to the real world")
    sub = parser.add_subparsers(dest="cmd", required=True)
    add_bridge_subcommands(sub)
    args = parser.parse_args(argv)
    command = args.bridge_command
    if command == "tap-exec":
        return tap_exec_main(args.command, args.ns)
    if command == "replay":
        return replay_main(args.recording, print_events=args.events)
    if not bridge_requested(args):
        parser.error("serve needs --forward or --tap")
    return run_headless(args)


if __name__ == "__main__":
    raise SystemExit(main())
