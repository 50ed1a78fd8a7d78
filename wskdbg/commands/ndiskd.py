"""`!ndiskd.*`: NDIS adapters, NET_BUFFER_LISTs, the NBL ownership log, protocols and OIDs.

Each command reads the current host's NDIS state (`stack.ndis.ndis_state`);
addresses are the ones the other commands print (NBLs from the nbllog,
adapters from the adapter table), evaluated as MASM expressions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stack.kernel.symbols import symbol_of
from stack.ndis import ndis_state
from stack.ndis import constants as C
from stack.ndis.constants import NDIS_STATUS_NAMES, OID_NAMES
from stack.ndis.miniport import Adapter
from stack.ndis.nbl import NetBuffer, NetBufferList
from stack.ndis.protocol import NdisProtocol

from wskdbg.commands.registry import CommandResult, Invocation, command, tokenize
from wskdbg.render import net as R
from wskdbg.render.dump import format_dump
from wskdbg.render.fmt import addr64

if TYPE_CHECKING:
    from wskdbg.engine import Engine

NBLLOG_DEFAULT_LIMIT = 200
DATA_DUMP_LIMIT = 2048


# --- argument parsing -----------------------------------------------------------------------------

@dataclass(slots=True)
class Parsed:
    flags: set[str]
    values: dict[str, tuple[str, int]]  # option -> (text, offset)
    positional: list[tuple[str, int]]


def parse_options(inv: Invocation, flags: tuple[str, ...] = (), valued: tuple[str, ...] = (),
                  max_positional: int = 1) -> Parsed:
    """`-flag`, `-option value` and positional words; anything else is a syntax error at its position."""
    words = tokenize(inv.args)
    out = Parsed(set(), {}, [])
    i = 0
    while i < len(words):
        word, at = words[i]
        low = word.lower()
        if low.startswith("-") and len(low) > 1 and not low[1].isdigit():
            name = low[1:]
            if name in valued:
                if i + 1 >= len(words):
                    raise inv.error(f"-{name} needs a value", at + len(word))
                out.values[name] = words[i + 1]
                i += 2
                continue
            if name in flags:
                out.flags.add(name)
                i += 1
                continue
            raise inv.error(f"Unknown option '{word}' (see: help {inv.spec.name})", at)
        if len(out.positional) >= max_positional:
            raise inv.syntax_error(at)
        out.positional.append((word, at))
        i += 1
    return out


def address_arg(dbg: "Engine", inv: Invocation, parsed: Parsed, option: str = "handle") -> tuple[int, int] | None:
    """The address given with -handle or as the positional word: (address, offset in the args)."""
    item = parsed.values.get(option) or (parsed.positional[0] if parsed.positional else None)
    if item is None:
        return None
    text, at = item
    return dbg.evaluate(text, inv.args_offset + at), at


def _addr(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    return getattr(value, "address", 0) or 0


def _symbol(fn: Any) -> str:
    if fn is None:
        return "(none)"
    try:
        return symbol_of(fn)
    except Exception:  # a handler without a kernel symbol (a plain Python callable)
        return getattr(fn, "__qualname__", "?")


# --- !ndiskd.netadapter / !ndiskd.miniport -----------------------------------------------------------

def adapter_rows(dbg: "Engine") -> list[dict[str, Any]]:
    state = ndis_state(dbg.kernel)
    return [{"driver": _addr(a.driver), "adapter": a.address, "name": a.name} for a in state.adapters]


def adapter_detail(dbg: "Engine", a: Adapter) -> dict[str, Any]:
    c = a.counters
    driver_object = getattr(a.driver, "driver_object", None)
    devices = getattr(driver_object, "devices", None) or []
    device = getattr(a, "device_object", None) or (devices[0] if devices else None)
    bindings = [{"protocol": o.protocol.name, "driver": o.protocol.address, "open": o.address,
                 "context": _addr(o.ProtocolBindingContext)} for o in a.opens]
    pending = a.pending_oids[0] if a.pending_oids else None
    return {
        "adapter": a.address, "name": a.name, "driver": _addr(a.driver), "driver_name": a.driver_name,
        "context": _addr(a.MiniportAdapterContext), "if_index": a.if_index, "ifname": a.ifname, "index": a.index,
        "device": _addr(device), "mac": a.mac, "mtu": a.mtu, "state": a.state_name, "connected": a.media_connected,
        "speed": a.link_speed_bps, "references": 1 + len(a.opens) + a.nbls_pending + len(a.pending_oids),
        "pending_oid": OID_NAMES.get(pending.Oid, f"{pending.Oid:#x}") if pending is not None else "",
        "bindings": bindings, "outstanding_sends": a.outstanding_sends,
        "outstanding_indications": a.outstanding_indications,
        "counters": {"frames_out": c.frames_out, "bytes_out": c.bytes_out, "frames_in": c.frames_in,
                     "bytes_in": c.bytes_in, "nbls_sent": c.nbls_sent, "nbls_send_completed": c.nbls_send_completed,
                     "nbls_indicated": c.nbls_indicated, "nbls_returned": c.nbls_returned,
                     "interrupts": c.interrupts, "dpcs": c.dpcs, "oids": c.oids,
                     "low_resource_indications": c.low_resource_indications, "drops": dict(c.drops)},
    }


def find_adapter(dbg: "Engine", address: int) -> Adapter | None:
    for a in ndis_state(dbg.kernel).adapters:
        if a.address == address:
            return a
    return None


@command("!ndiskd.netadapter", "!ndiskd.miniport", area="network",
         syntax="!ndiskd.netadapter [-handle Handle | Handle]",
         summary="List network adapters, or show one adapter's miniport, state, bindings and counters",
         help="""
