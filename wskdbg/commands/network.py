"""TCP/IP and WSK of the current host: `!tcb`, `!tcpconn`/`!netstat`, `!wsk`, `!neighbors`, `!route`,
`!ipstats` and `!copies`.

All read the host selected with `.host` (the host of the last stop).  TCB and
socket addresses are the kernel addresses the tables print, so `!tcb` takes
what `!tcpconn` or `!wsk` shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stack.tcpip.transport import ConnectionEndpoint

from wskdbg.commands.ndiskd import parse_options
from wskdbg.commands.registry import CommandError, CommandResult, Invocation, command
from wskdbg.render import net as R
from wskdbg.render.fmt import addr64

if TYPE_CHECKING:
    from stack.tcpip.stack import TcpipStack
    from wskdbg.engine import Engine


def tcpip_of(dbg: "Engine") -> "TcpipStack":
    stack = dbg.kernel.extensions.get("tcpip")
    if stack is None:
        raise CommandError(f"tcpip is not loaded on {dbg.current_host}")
    return stack


def wsk_socket_objects(dbg: "Engine") -> list[Any]:
    provider = dbg.kernel.extensions.get("wsk")
    return list(provider.sockets.values()) if provider is not None else []


# --- !tcb ------------------------------------------------------------------------------------------

def tcb_snapshot(endpoint: ConnectionEndpoint) -> dict[str, Any]:
    snap = dict(endpoint.snapshot())
    snap.setdefault("address", endpoint.address)
    snap.setdefault("local", str(endpoint.local))
    snap.setdefault("remote", str(endpoint.remote) if endpoint.remote else "")
    return snap


@command("!tcb", area="network", syntax="!tcb [Address | -all]",
         summary="Display TCP control blocks: 4-tuple, state, sequence space, windows, RTT, timers",
         help="""
