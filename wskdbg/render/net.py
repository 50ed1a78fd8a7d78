"""The text of the network commands: `!ndiskd.*`, `!tcb`, `!tcpconn`, `!wsk`, `!lab` and the clients.

Renderers take plain values (dicts, tuples, ints) that the command modules
extract from the machine, and return lines; they never import `stack`.
`!ndiskd` output follows ndiskd.dll's two-column shape (label in 19
columns, value in 20), addresses in full without a backtick.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from wskdbg.render.fmt import addr64, addr64_nobt

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000

INDENT = "    "


# --- small formatters ---------------------------------------------------------------------

def ptr(value: int | None) -> str:
    """An ndiskd pointer: 16 hex digits, or NULL."""
    return "NULL" if not value else addr64_nobt(value)


def pair(label: str, value: str, label2: str = "", value2: str = "") -> str:
    """`    NBL                ffffc10a...    Next NBL           NULL` (ndiskd's two-column rows)."""
    if not label2:
        return f"{INDENT}{label:<19}{value}".rstrip()
    return f"{INDENT}{label:<19}{value.ljust(19)} {label2:<19}{value2}".rstrip()


def dec(value: int) -> str:
    return f"0n{value}"


def mac_text(mac: bytes) -> str:
    return "-".join(f"{b:02x}" for b in mac)


def ms(ns: int | None) -> str:
    """Virtual nanoseconds as milliseconds with microsecond precision: `0.081ms`."""
    if ns is None:
        return "-"
    return f"{ns / NS_PER_MS:.3f}ms"


def secs(ns: int) -> str:
    return f"{ns / NS_PER_S:.6f}s"


def speed_text(bps: int) -> str:
    for unit, scale in (("Gbps", 10 ** 9), ("Mbps", 10 ** 6), ("Kbps", 10 ** 3)):
        if bps >= scale:
            value = bps / scale
            return f"{value:g} {unit}"
    return f"{bps} bps"


def percent(p: float) -> str:
    return f"{p * 100:g}%"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], indent: str = "") -> list[str]:
    """Left-aligned columns as wide as their widest cell (two spaces apart)."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        return (indent + "  ".join(c.ljust(widths[i]) for i, c in enumerate(cells))).rstrip()

    return [line(list(headers))] + [line(r) for r in rows]


# --- !ndiskd.netadapter -----------------------------------------------------------------------

def netadapter_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """`Driver  NetAdapter  Name` (one row per adapter)."""
    out = [f"{INDENT}{'Driver':<19}{'NetAdapter':<20}Name"]
    for r in rows:
        out.append(f"{INDENT}{ptr(r['driver']):<19}{ptr(r['adapter']):<20}{r['name']}")
    if not rows:
        out.append(f"{INDENT}(no network adapters)")
    return out


def netadapter_detail(a: Mapping[str, Any]) -> list[str]:
    """The MINIPORT, STATE, BINDINGS, DATAPATH and MORE INFORMATION sections of one adapter."""
    out = ["", "MINIPORT", "", f"{INDENT}{a['name']}", "",
           pair("Ndis handle", ptr(a["adapter"])),
           pair("Ndis API version", "v6.30"),
           pair("Adapter context", ptr(a["context"])),
           pair("Driver", f"{ptr(a['driver'])} - {a['driver_name']} v6.30"),
           pair("Network interface", f"{ptr(a['adapter'] + 0x800)}   (ifIndex 0n{a['if_index']}, {a['ifname']})"),
           "",
           pair("Media type", "802.3"),
           pair("Device instance", f"ROOT\\NET\\{a['index'] - 1:04d}"),
           pair("Device object", ptr(a["device"])),
           pair("MAC address", mac_text(a["mac"])),
           pair("MTU", dec(a["mtu"])),
           "", "STATE", "",
           pair("Miniport", a["state"]),
           pair("Device PnP", "Started" if a["state"] != "Halted" else "Stopped"),
           pair("Datapath", "Normal" if a["state"] == "Running" else "Diverted"),
           pair("Interface", "Up" if a["state"] == "Running" else "Down"),
           pair("Media", f"Connected ({speed_text(a['speed'])})" if a["connected"] else "Disconnected"),
           pair("Power", "D0"),
           pair("References", dec(a["references"])),
           pair("Total resets", "0"),
           pair("Pending OID", a["pending_oid"] or "None"),
           pair("Flags", "BUS_MASTER, 64BIT_DMA, IGNORE_TOKEN_RING_ERRORS,"),
           pair("", "DESERIALIZE, SUPPORTS_MEDIA_SENSE, DOES_NOT_DO_LOOPBACK"),
           pair("PnP flags", "VIRTUAL_DEVICE, RECEIVED_START"),
           "", "BINDINGS", ""]
    out.append(f"{INDENT}{'Protocol list':<19}{'Driver':<20}{'Open':<19}Context")
    for b in a["bindings"]:
        out.append(f"{INDENT}{b['protocol']:<19}{ptr(b['driver']):<20}{ptr(b['open']):<19}{ptr(b['context'])}")
    if not a["bindings"]:
        out.append(f"{INDENT}(no protocols bound)")
    out += ["", f"{INDENT}{'Filter list':<19}{'Filter':<20}Filter context", f"{INDENT}(no filters)",
            "", "DATAPATH", ""]
    c = a["counters"]
    out += [pair("Frames sent", dec(c["frames_out"]), "Bytes sent", dec(c["bytes_out"])),
            pair("Frames received", dec(c["frames_in"]), "Bytes received", dec(c["bytes_in"])),
            pair("NBLs sent", dec(c["nbls_sent"]), "Send completed", dec(c["nbls_send_completed"])),
            pair("NBLs indicated", dec(c["nbls_indicated"]), "Returned", dec(c["nbls_returned"])),
            pair("Interrupts", dec(c["interrupts"]), "DPCs", dec(c["dpcs"])),
            pair("Pending sends", dec(a["outstanding_sends"]), "Pending receives", dec(a["outstanding_indications"])),
            pair("OID requests", dec(c["oids"]), "Low resources", dec(c["low_resource_indications"]))]
    drops = c["drops"]
    if drops:
        out.append(pair("Drops", ", ".join(f"{reason} {n}" for reason, n in sorted(drops.items()))))
    else:
        out.append(pair("Drops", "none"))
    out += ["", "MORE INFORMATION", "",
            f"{INDENT}{'Driver handlers':<38}Task offloads",
            f"{INDENT}{'Pending NBLs':<38}Pending OIDs",
            f"{INDENT}{'NBL ownership log':<38}Protocol bindings",
            f"{INDENT}(!ndiskd.minidriver, !ndiskd.pendingnbls, !ndiskd.nbllog, !ndiskd.oid, !ndiskd.protocol)"]
    return out


# --- !ndiskd.nbl / !ndiskd.nb -----------------------------------------------------------------

MDL_FLAG_NAMES = ((0x1, "MAPPED_TO_SYSTEM_VA"), (0x2, "PAGES_LOCKED"), (0x4, "SOURCE_IS_NONPAGED_POOL"),
                  (0x8, "ALLOCATED_FIXED_SIZE"), (0x10, "PARTIAL"), (0x20, "PARTIAL_HAS_BEEN_MAPPED"),
                  (0x40, "IO_PAGE_READ"), (0x80, "WRITE_OPERATION"), (0x100, "PARENT_MAPPED_SYSTEM_VA"),
                  (0x200, "FREE_EXTRA_PTES"), (0x400, "DESCRIBES_AWE"), (0x800, "IO_SPACE"),
                  (0x1000, "NETWORK_HEADER"), (0x2000, "MAPPING_CAN_FAIL"), (0x4000, "ALLOCATED_MUST_SUCCEED"),
                  (0x8000, "INTERNAL"))


def mdl_flag_text(flags: int) -> str:
    names = [name for bit, name in MDL_FLAG_NAMES if flags & bit]
    return f"{', '.join(names) or 'none'} ({flags:#x})"


def mdl_block(m: Mapping[str, Any], current: bool) -> list[str]:
    label = "MDL [current]" if current else "MDL"
    return [pair(label, ptr(m["address"]), "MDL Flags", mdl_flag_text(m["flags"])),
            pair("MappedSystemVa", ptr(m["mapped_va"]), "ByteCount", dec(m["byte_count"])),
            pair("Process", "[System process]", "ByteOffset", dec(m["byte_offset"]))]


def nb_lines(nb: Mapping[str, Any], chain: bool = True) -> list[str]:
    current = nb["current_mdl"]
    current_text = "[First MDL]" if current == nb["first_mdl"] else ptr(current)
    out = [pair("NB", ptr(nb["address"]), "Next NB", ptr(nb["next"])),
           pair("Length", dec(nb["length"]), "Source pool", f"{ptr(nb['pool'])} - {nb['pool_tag']}"),
           pair("First MDL", ptr(nb["first_mdl"]), "DataOffset", dec(nb["data_offset"])),
           pair("Current MDL", current_text, "Current MDL offset", dec(nb["current_mdl_offset"]))]
    if chain:
        for m in nb["mdls"]:
            out.append("")
            out += ["    " + line for line in mdl_block(m, m["address"] == current)]
    return out


# `!ndiskd.nbl` by default, as MS Learn documents it ("!ndiskd.nbl", Examples)::
#
#   2: kd> !ndiskd.nbl ffffdf80149524a0
#       NBL                ffffdf80149524a0    Next NBL           NULL
#       First NB           ffffdf8014952610    Source             ffffdf80140c71a0 - Microsoft Kernel Debug Network Adapter
#       Flags              INDICATED, RETURNED, NBL_ALLOCATED, PROTOCOL_020_0,
#                          PROTOCOL_200_0
#
#       Walk the NBL chain                     Dump data payload
#       Show out-of-band information
#       Review NBL history
#
# Everything else (the NET_BUFFERs and MDLs, pool, status, owner) is behind an option.
FLAGS_WRAP = 80


def wrapped_pair(label: str, words: Sequence[str]) -> list[str]:
    """A one-column row whose comma-separated value wraps under itself, as ndiskd wraps Flags."""
    lead = f"{INDENT}{label:<19}"
    lines: list[str] = []
    line = lead
    for i, word in enumerate(words):
        piece = word + ("," if i < len(words) - 1 else "")
        if line.strip() != label and len(line) + 1 + len(piece) > FLAGS_WRAP:
            lines.append(line.rstrip())
            line = " " * len(lead)
        line += piece if line.endswith(" ") else " " + piece
    lines.append(line.rstrip())
    return lines


def nbl_lines(n: Mapping[str, Any], links: bool = True) -> list[str]:
    """The documented default view of one NBL."""
    out = [pair("NBL", ptr(n["address"]), "Next NBL", ptr(n["next"])),
           pair("First NB", ptr(n["first_nb"]), "Source", f"{ptr(n['source'])} - {n['source_name']}"
                if n["source"] else "NULL")]
    out += wrapped_pair("Flags", [f.strip() for f in n["flags"].split(",") if f.strip()] or ["[No flags set]"])
    if links:
        out += ["", f"{INDENT}{'Walk the NBL chain':<39}Dump data payload",
                f"{INDENT}Show out-of-band information", f"{INDENT}Review NBL history"]
    return out


def nbl_detail_lines(n: Mapping[str, Any]) -> list[str]:
    """Pool, status, current owner and data length (the emulator's extra fields, -basic)."""
    return [pair("Pool", f"{ptr(n['pool'])} - {n['pool_tag']}", "Status", n["status"]),
            pair("Current owner", n["owner"] or "(none)", "Data length", dec(n["data_length"]))]


def nbl_nb_lines(n: Mapping[str, Any]) -> list[str]:
    """Each NET_BUFFER of the NBL with its MDL chain (-chain)."""
    out: list[str] = []
    for nb in n["nbs"]:
        out.append("")
        out += nb_lines(nb)
    return out


def nbl_oob_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    if not rows:
        return [f"{INDENT}(every NetBufferListInfo entry is zero)"]
    return [f"{INDENT}{r['name']:<34}{r['value']:#018x}  {r['meaning']}".rstrip() for r in rows]


def nbl_history_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    if not rows:
        return [f"{INDENT}No history for this NBL (the ownership log has no entries for it)."]
    return [f"{INDENT}{r['event']:<22} {r['owner']:<10} {r['detail']}".rstrip() for r in rows]


# --- !ndiskd.nbllog / pendingnbls / protocol / oid ---------------------------------------------------

IRQL_SHORT = {0: "", 1: ", IRQL=APC", 2: ", IRQL=DPC"}


def nbllog_lines(rows: Sequence[Mapping[str, Any]], total: int, limit_hit: bool) -> list[str]:
    out = [f"{INDENT}{'NBL':<19}{'Event':<24}{'CPU':<16}{'Owner':<10}{'Time':<14}Detail"]
    for r in rows:
        irql = r["irql"]
        cpu = f"CPU {r['cpu']}" + IRQL_SHORT.get(irql, f", IRQL={irql}")
        out.append(f"{INDENT}{ptr(r['nbl']):<19}{r['event']:<24}{cpu:<16}{r['owner']:<10}"
                   f"{secs(r['time_ns']):<14}{r['detail']}".rstrip())
    if not rows:
        out.append(f"{INDENT}(the NBL log is empty)")
    if limit_hit:
        out.append(f"{INDENT}Stopped after {len(rows)} of {total} events; use -force to see them all.")
    return out


def pendingnbls_lines(rows: Sequence[tuple[int, str]]) -> list[str]:
    out = ["PHASE 1/3: Found 1 NBL pool.", "PHASE 2/3: Found 0 freed NBLs.",
           f"PHASE 3/3: Found {len(rows)} pending NBL{'s' if len(rows) != 1 else ''}.", "",
           f"{INDENT}{'Pending Nbl':<19}Currently held by"]
    for address, holder in rows:
        out.append(f"{INDENT}{ptr(address):<19}{holder}")
    if not rows:
        out.append(f"{INDENT}(no NBLs are held by a miniport or a protocol)")
    return out


def protocol_list_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for p in rows:
        out.append(f"{INDENT}{ptr(p['address'])} - {p['name']}")
        for o in p["opens"]:
            out.append(f"{INDENT}  {ptr(o['open'])} - {o['adapter_name']}")
    if not rows:
        out.append(f"{INDENT}(no protocols registered)")
    return out


def protocol_detail_lines(p: Mapping[str, Any]) -> list[str]:
    out = ["", "PROTOCOL", "", f"{INDENT}{p['name']}", "",
           pair("Ndis handle", ptr(p["address"])),
           pair("Ndis API version", "v6.30"),
           pair("Driver context", ptr(p["context"])),
           pair("Reference count", dec(1 + len(p["opens"]))),
           pair("Flags", "[No flags set]"),
           "", "BINDINGS", "",
           f"{INDENT}{'Open':<19}{'Miniport':<20}Miniport Name"]
    for o in p["opens"]:
        out.append(f"{INDENT}{ptr(o['open']):<19}{ptr(o['adapter']):<20}{o['adapter_name']}")
    out += ["", "HANDLERS", "", f"{INDENT}{'Protocol handler':<38}Function pointer   Symbol"]
    for name, address, symbol in p["handlers"]:
        out.append(f"{INDENT}{name:<38}{ptr(address):<19}{symbol}")
    return out


def oid_lines(rows: Sequence[Mapping[str, Any]], recent: Sequence[Mapping[str, Any]]) -> list[str]:
    out = ["ALL PENDING OIDs", ""]
    if rows:
        for r in rows:
            out += [f"{INDENT}NetAdapter {ptr(r['adapter'])} - {r['adapter_name']}",
                    f"{INDENT}    Current OID        {r['oid']}"]
    else:
        out.append(f"{INDENT}No OIDs are pending.")
    out += ["", "OID REQUESTS SO FAR (per NetAdapter)", ""]
    for r in recent:
        out.append(f"{INDENT}{ptr(r['adapter'])} - {r['adapter_name']}: {r['count']} OID requests")
    return out


# --- !tcb, !tcpconn, !wsk ---------------------------------------------------------------------------

def _rel(value: int, base: int) -> str:
    return f"{value} (rel {(value - base) & 0xFFFFFFFF})"


def tcb_lines(s: Mapping[str, Any], now_ns: int) -> list[str]:
    """One TCP control block: 4-tuple, state, send and receive sequence space, congestion, RTT, timers."""
    iss, irs = s.get("iss", 0) or 0, s.get("irs", 0) or 0
    out = [f"TCB {addr64(s['address'])}  {s['local']} -> {s['remote'] or '*'}  {s['state']}"
           + ("  (closed by its owner)" if s.get("closed") else "")]
    if s.get("time_wait_tcb"):  # only the time-wait TCB is left: 4-tuple, sequence numbers, 2*MSL timer
        at = (s.get("timers") or {}).get("time_wait") or 0
        out.append(f"{INDENT}time-wait TCB  snd_nxt {_rel(s['snd_nxt'], iss)}  rcv_nxt {s['rcv_nxt']}"
                   f"  segments sent {s.get('segments_sent', 0)}  received {s.get('segments_received', 0)}")
        out.append(f"{INDENT}Timers         time_wait in {ms(at - now_ns)}")
        return out
    if "snd_una" not in s:
        out.append(f"{INDENT}(no connection yet: the endpoint has not connected)")
        return out
    rcv_wscale = s.get("rcv_wscale")
    snd_wscale = s.get("snd_wscale")
    srtt = s.get("srtt_ns")
    out += [
        f"{INDENT}Interface      {s.get('interface') or '-'}",
        f"{INDENT}Send           iss {iss}  snd_una {_rel(s['snd_una'], iss)}  snd_nxt {_rel(s['snd_nxt'], iss)}"
        f"  snd_max {_rel(s['snd_max'], iss)}",
        f"{INDENT}               snd_wnd {s['snd_wnd']}  wscale {snd_wscale if snd_wscale is not None else '-'}"
        f"  queued {s.get('send_queued', 0)}  sends outstanding {s.get('sends_outstanding', 0)}",
        f"{INDENT}Receive        irs {irs}  rcv_nxt {_rel(s['rcv_nxt'], irs)}  rcv_wnd {s['rcv_wnd']}"
        f"  wscale {rcv_wscale if rcv_wscale is not None else '-'}",
        f"{INDENT}               ready {s.get('recv_available', 0)}  out-of-order {s.get('ooo_bytes', 0)}"
        f"  receives posted {s.get('receives_posted', 0)}  NBLs held {s.get('nbls_held', 0)}"
        f"  buffer {s.get('recv_buffer', 0)} (auto-tuned)",
        f"{INDENT}Options        mss {s['mss']}  timestamps {_onoff(s.get('timestamps'))}  sack {_onoff(s.get('sack'))}"
        f"  nodelay {_onoff(s.get('nodelay'))}",
        f"{INDENT}Congestion     cwnd {s['cwnd']}  ssthresh {_big(s['ssthresh'])}"
        f"  {'in recovery' if s.get('in_recovery') else 'not in recovery'}"
        + (f"  provider {(s.get('congestion') or {}).get('provider')}" if s.get("congestion") else ""),
        *congestion_lines(s.get("congestion"), s["cwnd"], now_ns),
        f"{INDENT}RTT            srtt {ms(srtt) if srtt is not None else '-'}"
        f"  rttvar {ms(s.get('rttvar_ns')) if srtt is not None else '-'}"
        f"  rto {ms(s.get('rto_ns'))}",
        f"{INDENT}Segments       sent {s.get('segments_sent', 0)}  received {s.get('segments_received', 0)}"
        f"  bytes acked {s.get('bytes_acked', 0)}  bytes received {s.get('bytes_received', 0)}",
        f"{INDENT}Retransmit     retransmissions {s.get('retransmissions', 0)}  timeouts {s.get('timeouts', 0)}"
        f"  fast retransmits {s.get('fast_retransmits', 0)}  dup acks {s.get('dup_acks', 0)}",
    ]
    board = s.get("sack_scoreboard")
    if board is not None:  # only when SACK was negotiated
        out.append(f"{INDENT}SACK           scoreboard {board['blocks']} blocks, {board['sacked_bytes']} bytes;"
                   f"  pipe {board['pipe']}  sack retransmits {s.get('sack_retransmissions', 0)}"
                   + ("  in SACK recovery" if board.get("in_sack_recovery") else ""))
    rack = s.get("rack")
    if rack is not None:  # RACK-TLP (RFC 8985), on when SACK was negotiated
        out += _rack_lines(rack, iss, now_ns)
    timers = s.get("timers") or {}
    armed = [f"{name} in {ms(at - now_ns)}" for name, at in timers.items() if at]
    out.append(f"{INDENT}Timers         {', '.join(armed) if armed else 'none armed'}")
    return out


def congestion_lines(c: Mapping[str, Any] | None, cwnd: int, now_ns: int) -> list[str]:
    """CUBIC's state (RFC 9438: W_max, K, the epoch, W_cubic(t) and W_est) and, during a SACK
    recovery, PRR's counters (RFC 6937) - the lab's addition to !tcb, named as the RFCs name them."""
    from stack.tcpip.tcp.cubic import curve_at
    if not c:
        return []
    out = []
    cubic = c.get("cubic")
    if cubic is not None:
        start = cubic.get("epoch_start_ns")
        if start is None and cubic["w_max"] and cubic.get("after_timeout"):
            # RFC 9438 4.8: after a timeout the next stage's W_max is its own cwnd_epoch (K = 0)
            out.append(f"{INDENT}CUBIC          W_max {cubic['w_max']} until the next epoch, which starts with"
                       f" W_max = cwnd_epoch and K 0 (after a timeout)  no epoch (slow start)")
        elif start is None and cubic["w_max"]:
            out.append(f"{INDENT}CUBIC          W_max {cubic['w_max']}  no epoch (slow start or loss recovery)")
        elif start is not None:
            w, region = curve_at(cubic, cwnd, now_ns)
            out.append(f"{INDENT}CUBIC          W_max {cubic['w_max']}  K {secs(cubic['k_ns'])}  epoch began {ms(now_ns - start)}"
                       f" ago at cwnd {cubic['cwnd_epoch']}")
            out.append(f"{INDENT}               W_cubic(t) {w}  W_est {cubic['w_est']}  region {region}")
    prr = c.get("prr")
    if prr is not None:
        out.append(f"{INDENT}PRR            RecoverFS {prr['recover_fs']}  prr_delivered {prr['prr_delivered']}"
                   f"  prr_out {prr['prr_out']}  sndcnt {prr['sndcnt']}")
    return out


def _rack_lines(r: Mapping[str, Any], iss: int, now_ns: int) -> list[str]:
    """RACK's newest delivered segment (RACK.xmit_ts / end_seq), the reordering window, the TLP
    probe timer and episode, and what they recovered (the lab's own lines; RFC 8985's names)."""
    xmit = r.get("xmit_ts")
    newest = (f"xmit_ts {ms(xmit)} ({ms(now_ns - xmit)} ago)  end_seq {_rel(r['end_seq'], iss)}  rtt {ms(r['rtt_ns'])}"
              if xmit is not None else "no segment delivered yet")
    pto_at = r.get("pto")
    episode = r.get("tlp_end_seq")
    return [
        f"{INDENT}RACK           {newest}",
        f"{INDENT}               reo_wnd {ms(r['reo_wnd_ns'])} (x{r['reo_wnd_mult']} min_rtt/4, min_rtt {ms(r['min_rtt_ns'])})"
        f"  {'reordering seen' if r.get('reordering_seen') else 'no reordering seen'}",
        f"{INDENT}TLP            "
        + (f"PTO armed, fires in {ms(pto_at - now_ns)} (PTO {ms(r['pto_ns'])})" if pto_at else "PTO not armed")
        + (f"  probe out: end_seq {_rel(episode, iss)} ({'resent' if r.get('tlp_is_retrans') else 'new data'})"
           if episode is not None else "  no probe out"),
        f"{INDENT}Loss recovery  RACK marked lost {r['lost_marked']}  RACK retransmits {r['rack_retransmissions']}"
        f"  TLP probes {r['tlp_probes']}  TLP recoveries {r['tlp_recoveries']}  DSACKs {r['dsacks']}",
    ]


def _onoff(v: Any) -> str:
    return "on" if v else "off"


def _big(v: int) -> str:
    return "inf" if v >= 0x7FFFFFFF else str(v)


def tcpconn_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """`netstat -ano`-like: listeners, connections and UDP endpoints of one host."""
    body = [(r["proto"], r["local"], r["remote"], r["state"], addr64(r["address"]) if r["address"] else "-")
            for r in rows]
    lines = table(("Proto", "Local Address", "Foreign Address", "State", "Object"), body, indent="  ")
    if not rows:
        lines.append("  (no endpoints)")
    return lines


EVENT_MASK_NAMES = ((0x100, "RECEIVE_FROM"), (0x200, "ACCEPT"), (0x10, "SEND_BACKLOG"), (0x40, "RECEIVE"),
                    (0x80, "DISCONNECT"))


def event_mask_text(mask: int) -> str:
    names = [name for bit, name in EVENT_MASK_NAMES if mask & bit]
    return f"{mask:#x} ({', '.join(names)})" if names else f"{mask:#x}"


def family_text(family: int) -> str:
    return {2: "AF_INET", 23: "AF_INET6"}.get(family, str(family))


def wsk_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    body = [(addr64(r["address"]), r["category"], r["state"], family_text(r["family"]), r["local"] or "-",
             r["remote"] or "-", r["owner"]) for r in rows]
    lines = table(("Socket", "Category", "State", "Family", "Local", "Remote", "Client"), body)
    if not rows:
        lines.append("(no WSK sockets)")
    return lines


def wsk_detail(r: Mapping[str, Any]) -> list[str]:
    return [f"WSK socket {addr64(r['address'])}",
            f"{INDENT}Category         {r['category']}",
            f"{INDENT}State            {r['state']}",
            f"{INDENT}Family           {family_text(r['family'])}",
            f"{INDENT}Local address    {r['local'] or '-'}",
            f"{INDENT}Remote address   {r['remote'] or '-'}",
            f"{INDENT}Client           {r['owner']}  (context {addr64(r['client_context'])})",
            f"{INDENT}Event mask       {event_mask_text(r['event_mask'])}",
            f"{INDENT}Bytes sent       {r['bytes_sent']}",
            f"{INDENT}Bytes received   {r['bytes_received']}",
            f"{INDENT}Transport object {addr64(r['endpoint']) if r.get('endpoint') else '-'}"
            + ("  (!tcb " + addr64(r["endpoint"]) + ")" if r.get("endpoint") and r["category"].lower() == "connection" else "")]


# --- !neighbors, !route, !ipstats, !copies ------------------------------------------------------------

def neighbor_lines(interfaces: Sequence[Mapping[str, Any]]) -> list[str]:
    out: list[str] = []
    for iface in interfaces:
        for title, rows in (("ARP", iface["arp"]), ("ND", iface["nd"])):
            if out:
                out.append("")
            out.append(f"Interface {iface['name']} ({title} cache)")
            if rows:
                out += table(("Internet Address", "Physical Address", "State", "Queued"),
                             [(r["address"], r["mac"], r["state"], r["queued"]) for r in rows], indent="  ")
            else:
                out.append("  (empty)")
    return out


def route_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for version, title in ((4, "IPv4 Route Table"), (6, "IPv6 Route Table")):
        if out:
            out.append("")
        out += [title, "=" * 60]
        sel = [r for r in rows if r["version"] == version]
        out += table(("Network Destination", "Gateway", "Interface", "Metric"),
                     [(r["prefix"], r["gateway"], r["interface"], r["metric"]) for r in sel])
        if not sel:
            out.append("(none)")
    return out


_ACRONYMS = {"ipv4": "IPv4", "ipv6": "IPv6", "arp": "ARP", "nd": "ND", "icmp": "ICMP", "udp": "UDP", "tcp": "TCP",
             "lso": "LSO", "nbls": "NBLs", "nbl": "NBL"}


# Counters that `netstat -s` names in words of its own (the fragmentation lines of IPv4/IPv6 Statistics).
_LABELS = {f"ipv{v}_{name}": label for v in (4, 6) for name, label in (
    ("reassembly_required", "Reassembly Required"), ("reassembly_successful", "Reassembly Successful"),
    ("reassembly_failures", "Reassembly Failures"), ("datagrams_fragmented", "Datagrams Successfully Fragmented"),
    ("fragmentation_failures", "Datagrams Failing Fragmentation"), ("fragments_created", "Fragments Created"))}


def stat_label(name: str) -> str:
    label = _LABELS.get(name)
    if label is not None:
        return label
    words = [_ACRONYMS.get(w, w) for w in name.split("_")]
    first = words[0]
    return " ".join([first[:1].upper() + first[1:]] + words[1:])


def _fragment_counters(version: int) -> tuple[str, ...]:
    return tuple(f"ipv{version}_{name}" for name in ("reassembly_required", "reassembly_successful",
                                                     "reassembly_failures", "datagrams_fragmented",
                                                     "fragmentation_failures", "fragments_created"))


# `netstat -s` on Windows prints the RFC 1213 TCP MIB in these words, label padded to 36:
#   TCP Statistics for IPv4
#
#     Active Opens                        = 7616
#     Passive Opens                       = 96
#     Failed Connection Attempts          = 271
#     Reset Connections                   = 2204
#     Current Connections                 = 14
#     Segments Received                   = 1207542
#     Segments Sent                       = 865406
#     Segments Retransmitted              = 1915
# (both families are counted together here); the lab's own lines follow, marked as such.
TCP_STATISTICS = (
    ("Active Opens", "tcp_active_opens"),
    ("Passive Opens", "tcp_passive_opens"),
    ("Failed Connection Attempts", "tcp_failed_connection_attempts"),
    ("Reset Connections", "tcp_reset_connections"),
    ("Current Connections", "tcp_current_connections"),
    ("Segments Received", "tcp_segments_received"),
    ("Segments Sent", "tcp_segments_sent"),
    ("Segments Retransmitted", "tcp_segments_retransmitted"),
)
TCP_LAB_STATISTICS = (
    ("Resets Sent", "tcp_resets_sent"),
    ("Timeout Retransmissions", "tcp_timeout_retransmissions"),
    ("RACK Retransmissions", "tcp_rack_retransmissions"),
    ("Tail Loss Probes", "tcp_tlp_probes"),
    ("Tail Loss Probe Recoveries", "tcp_tlp_recoveries"),
    ("SYN Queue Drops", "tcp_syn_queue_drops"),
    ("SYN Attack Protection Activations", "tcp_syn_protection_activations"),
    ("SYN Cookie Connections", "tcp_syn_cookie_connections"),
    ("Connections Refused (backlog full)", "tcp_backlog_refusals"),
    ("Connections in TIME_WAIT", "tcp_time_wait_connections"),
    ("Time-Wait TCBs Reclaimed Early", "tcp_time_wait_reclaimed"),
    ("Dynamic Ports in Use", "tcp_dynamic_ports_in_use"),
    ("Dynamic Ports Free", "tcp_dynamic_ports_free"),
    ("Connect Failures (no dynamic port)", "tcp_port_exhaustion_failures"),
)


def tcp_statistics_lines(c: Mapping[str, Any]) -> list[str]:
    out = ["TCP Statistics for IPv4 and IPv6", ""]
    out += [f"  {label:<36}= {c[name]}" for label, name in TCP_STATISTICS if name in c]
    out += ["", "TCP Statistics (lab: resets, loss recovery, SYN attack protection, backlog, time-wait, dynamic ports)",
            ""]
    out += [f"  {label:<36}= {c[name]}" for label, name in TCP_LAB_STATISTICS if name in c]
    out.append("")
    return out


def ipstats_lines(c: Mapping[str, Any]) -> list[str]:
    """`netstat -s`-like counters plus drops by (layer, reason)."""
    groups = (
        ("Frames", ("frames_received", "frames_sent")),
        ("IPv4", ("ipv4_received", "ipv4_sent") + _fragment_counters(4)),
        ("IPv6", ("ipv6_received", "ipv6_sent") + _fragment_counters(6)),
        ("ARP / ND", ("arp_requests_sent", "arp_replies_sent", "arp_received", "nd_solicitations_sent",
                      "nd_advertisements_sent", "nd_received")),
        ("ICMP", ("icmp_received", "icmp_sent", "echo_replies_sent", "unreachables_sent", "time_exceeded_sent")),
        ("UDP", ("udp_received", "udp_sent")),
        ("Offload and buffers", ("lso_sends", "checksum_offload_sends", "nbls_held", "nbl_copies")),
        ("Loopback", ("loopback_sent", "loopback_received", "loopback_bytes")),
    )
    out: list[str] = []
    for title, names in groups:
        out.append(f"{title} Statistics")
        for name in names:
            if name in c:
                label = stat_label(name)
                out.append(f"  {label:<34}= {c[name]}")
        out.append("")
        if title == "UDP":
            out += tcp_statistics_lines(c)
    drops: Mapping[str, int] = c.get("drops", {})  # type: ignore[assignment]
    out.append("Drops (layer/reason)")
    if drops:
        for key, n in sorted(drops.items()):
            out.append(f"  {key:<34}= {n}")
    else:
        out.append("  (none)")
    return out


def copies_lines(rows: Sequence[tuple[str, int, int]]) -> list[str]:
    body = [(reason, copies, nbytes) for reason, copies, nbytes in rows]
    out = table(("Reason", "Copies", "Bytes"), body)
    total_c = sum(r[1] for r in rows)
    total_b = sum(r[2] for r in rows)
    out.append(f"Total: {total_c} copies, {total_b} bytes")
    return out


# --- !lab ---------------------------------------------------------------------------------------

def lab_lines(lab: Mapping[str, Any]) -> list[str]:
    out = ["Hosts"]
    out += table(("Name", "IPv4", "IPv6", "MAC", "Link", "Switch port"),
                 [(h["name"], h["ipv4"], h["ipv6"], mac_text(h["mac"]), h["link"], h["port"]) for h in lab["hosts"]],
                 indent="  ")
    out += ["", "Links (direction 0: host -> switch, 1: switch -> host)"]
    rows = []
    for link in lab["links"]:
        for end in link["ends"]:
            rows.append((link["name"], end["direction"], speed_text(link["bandwidth"]), f"{link['latency_ns']}ns",
                         end["frames_in"], end["delivered"], end["lost"], end["duplicated"], end["reordered"],
                         end["corrupted"], end["queue_drops"], end["faults"]))
    out += table(("Link", "Dir", "Speed", "Latency", "In", "Delivered", "Lost", "Dup", "Reord", "Corrupt", "QDrop",
                  "Faults"), rows, indent="  ")
    sw = lab["switch"]
    out += ["", f"Switch {sw['name']}: forwarded {sw['forwarded']}, flooded {sw['flooded']}",
            "  MAC table"]
    if sw["macs"]:
        out += table(("MAC", "Port", "Age"), [(mac_text(m), port, ms(age)) for m, port, age in sw["macs"]],
                     indent="    ")
    else:
        out.append("    (empty)")
    out += table(("Port", "Rx frames", "Rx bytes", "Tx frames", "Tx bytes", "Flooded"),
                 [(p["name"], p["rx_frames"], p["rx_bytes"], p["tx_frames"], p["tx_bytes"], p["flooded"])
                  for p in sw["ports"]], indent="  ")
    cap = lab.get("capture")
    out += ["", f"Capture: {cap}" if cap else "Capture: off"]
    return out


def fault_text(f: Any) -> str:
    parts = [f"{name}={percent(getattr(f, attr))}" for name, attr in
             (("loss", "loss"), ("dup", "duplicate"), ("reorder", "reorder"), ("corrupt", "corrupt"))
             if getattr(f, attr)]
    return " ".join(parts) if parts else "none"


def offload_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """!offload: one line per host's adapter, then what each engine did."""
    def on(flag: bool) -> str:
        return "on" if flag else "off"

    out = [f"{'Host':<10}{'Checksum':<10}{'LSO':<14}{'RSC':<5}{'LSO frames':>12}{'largest':>9}{'RSC units':>11}"
           f"{'coalesced':>11}  ended early"]
    for r in rows:
        lso = f"on ({r['lso_max']})" if r["lso"] else "off"
        aborts = ", ".join(f"{why} {n}" for why, n in sorted(r["rsc_aborts"].items())) or "-"
        out.append(f"{r['host']:<10}{on(r['checksum']):<10}{lso:<14}{on(r['rsc']):<5}{r['lso_segments']:>12}"
                   f"{r['lso_largest']:>9}{r['rsc_units']:>11}{r['rsc_coalesced']:>11}  {aborts}")
    return out