With no argument: the table `Driver  NetAdapter  Name` of the current host (.host switches hosts).
With a NetAdapter handle (from the table): the MINIPORT section (handle, context, driver, device
object, MAC, MTU), STATE (Running/Paused, media, references, pending OID), BINDINGS (protocols
bound, e.g. TCPIP, with their open and context), DATAPATH (frames, bytes, NBLs sent, completed,
indicated and returned, interrupts, DPCs, drops) and MORE INFORMATION.
`!ndiskd.miniport` is the same command.""")
def cmd_netadapter(dbg: "Engine", inv: Invocation) -> CommandResult:
    parsed = parse_options(inv, valued=("handle",))
    found = address_arg(dbg, inv, parsed)
    if found is None:
        rows = adapter_rows(dbg)
        for r in rows:
            dbg.note_address(addr64(r["adapter"]))
        return CommandResult("\n".join(R.netadapter_table(rows)), {"adapters": rows})
    address, at = found
    adapter = find_adapter(dbg, address)
    if adapter is None:
        raise inv.error(f"{addr64(address)} is not a NetAdapter on {dbg.current_host} "
                        "(!ndiskd.netadapter lists them)", at)
    detail = adapter_detail(dbg, adapter)
    return CommandResult("\n".join(R.netadapter_detail(detail)), detail)


# --- !ndiskd.nbl / !ndiskd.nb ----------------------------------------------------------------------------

def mdl_info(m: Any) -> dict[str, Any]:
    return {"address": m.address, "flags": m.flags, "mapped_va": m.mapped_system_va, "byte_count": m.byte_count,
            "byte_offset": m.byte_offset}


def nb_info(nb: NetBuffer) -> dict[str, Any]:
    pool = nb.NdisPoolHandle
    return {"address": nb.address, "next": _addr(nb.Next), "length": nb.DataLength, "pool": _addr(pool),
            "pool_tag": getattr(pool, "tag", "?"), "first_mdl": _addr(nb.MdlChain), "data_offset": nb.DataOffset,
            "current_mdl": _addr(nb.CurrentMdl), "current_mdl_offset": nb.CurrentMdlOffset,
            "mdls": [mdl_info(m) for m in nb.mdls()]}


def nbl_flags(dbg: "Engine", nbl: NetBufferList) -> str:
    """Flags as ndiskd names them, from the NBL's hand-offs since it was last allocated."""
    history = ndis_state(dbg.kernel).nbl_history(nbl.address)
    since: list[str] = []
    for entry in history:
        if entry.event == "Allocated":
            since = []
        since.append(entry.event)
    names = {"Allocated": "NBL_ALLOCATED", "ProtocolSent": "SENT", "SentToMiniport": "SENT_TO_MINIPORT",
             "MiniportSendCompleted": "SEND_COMPLETED", "SendCompleted": "SEND_COMPLETED",
             "Indicated": "INDICATED", "ProtocolReturned": "RETURNED", "ReturnedToMiniport": "RETURNED",
             "Freed": "FREED"}
    flags: list[str] = []
    for event in since:
        name = names.get(event, event.upper())
        if name not in flags:
            flags.append(name)
    if nbl.freed and "FREED" not in flags:
        flags.append("FREED")
    return ", ".join(flags) if flags else "[No flags set]"