With no argument (or -all) every TCB of the current host; with an address one TCB.  The address
may be a TCB (from !tcpconn) or a WSK connection socket (from !wsk).  Shows the 4-tuple and state,
iss/snd_una/snd_nxt/snd_max/snd_wnd (also relative to iss), irs/rcv_nxt/rcv_wnd, mss and window
scales, cwnd/ssthresh, srtt/rttvar/rto, segment and retransmission counters, and the armed timers
with the virtual time left on each.  With SACK negotiated, RACK-TLP's loss detection (RFC 8985, as
Windows' tcpip.sys): the newest delivered segment's send time and end (RACK.xmit_ts / end_seq), the
reordering window, the Tail Loss Probe timer (PTO) and any probe out, and what RACK and TLP
recovered.""")
def cmd_tcb(dbg: "Engine", inv: Invocation) -> CommandResult:
    parsed = parse_options(inv, flags=("all",))
    stack = tcpip_of(dbg)
    now = dbg.scheduler.now_ns
    if parsed.positional and "all" not in parsed.flags:
        text, at = parsed.positional[0]
        address = dbg.evaluate(text, inv.args_offset + at)
        obj = dbg.kernel.object_at(address)
        endpoint = getattr(obj, "endpoint", None) if not isinstance(obj, ConnectionEndpoint) else obj
        if not isinstance(endpoint, ConnectionEndpoint):
            raise inv.error(f"{addr64(address)} is not a TCB or a WSK connection socket on {dbg.current_host}", at)
        endpoints = [endpoint]
    elif parsed.positional:
        raise inv.syntax_error(parsed.positional[0][1])
    else:
        endpoints = stack.transport.connections()
    snaps = [tcb_snapshot(ep) for ep in endpoints]
    lines: list[str] = []
    for snap in snaps:
        if lines:
            lines.append("")
        lines += R.tcb_lines(snap, now)
        dbg.note_address(addr64(snap["address"]))
    if not snaps:
        lines.append(f"No TCP connections on {dbg.current_host}.")
    return CommandResult("\n".join(lines), snaps[0] if len(snaps) == 1 and parsed.positional else {"tcbs": snaps})


# --- !tcpconn / !netstat ---------------------------------------------------------------------------------

def endpoint_rows(dbg: "Engine") -> list[dict[str, Any]]:
    transport = tcpip_of(dbg).transport
    rows: list[dict[str, Any]] = []
    for lst in transport.listeners():
        rows.append({"proto": "TCP", "local": str(lst.local), "remote": "*:*", "state": "LISTENING",
                     "address": lst.address})
    for conn in transport.connections():
        rows.append({"proto": "TCP", "local": str(conn.local), "remote": str(conn.remote) if conn.remote else "*:*",
                     "state": conn.state, "address": conn.address})
    for ep in transport.datagram_endpoints():
        rows.append({"proto": "UDP", "local": str(ep.local), "remote": "*:*", "state": "",
                     "address": ep.address})
    return rows


@command("!tcpconn", area="network", syntax="!tcpconn",
         summary="List the host's TCP listeners and connections and UDP endpoints (netstat -ano)",
         help="One row per endpoint: protocol, local and foreign address, TCP state and the endpoint's\n"
              "kernel address (a TCB for connections: !tcb takes it).")
def cmd_tcpconn(dbg: "Engine", inv: Invocation) -> CommandResult:
    parse_options(inv, max_positional=0)
    return _tcpconn(dbg)


def _tcpconn(dbg: "Engine") -> CommandResult:
    rows = endpoint_rows(dbg)
    for r in rows:
        if r["address"]:
            dbg.note_address(addr64(r["address"]))
    return CommandResult("\n".join([f"Active connections on {dbg.current_host}", ""] + R.tcpconn_lines(rows)),
                         {"endpoints": rows})


@command("!netstat", area="network", syntax="!netstat [-s]",
         summary="netstat: the endpoint table (as !tcpconn), or with -s the protocol counters (as !ipstats)",
         help="`!netstat` lists endpoints like `netstat -ano`; `!netstat -s` prints the IP/ICMP/UDP/TCP counters\n"
              "and the drops by (layer, reason), like `netstat -s`.  The lab's TCP lines add resets sent, SYN\n"
              "attack protection, connections refused because a listen backlog was full, connections in\n"
              "TIME_WAIT, dynamic ports in use and free, and connects that found no free port (see !netsh).")
def cmd_netstat(dbg: "Engine", inv: Invocation) -> CommandResult:
    parsed = parse_options(inv, flags=("s", "a", "n", "o", "ano"), max_positional=0)
    if "s" in parsed.flags:
        return _ipstats(dbg)
    return _tcpconn(dbg)


def _ipstats(dbg: "Engine") -> CommandResult:
    counters = tcpip_of(dbg).transport.counters()
    return CommandResult("\n".join([f"Protocol statistics of {dbg.current_host}", ""] + R.ipstats_lines(counters)),
                         counters)


@command("!ipstats", area="network", syntax="!ipstats",
         summary="IP, ARP/ND, ICMP, UDP and TCP counters of the host, and drops by (layer, reason)",
         help="The transport's counters (frames, packets and segments in and out, resets, opens, offloads,\n"
              "held NBLs) and every drop counted with the layer and the reason (e.g. tcp/bad_checksum).")
def cmd_ipstats(dbg: "Engine", inv: Invocation) -> CommandResult:
    parse_options(inv, max_positional=0)
    return _ipstats(dbg)


# --- !wsk ----------------------------------------------------------------------------------------------------

def wsk_row(sock: Any) -> dict[str, Any]:
    info = sock.info()
    endpoint = getattr(sock, "endpoint", None)
    return {"address": info.address, "category": info.category, "state": info.state, "family": info.family,
            "local": info.local, "remote": info.remote, "owner": info.owner, "client_context": info.client_context,
            "event_mask": info.event_mask, "bytes_sent": info.bytes_sent, "bytes_received": info.bytes_received,
            "endpoint": getattr(endpoint, "address", 0) or 0}


@command("!wsk", area="network", syntax="!wsk [Address]",
         summary="List WSK sockets (or show one): category, state, addresses, client",
         help="""
