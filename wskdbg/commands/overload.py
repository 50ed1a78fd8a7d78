"""Overload: `!netsh int ipv4 show|set dynamicport tcp` (the dynamic port range and its use),
`!netsh int tcp show|set supplemental` (the congestion provider: CUBIC or NewReno) and
`!connload` (a slow-accepting server on winsrv and connection loads from client), for issue 12's
listen-backlog overflow and ephemeral-port exhaustion.

`netsh int ipv4 show dynamicport tcp` prints (Windows Server 2008 and later):

    Protocol tcp Dynamic Port Range
    ---------------------------------
    Start Port      : 49152
    Number of Ports : 16384
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from stack.kernel import STATUS_SUCCESS
from stack.tcpip.tcp.config import CONGESTION_PROVIDERS
from stack.tcpip.tcp.congestion import WINDOWS_SLOW_START_ACK_LIMIT

from wskdbg.commands.lab import world_of
from wskdbg.commands.network import tcpip_of
from wskdbg.commands.registry import CommandError, CommandResult, Invocation, command, tokenize
from wskdbg.commands.synflood import _number

if TYPE_CHECKING:
    from wskdbg.engine import Engine

_NETSH_SYNTAX = ("!netsh int ipv4 show dynamicport tcp | !netsh int ipv4 set dynamicport tcp start=N num=N"
                 " | !netsh int tcp show supplemental | !netsh int tcp set supplemental congestionprovider=cubic|newreno"
                 " | !netsh int tcp show global | !netsh int tcp set global [hystart=enabled|disabled]"
                 " [prr=enabled|disabled]")
_INTERNET_DELAYED_ACK_MS = 40  # Get-NetTCPSetting -SettingName Internet: DelayedAckTimeout(ms) 40
_TEMPLATES = ("internet", "internetcustom", "datacenter", "datacentercustom", "compat", "automatic")


@command("!netsh", area="network", mutates=True, syntax=_NETSH_SYNTAX,
         summary="netsh's dynamic port range of the current host: show it (and its use), or set it",
         help="""
`!netsh int ipv4 show dynamicport tcp` prints the host's TCP dynamic (ephemeral) port range as
netsh does, then - the lab's addition - how many of those ports are taken (by connections,
TIME_WAIT ones included, listeners and binds), how many connections wait in TIME_WAIT, and how
many connects failed for want of a port.  `!netsh int ipv4 set dynamicport tcp start=50000 num=255`
changes the range as netsh does (start at least 1025, at least 255 ports, ending at or below
65535), so a class can shrink it and watch a client run out: connect then fails with
STATUS_INSUFFICIENT_RESOURCES (WSAENOBUFS).  Only `int ipv4` and `tcp` are modelled (IPv6 shares
the range here); the host is the one `.host` selected.

