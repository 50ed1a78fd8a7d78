"""The real-world bridges from the prompt: !bridge (status) and !tapexec (run a program in the TAP namespace)."""

from __future__ import annotations

import shlex
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING, Any

from stack.bridge.session import BridgeSession, session_of
from stack.kernel.scheduler import NS_PER_MS

from wskdbg.commands.registry import CommandError, CommandResult, Invocation, command
from wskdbg.render.stop import seconds

if TYPE_CHECKING:
    from wskdbg.engine import Engine

TAPEXEC_SLICE_NS = 100 * NS_PER_MS  # run the lab in slices of virtual time while the program runs
TAPEXEC_MAX_WALL_S = 600.0
OUTPUT_LIMIT = 64 * 1024


def _session(dbg: "Engine") -> BridgeSession:
    session = session_of(dbg.world)
    if session is None:
        raise CommandError("no bridge is attached (start wskdbg with --forward, --tap or --replay)")
    return session


def bridge_status(session: BridgeSession) -> tuple[list[str], dict[str, Any]]:
    hub = session.hub
    mode = "replay" if hub.replaying else "live"
    lines = [f"bridge ({mode}): {hub.stats.inputs} inputs, {hub.stats.input_bytes} bytes from outside"
             + (f", recording to {session.record_path}" if session.record_path else "")]
    data: dict[str, Any] = {"mode": mode, "inputs": hub.stats.inputs, "input_bytes": hub.stats.input_bytes,
                            "by_kind": dict(hub.stats.by_kind), "recording": session.record_path,
                            "divergence": hub.divergence, "forwards": [], "tap": None}
    lines += session.banner()
    fwd = session.forwarder
    if fwd is not None:
        s = fwd.stats
        lines.append(f"forwarded connections: {s.accepted} accepted, {s.connected} connected, {s.failed} failed, "
                     f"{len(fwd.relays)} open; {s.bytes_to_lab} bytes in, {s.bytes_from_lab} bytes out")
        for relay in fwd.relays.values():
            lines.append(f"  conn {relay.conn:<4} {relay.peer:<24} -> {str(relay.target):<22} {relay.state:<11} "
                         f"in-flight to lab {relay.inbound_bytes:>7}  credit {relay.credit:>7}")
        data["forwards"] = [{"conn": r.conn, "peer": r.peer, "target": str(r.target), "state": r.state}
                            for r in fwd.relays.values()]
    tap = session.tap
    if tap is not None:
        c = tap.port.counters
        lines.append(f"tap port: {c.frames_in} frames in ({c.bytes_in} bytes), {c.frames_out} frames out "
                     f"({c.bytes_out} bytes)")
        data["tap"] = {"frames_in": c.frames_in, "frames_out": c.frames_out,
                       "namespace": tap.namespace.name if tap.namespace else None}
    if hub.divergence:
        lines.append(f"replay DIVERGED: {hub.divergence}")
    return lines, data


@command("!bridge", area="network", syntax="!bridge",
         summary="Show the bridges to the real world (port forwards, TAP, recording)",
         help="""
Lists the port forwards (where they listen, which lab address they reach), the open forwarded
connections with their state and buffers, the TAP port's counters and namespace, and how many
inputs entered from outside (all recorded with --record; a --replay session says whether the
replay still follows its recording).  While a bridge is attached the virtual clock follows the
wall clock when the machine runs (g).""")
def cmd_bridge(dbg: "Engine", inv: Invocation) -> CommandResult:
    lines, data = bridge_status(_session(dbg))
    return CommandResult("\n".join(lines), data)


@command("!tapexec", area="network", syntax="!tapexec Program [Arguments]", mutates=True,
         summary="Run a host program inside the TAP bridge's namespace while the lab runs",
         help="""
Runs Program (e.g. `!tapexec curl -s http://winsrv/` or `!tapexec ping -c 2 winsrv`) inside the
network namespace of the TAP bridge, and runs the machine in real time until it exits, so its
traffic reaches the lab.  A breakpoint (or Ctrl+C) stops the machine as usual; the program then
waits, and `g` lets it finish.  Prints the program's output and exit status.""")
def cmd_tapexec(dbg: "Engine", inv: Invocation) -> CommandResult:
    session = _session(dbg)
    if session.tap is None or session.tap.namespace is None:
        raise CommandError("no live TAP bridge (start wskdbg with --tap, as root)")
    try:
        argv = shlex.split(inv.args)
    except ValueError as exc:
        raise inv.error(f"cannot split the command line: {exc}", 0) from None
    if not argv:
        raise inv.error("give a program to run, e.g. !tapexec curl -s http://winsrv/", 0)
    from wskdbg.commands.execution import render_stop, stop_data

    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(session.tap.namespace.exec_argv(argv), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise CommandError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
        lines: list[str] = []
        stop_info: dict[str, Any] | None = None
        started = time.monotonic()
        while proc.poll() is None and time.monotonic() - started < TAPEXEC_MAX_WALL_S:
            req = dbg.make_request("g", deadline_ns=dbg.scheduler.now_ns + TAPEXEC_SLICE_NS)
            stop = dbg.resume(req)
            lines.extend(dbg.take_run_output())
            if stop.reason not in ("timecap", "eventcap"):
                lines.extend(render_stop(dbg, stop))
                stop_info = stop_data(dbg, stop)
                break
        out.seek(0)
        text = out.read(OUTPUT_LIMIT).decode("utf-8", "replace")
    status = proc.poll()
    if text:
        lines.insert(0, text.rstrip("\n"))
    if status is None:
        lines.append(f"{argv[0]} is still running (pid {proc.pid}); g lets it go on")
    else:
        lines.append(f"{argv[0]} exited with status {status} (virtual time {seconds(dbg.scheduler.now_ns)})")
    return CommandResult("\n".join(lines), {"argv": argv, "status": status, "stop": stop_info})
