"""`!synflood`: a lab-side attacker floods a host's TCP port with spoofed SYNs
(stack/synflood.py), to watch SYN attack protection switch on (`!netstat -s`,
`!listeners`-style details in `!synflood -s`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stack.synflood import start_syn_flood

from wskdbg.commands.lab import host_name, world_of
from wskdbg.commands.registry import CommandResult, Invocation, command, tokenize

if TYPE_CHECKING:
    from wskdbg.engine import Engine

MAX_SYNS = 1_000_000
SLICE_NS = 10_000_000


def _number(inv: Invocation, word: str, at: int, low: int, high: int) -> int:
    try:
        value = int(word, 0)
    except ValueError:
        raise inv.error(f"'{word}' is not a number", at) from None
    if not low <= value <= high:
        raise inv.error(f"{value} is outside {low}..{high}", at)
    return value


@command("!synflood", area="network", mutates=True,
         syntax="!synflood [/w] Host Port [-n Count] [-r SynsPerSecond] | !synflood -s Host Port",
         summary="Flood a host's TCP port with spoofed SYNs from the lab (to watch SYN attack protection)",
         help="""
`!synflood winsrv 80 -n 10000` schedules 10,000 TCP SYNs to winsrv:80 from spoofed, unused
addresses of its subnet (50,000 a second unless -r says otherwise), put on the wire in front of
winsrv; `g` or any command that runs the machine sends them (`/w`: run the machine now until the
last one is on the wire).  Nobody answers the SYN-ACKs, so
each SYN would hold a half-open connection: once the listener's SYN queue is full, tcpip turns
SYN attack protection on and answers with SYN cookies instead.  `!synflood -s winsrv 80` shows
the listener's SYN queue and protection state; `!netstat -s` the counters.  The attacker is the
lab's invention, not Windows code.""")
def cmd_synflood(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    show = bool(words) and words[0][0] == "-s"
    wait = bool(words) and words[0][0].lower() == "/w"
    if show or wait:
        words = words[1:]
    if len(words) < 2:
        raise inv.error("give a host and a port, e.g. !synflood winsrv 80 -n 10000", len(inv.args))
    world = world_of(dbg)
    host = host_name(dbg, inv, *words[0])
    port = _number(inv, *words[1], 1, 65535)
    if show:
        return _show(dbg, inv, host, port, words[1][1])
    count, rate = 1000, 50_000
    rest = words[2:]
    while rest:
        (flag, at), rest = rest[0], rest[1:]
        if flag not in ("-n", "-r") or not rest:
            raise inv.error(f"expected -n Count or -r SynsPerSecond, not '{flag}'", at)
        (value, value_at), rest = rest[0], rest[1:]
        if flag == "-n":
            count = _number(inv, value, value_at, 1, MAX_SYNS)
        else:
            rate = _number(inv, value, value_at, 1, 10_000_000)
    flood = start_syn_flood(world, host, port, count, rate)
    text = f"SYN flood: {count} spoofed SYNs to {host}:{port} at {rate} per second"
    data = {"host": host, "port": port, "count": count, "rate": rate}
    if not wait:
        return CommandResult(text + ", starting now (g to run)", data)
    if dbg.in_bp_command:
        raise inv.error("/w cannot run the machine from a breakpoint command", 0)
    lines = [text] + _run_until_sent(dbg, flood)
    data["sent"] = flood.sent
    return CommandResult("\n".join(lines), data)


def _run_until_sent(dbg: "Engine", flood: Any) -> list[str]:
    """Run the machine in slices of virtual time until the last SYN is on the wire."""
    from wskdbg.commands.execution import render_stop

    lines: list[str] = []
    sched = dbg.scheduler
    while not flood.done and sched.halted is None:
        nxt = sched.peek_time()
        if nxt is None:
            break
        stop = dbg.resume(dbg.make_request("g", deadline_ns=max(sched.now_ns, nxt) + SLICE_NS))
        lines += dbg.take_run_output()
        if stop.reason not in ("timecap", "idle"):
            lines += render_stop(dbg, stop)
            break
    elapsed = (sched.now_ns - flood.started_ns) / 1e6
    lines.append(f"{flood.sent} SYNs sent in {elapsed:.3f} ms of virtual time")
    return lines


def _show(dbg: "Engine", inv: Invocation, host: str, port: int, at: int) -> CommandResult:
    world = world_of(dbg)
    tcp = world.host(host).stack.tcp
    found = [lst for lst in tcp.listener_list() if lst.local.port == port]
    if not found:
        raise inv.error(f"nothing listens on TCP port {port} of {host}", at)
    rows: list[dict[str, Any]] = [tcp.listener_snapshot(lst) for lst in found]
    lines = []
    for row in rows:
        lines += [f"Listener {row['local']} (backlog {row['backlog']})",
                  f"  SYN queue (half-open)      {row['pending_handshakes']}",
                  f"  Ready to accept            {row['ready_to_accept']}",
                  f"  SYNs received              {row['syns_received']}",
                  f"  SYN attack protection      {'on' if row['syn_protection'] else 'off'}"
                  f" (switched on {row['syn_protection_activations']} times)",
                  f"  SYN cookies sent           {row['syn_cookies_sent']}",
                  f"  Connections from cookies   {row['syn_cookies_accepted']}",
                  f"  SYNs dropped (queue full)  {row['syns_dropped_syn_queue_full']}",
                  f"  Refused (backlog full)     {row['syns_refused_backlog_full'] + row['resets_backlog_full']}"]
    return CommandResult("\n".join(lines), {"listeners": rows})