def nbl_info(dbg: "Engine", nbl: NetBufferList) -> dict[str, Any]:
    source = nbl.SourceHandle
    pool = nbl.pool
    status = nbl.Status & 0xFFFFFFFF
    return {"address": nbl.address, "next": _addr(nbl.Next), "first_nb": _addr(nbl.FirstNetBuffer),
            "source": _addr(source), "source_name": getattr(source, "name", "") or getattr(source, "owner_name", ""),
            "pool": _addr(pool), "pool_tag": getattr(pool, "tag", "?"),
            "status": NDIS_STATUS_NAMES.get(status, f"{status:#010x}"), "flags": nbl_flags(dbg, nbl),
            "owner": nbl.owner, "data_length": sum(nb.DataLength for nb in nbl.nbs()),
            "nbs": [nb_info(nb) for nb in nbl.nbs()], "freed": nbl.freed}


_INFO_NAMES = {value: name for name, value in vars(C).items()
               if isinstance(value, int) and (name.endswith("NetBufferListInfo") or name in (
                   "NetBufferListCancelId", "MediaSpecificInformation", "NetBufferListFrameType",
                   "NetBufferListHashValue", "TcpRecvSegCoalesceInfo", "RscTcpTimestampDelta"))}
_CSUM_RX_BITS = [(C.NDIS_CSUM_RX_TCP_FAILED, "TcpChecksumFailed"), (C.NDIS_CSUM_RX_UDP_FAILED, "UdpChecksumFailed"),
                 (C.NDIS_CSUM_RX_IP_FAILED, "IpChecksumFailed"), (C.NDIS_CSUM_RX_TCP_SUCCEEDED, "TcpChecksumSucceeded"),
                 (C.NDIS_CSUM_RX_UDP_SUCCEEDED, "UdpChecksumSucceeded"),
                 (C.NDIS_CSUM_RX_IP_SUCCEEDED, "IpChecksumSucceeded"), (C.NDIS_CSUM_RX_LOOPBACK, "Loopback"),
                 (C.NDIS_CSUM_RX_TCP_VALUE_INVALID, "TcpChecksumValueInvalid"),
                 (C.NDIS_CSUM_RX_IP_VALUE_INVALID, "IpChecksumValueInvalid")]


def nbl_oob_info(nbl: NetBufferList) -> list[dict[str, Any]]:
    """The NBL's non-zero out-of-band entries (NetBufferListInfo[]), each decoded where we know its layout."""
    out = []
    received = isinstance(nbl.SourceHandle, Adapter)  # indicated by a miniport: the Receive view
    for index, value in enumerate(nbl.NetBufferListInfo):
        if not value:
            continue
        name = _INFO_NAMES.get(index, f"NetBufferListInfo[{index}]")
        meaning = ""
        if index == C.TcpIpChecksumNetBufferListInfo and isinstance(value, int) and received:
            meaning = " ".join(label for bit, label in _CSUM_RX_BITS if value & bit)
        elif index == C.TcpRecvSegCoalesceInfo and isinstance(value, int):
            meaning = f"CoalescedSegCount {value & 0xFFFF}, DupAckCount {value >> 16 & 0xFFFF}"
        elif index == C.RscTcpTimestampDelta and isinstance(value, int):
            meaning = f"{value} TCP timestamp ticks between the first and last coalesced segment"
        elif index == C.TcpLargeSendNetBufferListInfo and isinstance(value, int):
            meaning = f"LSOv{C.lso_type(value) + 1} MSS {C.lso_mss(value)}, TCP header at {C.lso_tcp_header_offset(value)}"
        out.append({"index": index, "name": name, "value": value if isinstance(value, int) else 0,
                    "meaning": meaning})
    return out


