"""`!afd`: the user-mode sockets of the current host - afd's endpoints on \\Device\\Afd - with their send
buffering (SO_SNDBUF, bytes afd holds for tcpip, sends held back by KB 214397's quota rule).

Windows' afdkd.dll (`!afd endp`) lists the same endpoints from afd!AfdEndpointListHead; its exact
columns are not published, so the table follows `!wsk`'s shape (one row per socket, then a detail
view with `!afd Address`), and the address is the endpoint's pool block (tag 'AfdE').
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stack.afd.device import SOCK_DGRAM, AfdEndpoint
from stack.afd.sendbuf import AFD_DEFAULT_SEND_WINDOW, ideal_send_backlog, send_quota
from stack.kernel.ntstatus import status_name

from wskdbg.commands.ndiskd import parse_options
from wskdbg.commands.registry import CommandResult, Invocation, command
from wskdbg.render.fmt import addr64
from wskdbg.render.net import INDENT, family_text, table

if TYPE_CHECKING:
    from wskdbg.engine import Engine


def afd_endpoints(dbg: "Engine") -> list[AfdEndpoint]:
    return [obj for obj in dbg.kernel.addr_objects.values() if isinstance(obj, AfdEndpoint)]


def _state(ep: AfdEndpoint) -> str:
    if ep.connection is not None:
        return ep.connection.state
    if ep.listener is not None:
        return "LISTEN"
    return "BOUND" if ep.local is not None else "OPEN"


def afd_row(ep: AfdEndpoint) -> dict[str, Any]:
    conn = ep.connection
    return {
        "address": ep.address, "type": "Datagram" if ep.type == SOCK_DGRAM else "Stream", "family": ep.family,
        "state": _state(ep), "local": str(ep.local) if ep.local else "", "owner": str(ep.owner),
        "remote": str(conn.remote) if conn is not None and conn.remote else "",
        "so_sndbuf": AFD_DEFAULT_SEND_WINDOW if ep.send_window is None else ep.send_window,
        "sndbuf_set": ep.send_window is not None, "quota": send_quota(ep), "isb": ideal_send_backlog(ep),
        "buffered_bytes": ep.buffered_bytes, "buffered_sends": len(ep.buffered),
        "held": sum(1 for b in ep.buffered if b.irp is not None), "sends_buffered": ep.sends_buffered,
        "sends_held": ep.sends_held, "send_error": ep.send_error,
        "tcb": conn.address if conn is not None else 0,
    }


def _sndbuf_text(r: dict[str, Any]) -> str:
    if r["sndbuf_set"]:
        return f"{r['so_sndbuf']}" + ("  (no buffering)" if r["so_sndbuf"] == 0 else "")
    return f"{r['so_sndbuf']}  (default; dynamic: {r['quota']})"


def afd_table(rows: list[dict[str, Any]]) -> list[str]:
    body = [(addr64(r["address"]), r["type"], r["state"], r["local"] or "-", r["remote"] or "-", r["owner"],
             f"{r['so_sndbuf']}" if r["sndbuf_set"] else f"{r['quota']}*",
             f"{r['buffered_bytes']}/{r['buffered_sends']}" + (f" ({r['held']} held)" if r["held"] else ""))
            for r in rows]
    lines = table(("Endpoint", "Type", "State", "Local", "Remote", "Owner", "SndBuf", "Buffered/Sends"), body)
    if not rows:
        lines.append("(no user-mode sockets)")
    elif any(not r["sndbuf_set"] for r in rows):
        lines.append("* SO_SNDBUF not set: afd sizes the send buffer dynamically (the ideal send backlog)")
    return lines


def afd_detail(r: dict[str, Any]) -> list[str]:
    return [f"AFD endpoint {addr64(r['address'])}",
            f"{INDENT}Type             {r['type']} ({family_text(r['family'])})",
            f"{INDENT}State            {r['state']}",
            f"{INDENT}Local address    {r['local'] or '-'}",
            f"{INDENT}Remote address   {r['remote'] or '-'}",
            f"{INDENT}Owner            {r['owner']}",
            f"{INDENT}SO_SNDBUF        {_sndbuf_text(r)}",
            f"{INDENT}Ideal backlog    {r['isb'] or '-'}",
            f"{INDENT}Buffered         {r['buffered_bytes']} bytes in {r['buffered_sends']} sends"
            f" ({r['held']} held back by the quota rule)",
            f"{INDENT}Sends buffered   {r['sends_buffered']} (held back: {r['sends_held']})",
            f"{INDENT}Send error       {status_name(r['send_error']) if r['send_error'] else '-'}",
            f"{INDENT}Transport object {addr64(r['tcb']) + '  (!tcb ' + addr64(r['tcb']) + ')' if r['tcb'] else '-'}"]


@command("!afd", area="network", syntax="!afd [Address]",
         summary="List user-mode sockets (afd endpoints) with their send buffering, or show one",
         help="""
With no argument every user-mode socket of the current host (afd's endpoints on \\Device\\Afd): its
address (pool tag 'AfdE'), type, TCP state, local and remote address, the program that opened it,
the send buffer afd uses now (SO_SNDBUF, or the dynamic size while the program has not set one) and
the bytes afd holds for tcpip: copied sends not yet acknowledged, and how many of them still wait
to complete (KB 214397: a send completes at once while the socket is within SO_SNDBUF, or beyond
it with one buffered send ahead).  With an address: the details, including the ideal send backlog
(SIO_IDEAL_SEND_BACKLOG_QUERY), a failure a buffered send met after it completed (the next send
reports it) and the TCB under a connection.""")
def cmd_afd(dbg: "Engine", inv: Invocation) -> CommandResult:
    parsed = parse_options(inv, max_positional=1)
    endpoints = afd_endpoints(dbg)
    if parsed.positional:
        text, at = parsed.positional[0]
        address = dbg.evaluate(text, inv.args_offset + at)
        match = next((ep for ep in endpoints if ep.address == address), None)
        if match is None:
            raise inv.error(f"{addr64(address)} is not an open user-mode socket (AFD endpoint) on "
                            f"{dbg.current_host}", at)
        row = afd_row(match)
        if row["tcb"]:
            dbg.note_address(addr64(row["tcb"]))
        return CommandResult("\n".join(afd_detail(row)), row)
    rows = [afd_row(ep) for ep in endpoints]
    for r in rows:
        dbg.note_address(addr64(r["address"]))
    return CommandResult("\n".join([f"User-mode sockets (AFD endpoints) on {dbg.current_host}", ""]
                                   + afd_table(rows)), {"endpoints": rows})
