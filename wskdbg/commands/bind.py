"""`!bind`: bind TCP and UDP sockets on the current host from the prompt, with SO_REUSEADDR or
SO_EXCLUSIVEADDRUSE and an owner (security context), to walk MS Learn's "Sharing Transport
Addresses" table (stack/tcpip/sharing.py).  The sockets are transport endpoints that stay bound
until `!bind -c`; WSK and user-mode (AFD) sockets reach the same table through WskBind / bind."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stack.kernel.ntstatus import STATUS_SUCCESS, status_name
from stack.kernel.symbols import pop_kernel, push_kernel
from stack.tcpip.addr import SockAddr
from stack.tcpip.sharing import SHARING_TABLE, Share

from wskdbg.commands.network import tcpip_of
from wskdbg.commands.registry import CommandResult, Invocation, command, tokenize

if TYPE_CHECKING:
    from wskdbg.engine import Engine

BINDS_STATE = "bind.sockets"  # dbg.state key: host -> [(number, protocol, endpoint, share, owner)]
_SHARE_FLAGS = {"-r": Share.REUSEADDR, "-x": Share.EXCLUSIVE}


@command("!bind", area="network", mutates=True,
         syntax="!bind [-r|-x] [-o Owner] tcp|udp Address:Port | !bind | !bind -c [N|*] | !bind -t",
         summary="Bind a TCP or UDP socket on the current host (SO_REUSEADDR -r, SO_EXCLUSIVEADDRUSE -x)",
         help="""
`!bind -o procA tcp 0.0.0.0:5000` binds a TCP socket owned by procA to the wildcard address,
port 5000, and prints the NTSTATUS the bind returned.  -r sets SO_REUSEADDR, -x
SO_EXCLUSIVEADDRUSE first (neither is set by default); the owner is the socket's security
context (default System), which the default security descriptor's access check compares.
`!bind` lists the sockets bound so far, `!bind -c 2` closes socket 2 (`-c *` all of them), and
`!bind -t` prints the sharing table of MS Learn's "Sharing Transport Addresses".""")
def cmd_bind(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    host = dbg.current_host
    bound: list[Any] = dbg.state.setdefault(BINDS_STATE, {}).setdefault(host, [])
    if not words:
        return _list(host, bound)
    first, first_at = words[0]
    if first == "-t":
        return _table()
    if first == "-c":
        return _close(dbg, inv, host, bound, words[1:])
    share = Share.DEFAULT
    owner = "System"
    rest = list(words)
    while rest and rest[0][0].startswith("-"):
        (flag, at), rest = rest[0], rest[1:]
        if flag in _SHARE_FLAGS:
            if share is not Share.DEFAULT and share is not _SHARE_FLAGS[flag]:
                raise inv.error("-r and -x exclude each other (as the two options do)", at)
            share = _SHARE_FLAGS[flag]
        elif flag == "-o" and rest:
            (owner, _), rest = rest[0], rest[1:]
        else:
            raise inv.error(f"unknown option '{flag}' (-r, -x, -o Owner, -c, -t)", at)
    if len(rest) != 2:
        raise inv.error("give a protocol and an address, e.g. !bind tcp 0.0.0.0:5000", len(inv.args))
    (proto, proto_at), (text, text_at) = rest
    proto = proto.lower()
    if proto not in ("tcp", "udp"):
        raise inv.error("the protocol is tcp or udp", proto_at)
    try:
        local = SockAddr.parse(text)
    except ValueError as err:
        raise inv.error(f"'{text}' is not an address:port ({err})", text_at) from None
    if not local.port:
        raise inv.error("give a port: sharing is about binding one that is in use", text_at)
    stack = tcpip_of(dbg)
    push_kernel(stack.kernel)
    try:
        if proto == "tcp":
            status, endpoint = stack.transport.tcp_socket(local, local.family, share, owner, v6only=True)
        else:
            status, endpoint = stack.transport.udp_open(local, v6only=True, share=share, owner=owner)
    finally:
        pop_kernel()
    what = f"{proto.upper()} {local} ({share.value}, owner {owner})"
    data: dict[str, Any] = {"protocol": proto, "local": str(local), "share": share.name, "owner": owner,
                            "status": status, "status_name": status_name(status)}
    if status != STATUS_SUCCESS:
        return CommandResult(f"bind {what}: {status_name(status)}", data)
    number = (bound[-1][0] + 1) if bound else 1
    bound.append((number, proto, endpoint, share, owner))
    data["socket"] = number
    return CommandResult(f"bind {what}: {status_name(status)} - socket {number}", data)


def _list(host: str, bound: list[Any]) -> CommandResult:
    if not bound:
        return CommandResult(f"No sockets bound with !bind on {host}.", {"sockets": []})
    lines = [f"Sockets bound with !bind on {host}", "",
             "  #  Proto  Local Address            Option               Owner"]
    rows = []
    for number, proto, endpoint, share, owner in bound:
        lines.append(f"  {number:<2} {proto.upper():<6} {str(endpoint.local):<24} {share.value:<20} {owner}")
        rows.append({"socket": number, "protocol": proto, "local": str(endpoint.local), "share": share.name,
                     "owner": owner})
    return CommandResult("\n".join(lines), {"sockets": rows})


def _close(dbg: "Engine", inv: Invocation, host: str, bound: list[Any], words: list[tuple[str, int]]) -> CommandResult:
    if len(words) != 1:
        raise inv.error("say which socket: !bind -c N or !bind -c *", len(inv.args))
    text, at = words[0]
    if text == "*":
        chosen = list(bound)
    else:
        chosen = [entry for entry in bound if str(entry[0]) == text]
        if not chosen:
            raise inv.error(f"no socket {text} (!bind lists them)", at)
    stack = tcpip_of(dbg)
    push_kernel(stack.kernel)
    try:
        for entry in chosen:
            entry[2].close()
            bound.remove(entry)
    finally:
        pop_kernel()
    return CommandResult(f"Closed {len(chosen)} socket(s) on {host}.", {"closed": [e[0] for e in chosen]})


def _table() -> CommandResult:
    columns = [(Share.DEFAULT, True), (Share.DEFAULT, False), (Share.REUSEADDR, True), (Share.REUSEADDR, False),
               (Share.EXCLUSIVE, True), (Share.EXCLUSIVE, False)]
    short = {Share.DEFAULT: "default", Share.REUSEADDR: "REUSEADDR", Share.EXCLUSIVE: "EXCLUSIVE"}
    head = "  Second bind \\ first bind  " + "".join(
        f"{short[s] + ('/W' if w else '/S'):<13}" for s, w in columns)
    lines = ["Sharing Transport Addresses (MS Learn): a second bind to an address in use", "", head]
    for second in (Share.DEFAULT, Share.REUSEADDR, Share.EXCLUSIVE):
        for wild in (True, False):
            cells = "".join(f"{SHARING_TABLE[(second, wild, first, fwild)].value:<13}" for first, fwild in columns)
            lines.append(f"  {short[second] + (' wildcard' if wild else ' specific'):<26}{cells}")
    lines += ["", "  W/S: the first bind's address is the wildcard / a specific one",
              "  INUSE = STATUS_ADDRESS_ALREADY_EXISTS, DENIED = STATUS_ACCESS_DENIED,",
              "  CHECK = the default security descriptor's access check: the same owner passes, another is denied"]
    return CommandResult("\n".join(line.rstrip() for line in lines), {"table": {f"{a.name}/{b}/{c.name}/{d}": v.value
                                                               for (a, b, c, d), v in SHARING_TABLE.items()}})