def nb_data_lines(nb: NetBuffer, limit: int = DATA_DUMP_LIMIT) -> list[str]:
    """`db`-style lines of the NB's data, one block per MDL piece (each at its own virtual address)."""
    out: list[str] = []
    remaining = min(nb.DataLength, limit)
    m = nb.CurrentMdl
    offset = nb.CurrentMdlOffset
    while m is not None and remaining > 0:
        take = min(m.byte_count - offset, remaining)
        if take > 0:
            data = b"".join(m.views(offset, take))
            out += format_dump("db", m.virtual_address + offset, data)
            remaining -= take
        m = m.next
        offset = 0
    if nb.DataLength > limit:
        out.append(f"... ({nb.DataLength - limit} more bytes)")
    return out


def lookup(dbg: "Engine", inv: Invocation, address: int, at: int, kind: type, what: str) -> Any:
    obj = dbg.kernel.object_at(address)
    if not isinstance(obj, kind):
        raise inv.error(f"{addr64(address)} is not a {what} on {dbg.current_host}", at)
    return obj


@command("!ndiskd.nbl", area="network",
         syntax="!ndiskd.nbl [-handle] Address [-basic] [-chain] [-info] [-data] [-log] [-NblCurrentOwner]",
         summary="Display a NET_BUFFER_LIST",
         help="""
By default the documented view: NBL and Next NBL, First NB and Source (the adapter), Flags.
  -basic            also the pool, Status, current owner and data length
  -chain            every NBL of the chain (Next), each with its NET_BUFFERs and their MDLs
  -info             the Status and the out-of-band information (NetBufferListInfo[]): checksum
                    results, LSO, RSC (CoalescedSegCount of a coalesced receive), ...
  -data             the payload of every NET_BUFFER (db format)
  -log              the NBL's history from the ownership log (like !ndiskd.nbllog -nbl Address)
  -NblCurrentOwner  the component that holds the NBL now""")
def cmd_nbl(dbg: "Engine", inv: Invocation) -> CommandResult:
    parsed = parse_options(inv, flags=("data", "chain", "log", "basic", "info", "nblcurrentowner"),
                           valued=("handle",))
    found = address_arg(dbg, inv, parsed)
    if found is None:
        raise inv.error("an NBL address is required: !ndiskd.nbl Address", 0)
    address, at = found
    first = lookup(dbg, inv, address, at, NetBufferList, "NET_BUFFER_LIST")
    chain = "chain" in parsed.flags
    nbls = list(first.chain()) if chain else [first]
    options = parsed.flags - {"chain"}
    lines: list[str] = []
    infos = []
    for nbl in nbls:
        info = nbl_info(dbg, nbl)
        infos.append(info)
        if lines:
            lines.append("")
        if nbl.freed:
            lines.append(f"{R.INDENT}(this NBL is free: back in its pool)")
        lines += R.nbl_lines(info, links=not options and not chain)
        if "basic" in parsed.flags:
            lines += R.nbl_detail_lines(info)
        if "nblcurrentowner" in parsed.flags:
            lines.append(R.pair("Current owner", info["owner"] or "(none)"))
        if chain:
            lines += R.nbl_nb_lines(info)
        for nb in info["nbs"]:
            dbg.note_address(addr64(nb["address"]))
        if "data" in parsed.flags:
            for nb in nbl.nbs():
                lines += ["", f"NET_BUFFER {R.ptr(nb.address)} ({nb.DataLength} bytes)"]
                lines += nb_data_lines(nb)
        if "info" in parsed.flags:
            oob = nbl_oob_info(nbl)
            info["info"] = oob
            lines += ["", R.pair("Status", info["status"]), "", f"{R.INDENT}Out-of-band information:"]
            lines += R.nbl_oob_lines(oob)
        if "log" in parsed.flags:
            rows = [log_row(e) for e in ndis_state(dbg.kernel).nbl_history(nbl.address)]
            lines += ["", f"{R.INDENT}History:"] + R.nbl_history_lines(rows)
    return CommandResult("\n".join(lines), infos[0] if len(infos) == 1 else infos)