`!netsh int tcp show supplemental` prints the host's TCP template as Windows 10 / Server 2019
and later print it (Minimum RTO, Initial Congestion Window, "Congestion Control Provider : cubic",
delayed ACK timeout and frequency, with the lab's values), then whether PRR (RFC 6937) paces SACK
recovery, which Windows shows in `netsh int tcp show global`.  `!netsh int tcp set supplemental
[template=internet] congestionprovider=cubic|newreno` switches the provider for connections made
from then on, as netsh does (the lab has one template for every connection; CUBIC is RFC 9438,
NewReno RFC 5681/6582).

`!netsh int tcp show global` prints the global parameters the lab models, in the rows and words of
Windows 11's `netsh int tcp show global` (auto-tuning level, timestamps, initial RTO, SYN
retransmissions, HyStart, Proportional Rate Reduction); `!netsh int tcp set global hystart=disabled`
makes the first slow start RFC 5681's (one SMSS per ACK instead of HyStart++'s eight, RFC 9406) and
`prr=disabled` makes SACK recovery RFC 6675's, as netsh does, for connections made from then on.""")
def cmd_netsh(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    lowered = [w.lower() for w, _ in words]
    if len(words) >= 4 and lowered[0] in ("int", "interface") and lowered[1] == "tcp" \
            and lowered[2] in ("show", "set") and lowered[3] == "supplemental":
        return _netsh_supplemental(dbg, inv, words, lowered[2] == "set")
    if len(words) >= 4 and lowered[0] in ("int", "interface") and lowered[1] == "tcp" \
            and lowered[2] in ("show", "set") and lowered[3] == "global":
        return _netsh_global(dbg, inv, words, lowered[2] == "set")
    if len(words) < 5 or lowered[0] not in ("int", "interface") or lowered[1] != "ipv4" \
            or lowered[2] not in ("show", "set") or lowered[3] not in ("dynamicport", "dynamicportrange") \
            or lowered[4] != "tcp":
        raise inv.error(f"usage: {_NETSH_SYNTAX}", words[0][1] if words else 0)
    tcp = tcpip_of(dbg).tcp
    if lowered[2] == "set":
        values: dict[str, int] = {}
        for word, at in words[5:]:
            key, _, value = word.partition("=")
            if key.lower() not in ("start", "num") or not value:
                raise inv.error(f"expected start=N or num=N, not '{word}'", inv.args_offset + at)
            values[key.lower()] = _number(inv, value, inv.args_offset + at, 0, 0xFFFF)
        if set(values) != {"start", "num"}:
            raise inv.error("give both start=N and num=N", len(inv.args))
        if tcp.set_dynamic_ports(values["start"], values["num"]) != STATUS_SUCCESS:
            raise CommandError("The parameter is incorrect.  (start >= 1025, num >= 255, start + num - 1 <= 65535)")
        return CommandResult("Ok.", {"start": tcp.dynamic_start, "num": tcp.dynamic_count})
    if len(words) > 5:
        raise inv.error(f"unexpected '{words[5][0]}'", inv.args_offset + words[5][1])
    usage = tcp.port_usage()
    failures = tcp.counters.tcp_port_exhaustion_failures
    lines = ["", "Protocol tcp Dynamic Port Range", "-" * 33,
             f"Start Port      : {tcp.dynamic_start}", f"Number of Ports : {tcp.dynamic_count}", "",
             f"(lab) {dbg.current_host}: ports in use {usage['tcp_dynamic_ports_in_use']}, "
             f"free {usage['tcp_dynamic_ports_free']}; connections in TIME_WAIT {usage['tcp_time_wait_connections']}; "
             f"connects failed for want of a port {failures}"]
    data: dict[str, Any] = {"start": tcp.dynamic_start, "num": tcp.dynamic_count, **usage,
                            "tcp_port_exhaustion_failures": failures}
    return CommandResult("\n".join(lines), data)


def _netsh_supplemental(dbg: "Engine", inv: Invocation, words: list[tuple[str, int]], setting: bool) -> CommandResult:
    tcp = tcpip_of(dbg).tcp
    values: dict[str, str] = {}
    for word, at in words[4:]:
        key, _, value = word.lower().partition("=")
        if not setting or key not in ("template", "congestionprovider") or not value:
            raise inv.error(f"unexpected '{word}'", inv.args_offset + at)
        if key == "template" and value not in _TEMPLATES or key == "congestionprovider" \
                and value not in CONGESTION_PROVIDERS:
            raise inv.error(f"'{value}' is not a {key} the lab has ({', '.join(CONGESTION_PROVIDERS)})"
                            if key == "congestionprovider" else f"unknown template '{value}'", inv.args_offset + at)
        values[key] = value
    if setting:
        if "congestionprovider" not in values:
            raise inv.error("give congestionprovider=cubic or congestionprovider=newreno", len(inv.args))
        # A fresh configuration (hosts may share one object); connections made from now on use it.
        tcp.set_config(replace(tcp.config, congestion_provider=values["congestionprovider"]))
        return CommandResult(f"Ok.\n(lab) {dbg.current_host}: for connections made from now on (.host picks the host)", {"congestion_provider": tcp.config.congestion_provider})
    cfg = tcp.config
    rows = [("Minimum RTO (msec)", cfg.rto_min_ns // 1_000_000),
            ("Initial Congestion Window (MSS)", cfg.initial_cwnd_segments),
            ("Congestion Control Provider", cfg.congestion_provider),
            ("Enable Congestion Window Restart", "disabled"),
            ("Delayed ACK timeout (msec)", cfg.delayed_ack_ns // 1_000_000),
            ("Delayed ACK frequency", cfg.delayed_ack_every_segments)]
    # Windows' output begins with the global default template's name (its values are the internet
    # template's); the lab has one configuration per host and prints its real values.
    lines = ["The TCP global default template is internet", "", "TCP Supplemental Parameters", "-" * 46]
    lines += [f"{name:<36}: {value}" for name, value in rows]
    lines += ["", f"(lab) {dbg.current_host}: Proportional Rate Reduction (show global) : "
              f"{'enabled' if cfg.prr else 'disabled'}"]
    if cfg.delayed_ack_ns // 1_000_000 != _INTERNET_DELAYED_ACK_MS:  # the lab's timer really is this
        lines.append(f"(lab) {dbg.current_host}: the delayed ACK timer above is the lab's own "
                     f"(TcpDelAckTicks' old default of 2 ticks); Windows' internet template says {_INTERNET_DELAYED_ACK_MS}")
    data = {"congestion_provider": cfg.congestion_provider, "prr": cfg.prr, "min_rto_ms": cfg.rto_min_ns // 1_000_000,
            "initial_cwnd_segments": cfg.initial_cwnd_segments}
    return CommandResult("\n".join(lines), data)


# `netsh int tcp set global` switches the lab models, and what each sets in TcpConfig when enabled / disabled
_GLOBAL_SWITCHES: dict[str, tuple[str, object, object]] = {
    "hystart": ("slow_start_ack_limit", WINDOWS_SLOW_START_ACK_LIMIT, 1),  # RFC 9406 L; RFC 5681's 1
    "prr": ("prr", True, False),  # RFC 6937; RFC 6675's cwnd = ssthresh
}


def _netsh_global(dbg: "Engine", inv: Invocation, words: list[tuple[str, int]], setting: bool) -> CommandResult:
    tcp = tcpip_of(dbg).tcp
    changes: dict[str, object] = {}
    for word, at in words[4:]:
        key, _, value = word.lower().partition("=")
        if not setting or key not in _GLOBAL_SWITCHES or value not in ("enabled", "disabled"):
            raise inv.error(f"unexpected '{word}' (the lab sets hystart= and prr= enabled|disabled)"
                            if setting else f"unexpected '{word}'", inv.args_offset + at)
        field, on, off = _GLOBAL_SWITCHES[key]
        changes[field] = on if value == "enabled" else off
    if setting:
        if not changes:
            raise inv.error("give hystart=enabled|disabled or prr=enabled|disabled", len(inv.args))
        tcp.set_config(replace(tcp.config, **changes))  # connections made from now on use it
        return CommandResult(f"Ok.\n(lab) {dbg.current_host}: for connections made from now on (.host picks the host)",
                             {"hystart": tcp.config.slow_start_ack_limit > 1, "prr": tcp.config.prr})
    cfg = tcp.config
    hystart = cfg.slow_start_ack_limit > 1
    rows = [("Receive Window Auto-Tuning Level", "normal" if cfg.recv_buffer_max else "disabled"),
            ("RFC 1323 Timestamps", "enabled" if cfg.timestamps else "disabled"),
            ("Initial RTO", cfg.rto_initial_ns // 1_000_000),
            ("Max SYN Retransmissions", cfg.syn_retries),
            ("HyStart", "enabled" if hystart else "disabled"),
            ("Proportional Rate Reduction", "enabled" if cfg.prr else "disabled"),
            ("Pacing Profile", "off")]  # the lab's TCP never paces: why HyStart++'s L is 8 (RFC 9406 4.3)
    # Windows prints more rows (Receive-Side Scaling, ECN, Fast Open, Receive Segment Coalescing, ...): the lab
    # prints only what it models, with its own values.
    lines = ["Querying active state...", "", "TCP Global Parameters", "-" * 46]
    lines += [f"{name:<36}: {value}" for name, value in rows]
    growth = (f"HyStart++ grows the first slow start by up to {cfg.slow_start_ack_limit} SMSS per ACK (RFC 9406)"
              if hystart else "slow start grows cwnd by at most 1 SMSS per ACK (RFC 5681)")
    lines += ["", f"(lab) {dbg.current_host}: {growth}; RACK-TLP (RFC 8985, no netsh row) "
              f"{'on' if cfg.rack_tlp else 'off'} for SACK connections"]
    data = {"hystart": hystart, "prr": cfg.prr, "slow_start_ack_limit": cfg.slow_start_ack_limit,
            "rack_tlp": cfg.rack_tlp, "initial_rto_ms": cfg.rto_initial_ns // 1_000_000}
    return CommandResult("\n".join(lines), data)


_CONNLOAD_SYNTAX = "!connload [/backlog N] [/work Microseconds] [/rate PerSecond | /serial] Connections"


@command("!connload", area="services", mutates=True, syntax=_CONNLOAD_SYNTAX,
         summary="A slow-accepting server on winsrv and a connection load from client (backlog, ports)",
         help="""
Emulator command.  Starts (once) a user-mode server on winsrv port 9100 with one thread and a small
listen backlog (/backlog, default 5): it accepts, reads the request, does /work microseconds of
its own work (default 2000; UserTime, so it takes time only with the processor model on: `!cpu
winsrv 2003 1`), answers, and waits for the client to close first.  Then client opens Connections
connections: /rate N starts N a second, each in its own thread, whether or not the earlier ones
were served (httperf --rate; default all at once); /serial opens them one after another.  Past the
backlog tcpip refuses connections the Windows way (a RST: WSAECONNREFUSED); every connection
client closed waits in TIME_WAIT holding its port.  `!connload` alone prints what happened to the
connections so far.  Runs when the machine runs (g).""")
def cmd_connload(dbg: "Engine", inv: Invocation) -> CommandResult:
    from stack.usermode.connload import CONNLOAD_PORT, ConnLoadStats, connect_burst, connect_serial, slow_server
    from stack.usermode.socket import run_program
    world = world_of(dbg)
    server, client = world.host("winsrv"), world.host("client")
    stats: ConnLoadStats | None = server.extras.get("connload_stats")
    words = tokenize(inv.args)
    if not words:
        if stats is None:
            raise CommandError(f"no connection load has run (start one with {_CONNLOAD_SYNTAX})")
        return _report(stats)
    options = {"/backlog": 5, "/work": 2000, "/rate": 0}
    serial = False
    count = None
    i = 0
    while i < len(words):
        word, at = words[i]
        key = word.lower()
        if key in options and i + 1 < len(words):
            i += 1
            options[key] = _number(inv, words[i][0], inv.args_offset + words[i][1], 0 if key != "/backlog" else 1,
                                   10_000_000)
        elif key == "/serial":
            serial = True
        elif count is None and word.isdigit():
            count = _number(inv, word, inv.args_offset + at, 1, 100_000)
        else:
            raise inv.error(f"unexpected '{word}'", inv.args_offset + at)
        i += 1
    if count is None:
        raise inv.error(f"give the number of connections: {_CONNLOAD_SYNTAX}", len(inv.args))
    text = []
    if stats is None:
        stats = server.extras["connload_stats"] = ConnLoadStats()
        run_program(server.kernel, slow_server, stats, options["/backlog"], options["/work"] * 1000, name="slow-server")
        text.append(f"connload: slow-server on winsrv:{CONNLOAD_PORT}, backlog {options['/backlog']}, "
                    f"{options['/work']} us of work per request")
    target = str(server.address4)
    if serial:
        run_program(client.kernel, connect_serial, stats, target, count, name="connload")
        how = "one after another"
    else:
        run_program(client.kernel, connect_burst, stats, target, count, options["/rate"], name="connload")
        how = f"{options['/rate']} a second" if options["/rate"] else "all at once"
    text.append(f"connload: {count} connections from client to winsrv:{CONNLOAD_PORT}, {how}; "
                "runs when the machine runs (g).")
    return CommandResult("\n".join(text), {"count": count, "serial": serial, **options})


def _report(stats: Any) -> CommandResult:
    lines = ["connload: what happened to client's connections"]
    data: dict[str, Any] = {"served_by_server": stats.served, "running": stats.running}
    for label, n in stats.summary():
        lines.append(f"  {label:<32}{n}")
        data[label] = n
    lines.append(f"  {'answered by the server':<32}{stats.served}")
    if stats.running:
        lines.append("  (the load is still running)")
    return CommandResult("\n".join(lines), data)