With no argument every open Winsock Kernel socket of the current host: address, category
(Listen, Connection, Datagram, Stream, Basic), state, family, local and remote address and the
client driver.  With a socket address: the details, including the client's context, the enabled
event callbacks and the transport endpoint under it (a TCB for connection sockets).""")
def cmd_wsk(dbg: "Engine", inv: Invocation) -> CommandResult:
    parsed = parse_options(inv)
    sockets = wsk_socket_objects(dbg)
    if dbg.kernel.extensions.get("wsk") is None:
        return CommandResult(f"The WSK provider (afd) is not loaded on {dbg.current_host}.", {"sockets": []})
    if parsed.positional:
        text, at = parsed.positional[0]
        address = dbg.evaluate(text, inv.args_offset + at)
        match = next((s for s in sockets if s.address == address), None)
        if match is None:
            raise inv.error(f"{addr64(address)} is not an open WSK socket on {dbg.current_host}", at)
        row = wsk_row(match)
        if row["endpoint"]:
            dbg.note_address(addr64(row["endpoint"]))
        return CommandResult("\n".join(R.wsk_detail(row)), row)
    rows = [wsk_row(s) for s in sockets]
    for r in rows:
        dbg.note_address(addr64(r["address"]))
    return CommandResult("\n".join(R.wsk_table(rows)), {"sockets": rows})


# --- !neighbors, !route, !copies ---------------------------------------------------------------------------

@command("!neighbors", "!arp", area="network", syntax="!neighbors",
         summary="Show the ARP (IPv4) and Neighbor Discovery (IPv6) caches of each interface",
         help="Each entry's IP address, MAC, state (INCOMPLETE, REACHABLE, STALE, DELAY, PROBE) and the\n"
              "number of packets queued waiting for resolution.  `!arp` is the same command.")
def cmd_neighbors(dbg: "Engine", inv: Invocation) -> CommandResult:
    parse_options(inv, max_positional=0)
    interfaces = [{"name": iface.name, "arp": iface.arp.table(), "nd": iface.nd.table()}
                  for iface in tcpip_of(dbg).interfaces]
    lines = R.neighbor_lines(interfaces)
    return CommandResult("\n".join(lines) if lines else "No interfaces.", {"interfaces": interfaces})


@command("!route", area="network", syntax="!route",
         summary="Show the IPv4 and IPv6 routing tables",
         help="Destination prefix, gateway (On-link for directly attached prefixes), interface and metric;\n"
              "the longest prefix wins.")
def cmd_route(dbg: "Engine", inv: Invocation) -> CommandResult:
    parse_options(inv, max_positional=0)
    rows = [{"version": r.prefix.version, "prefix": str(r.prefix), "gateway": "On-link" if r.gateway is None
             else str(r.gateway), "interface": getattr(r.interface, "name", "?"), "metric": r.metric}
            for r in tcpip_of(dbg).routes.routes()]
    return CommandResult("\n".join(R.route_lines(rows)), {"routes": rows})


@command("!copies", area="network", syntax="!copies",
         summary="Payload copies made by the host's kernel, per reason (zero copy is the rule)",
         help="Every copy of payload bytes is counted with its reason (a posted receive filled from NIC\n"
              "pages, a frame linearized, ...): copies and bytes per reason, and the total.")
def cmd_copies(dbg: "Engine", inv: Invocation) -> CommandResult:
    parse_options(inv, max_positional=0)
    snap = dbg.kernel.copies.snapshot()
    rows = [(reason, copies, nbytes) for reason, (copies, nbytes) in snap.items()]
    return CommandResult("\n".join([f"Payload copies on {dbg.current_host}", ""] + R.copies_lines(rows)),
                         {"copies": {r: {"copies": c, "bytes": b} for r, c, b in rows}})