@command("!ndiskd.nb", area="network", syntax="!ndiskd.nb Address [-data]",
         summary="Display a NET_BUFFER and its MDL chain",
         help="""
Shows the NB (Next, Length, source pool, first MDL, DataOffset, current MDL and its offset) and
one block per MDL of the chain (flags, MappedSystemVa, ByteCount, ByteOffset).  -data dumps the
NB's bytes.""")
def cmd_nb(dbg: "Engine", inv: Invocation) -> CommandResult:
    parsed = parse_options(inv, flags=("data", "chain"), valued=("handle",))
    found = address_arg(dbg, inv, parsed)
    if found is None:
        raise inv.error("an NB address is required: !ndiskd.nb Address", 0)
    address, at = found
    nb = lookup(dbg, inv, address, at, NetBuffer, "NET_BUFFER")
    info = nb_info(nb)
    lines = R.nb_lines(info)
    if "data" in parsed.flags:
        lines += ["", f"{R.INDENT}Data ({nb.DataLength} bytes):"] + nb_data_lines(nb)
    return CommandResult("\n".join(lines), info)


# --- !ndiskd.nbllog / !ndiskd.pendingnbls --------------------------------------------------------------

def log_row(e: Any) -> dict[str, Any]:
    return {"nbl": e.nbl, "event": e.event, "owner": e.owner, "detail": e.detail, "irql": e.irql, "cpu": e.cpu,
            "time_ns": e.time_ns, "seq": e.seq}


@command("!ndiskd.nbllog", area="network", syntax="!ndiskd.nbllog [-nbl Address] [-force]",
         summary="Show the NBL ownership log (who held each NBL, in order)",
         help="""
Every hand-off of every NBL on the current host: Allocated, ProtocolSent, SentToMiniport,
MiniportSendCompleted, SendCompleted, Indicated, ProtocolReturned, ReturnedToMiniport, Freed,
with the CPU, IRQL, new owner, virtual time and detail.  Shows the last 200 events unless -force;
-nbl Address keeps only one NBL's history.""")
def cmd_nbllog(dbg: "Engine", inv: Invocation) -> CommandResult:
    parsed = parse_options(inv, flags=("force",), valued=("nbl",), max_positional=0)
    entries = list(ndis_state(dbg.kernel).nbl_log)
    if "nbl" in parsed.values:
        text, at = parsed.values["nbl"]
        wanted = dbg.evaluate(text, inv.args_offset + at)
        entries = [e for e in entries if e.nbl == wanted]
    total = len(entries)
    limit_hit = "force" not in parsed.flags and total > NBLLOG_DEFAULT_LIMIT
    if limit_hit:
        entries = entries[-NBLLOG_DEFAULT_LIMIT:]
    rows = [log_row(e) for e in entries]
    lines = R.nbllog_lines(rows, total, limit_hit)
    if limit_hit:
        lines[-1] = f"{R.INDENT}Showing the last {NBLLOG_DEFAULT_LIMIT} of {total} events; -force shows them all."
    return CommandResult("\n".join(lines), {"events": rows, "total": total})


@command("!ndiskd.pendingnbls", area="network", syntax="!ndiskd.pendingnbls",
         summary="List NBLs a miniport or a protocol holds right now",
         help="NBLs given to the miniport and not yet send-completed, and NBLs indicated to a protocol and not\n"
              "yet returned, with who holds each (from the ownership tracker).")
def cmd_pendingnbls(dbg: "Engine", inv: Invocation) -> CommandResult:
    parse_options(inv, flags=("fullstack",), valued=("handle",), max_positional=0)
    rows = sorted(((nbl.address, holder) for nbl, holder in ndis_state(dbg.kernel).pending_nbls()))
    for address, _ in rows:
        dbg.note_address(addr64(address))
    return CommandResult("\n".join(R.pendingnbls_lines(rows)), {"pending": rows})


# --- !ndiskd.protocol / !ndiskd.oid / !ndiskd.help ----------------------------------------------------------

HANDLER_FIELDS = ("SetOptionsHandler", "BindAdapterHandlerEx", "UnbindAdapterHandlerEx",
                  "OpenAdapterCompleteHandlerEx", "CloseAdapterCompleteHandlerEx", "NetPnPEventHandler",
                  "UninstallHandler", "OidRequestCompleteHandler", "StatusHandlerEx", "ReceiveNetBufferListsHandler",
                  "SendNetBufferListsCompleteHandler", "DirectOidRequestCompleteHandler")


def protocol_info(dbg: "Engine", p: NdisProtocol) -> dict[str, Any]:
    opens = [o for o in ndis_state(dbg.kernel).opens if o.protocol is p and getattr(o, "open", True)]
    handlers = []
    for name in HANDLER_FIELDS:
        fn = getattr(p.characteristics, name, None)
        if fn is None:
            continue
        symbol = _symbol(fn)
        address = dbg.kernel.symbol_address(symbol) if "!" in symbol else 0
        handlers.append((name, address, symbol))
    return {"address": p.address, "name": p.name, "context": _addr(p.context),
            "opens": [{"open": o.address, "adapter": o.adapter.address, "adapter_name": o.adapter.name}
                      for o in opens], "handlers": handlers}


@command("!ndiskd.protocol", area="network", syntax="!ndiskd.protocol [-handle Handle | Handle]",
         summary="List protocol drivers (TCPIP) and their bindings, or show one protocol",
         help="With no argument: each protocol with its opens.  With a handle: PROTOCOL (handle, version,\n"
              "references), BINDINGS (open, miniport) and HANDLERS (the protocol's NDIS handlers and symbols).")
def cmd_protocol(dbg: "Engine", inv: Invocation) -> CommandResult:
    parsed = parse_options(inv, valued=("handle",))
    found = address_arg(dbg, inv, parsed)
    protocols = [p for p in ndis_state(dbg.kernel).protocols if getattr(p, "registered", True)]
    if found is None:
        rows = [protocol_info(dbg, p) for p in protocols]
        return CommandResult("\n".join(R.protocol_list_lines(rows)), {"protocols": rows})
    address, at = found
    match = next((p for p in protocols if p.address == address), None)
    if match is None:
        raise inv.error(f"{addr64(address)} is not a protocol on {dbg.current_host} (!ndiskd.protocol lists them)",
                        at)
    info = protocol_info(dbg, match)
    return CommandResult("\n".join(R.protocol_detail_lines(info)), info)


@command("!ndiskd.oid", area="network", syntax="!ndiskd.oid",
         summary="Show pending OID requests (and how many each adapter has handled)",
         help="ALL PENDING OIDs: the OID each NetAdapter is working on now (none in a quiet lab), then the\n"
              "number of OID requests each adapter has handled.")
def cmd_oid(dbg: "Engine", inv: Invocation) -> CommandResult:
    parse_options(inv, flags=("legacyoid", "nolimit"), valued=("handle", "miniport"), max_positional=0)
    rows = []
    recent = []
    for a in ndis_state(dbg.kernel).adapters:
        for req in a.pending_oids:
            rows.append({"adapter": a.address, "adapter_name": a.name,
                         "oid": OID_NAMES.get(req.Oid, f"{req.Oid:#x}")})
        recent.append({"adapter": a.address, "adapter_name": a.name, "count": a.counters.oids})
    return CommandResult("\n".join(R.oid_lines(rows, recent)), {"pending": rows, "handled": recent})


NDISKD_COMMANDS = (
    ("netadapter", "Show network adapters and their state"),
    ("miniport", "Alias of netadapter"),
    ("protocol", "Show protocol drivers and their bindings"),
    ("nbl", "Show a NET_BUFFER_LIST (-data dumps its payload)"),
    ("nb", "Show a NET_BUFFER and its MDLs"),
    ("nbllog", "Show the NBL ownership log"),
    ("pendingnbls", "Show NBLs held by a miniport or protocol"),
    ("oid", "Show pending OID requests"),
    ("help", "This list"),
)


@command("!ndiskd.help", area="network", syntax="!ndiskd.help", summary="List the !ndiskd commands",
         help="The NDIS extension's commands (all take addresses the others print).")
def cmd_ndiskd_help(dbg: "Engine", inv: Invocation) -> CommandResult:
    lines = ["NDIS KD EXTENSIONS", ""]
    lines += [f"    {name:<14}{text}" for name, text in NDISKD_COMMANDS]
    lines += ["", "Use `help !ndiskd.<command>` for the syntax of each."]
    return CommandResult("\n".join(lines), {"commands": [n for n, _ in NDISKD_COMMANDS]})
