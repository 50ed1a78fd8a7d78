"""The lab around the hosts: `!lab` (topology and counters), `!fault` (link faults), `!offload`
(NIC offloads), `!capture` (pcap).

These act on the world, not on one kernel: hosts, their links to the switch,
the switch's MAC table.  Fault probabilities draw from each link's seeded
random generator, so a session with faults replays exactly.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from stack.nic import FaultConfig
from stack.nic.nic import LSO_V2_MAX_OFFLOAD_SIZE

from wskdbg.commands.registry import CommandError, CommandResult, Invocation, command, tokenize
from wskdbg.render import net as R

if TYPE_CHECKING:
    from wskdbg.engine import Engine

CAPTURE_STATE = "lab.capture"  # dbg.state key: (Capture, path)


def world_of(dbg: "Engine") -> Any:
    world = dbg.world
    if not isinstance(getattr(world, "hosts", None), dict) or not hasattr(world, "switch"):
        raise CommandError("this machine is not a lab world (no hosts on a switch)")
    return world


def host_name(dbg: "Engine", inv: Invocation, name: str, at: int) -> str:
    for host in world_of(dbg).hosts:
        if host.lower() == name.lower():
            return host
    raise inv.error(f"no host named '{name}' (hosts: {', '.join(world_of(dbg).hosts)})", at)


# --- !lab -------------------------------------------------------------------------------------------

def lab_data(dbg: "Engine") -> dict[str, Any]:
    world = world_of(dbg)
    now = dbg.scheduler.now_ns
    hosts = []
    links = []
    port_names = {}
    for name, h in world.hosts.items():
        port_names[id(h.switch_port)] = name
        hosts.append({"name": name, "ipv4": str(h.ipv4) if h.ipv4 else "-", "ipv6": str(h.ipv6) if h.ipv6 else "-",
                      "mac": h.mac, "link": h.link.name, "port": f"{world.switch.name}/{h.switch_port.name}"})
        ends = []
        for end in h.link.ends:
            c = end.counters
            ends.append({"direction": end.index, "frames_in": c.frames_in, "delivered": c.delivered,
                         "lost": c.lost, "duplicated": c.duplicated, "reordered": c.reordered,
                         "corrupted": c.corrupted, "queue_drops": c.queue_drops, "faults": R.fault_text(end.faults)})
        links.append({"name": h.link.name, "bandwidth": h.link.bandwidth_bps, "latency_ns": h.link.latency_ns,
                      "ends": ends})
    sw = world.switch
    macs = sorted((mac, entry.port.name, now - entry.last_seen_ns) for mac, entry in sw.mac_table.items())
    ports = [{"name": p.name, "rx_frames": p.counters.rx_frames, "rx_bytes": p.counters.rx_bytes,
              "tx_frames": p.counters.tx_frames, "tx_bytes": p.counters.tx_bytes, "flooded": p.counters.flooded}
             for p in sw.ports]
    capture = dbg.state.get(CAPTURE_STATE)
    cap_text = f"running to {capture[1]} ({capture[0].frames_seen} frames so far)" if capture else ""
    return {"hosts": hosts, "links": links, "capture": cap_text,
            "switch": {"name": sw.name, "forwarded": sw.forwarded_frames, "flooded": sw.flooded_frames,
                       "macs": macs, "ports": ports}}


@command("!lab", area="network", syntax="!lab",
         summary="Show the lab: hosts, addresses, MACs, links with their faults and counters, the switch",
         help="""
Hosts (IPv4/IPv6 interface addresses, MAC, link, switch port); every link direction (0: host to
switch, 1: switch to host) with its speed, latency, frames in and delivered, frames lost,
duplicated, reordered, corrupted or dropped at a full queue, and the faults set on it (!fault);
the switch's forwarded/flooded totals, learned MAC table and per-port counters; the capture.""")
def cmd_lab(dbg: "Engine", inv: Invocation) -> CommandResult:
    if inv.args:
        raise inv.syntax_error(0)
    data = lab_data(dbg)
    lines = R.lab_lines(data)
    for h in data["hosts"]:  # the structured result carries text MACs
        h["mac"] = R.mac_text(h["mac"])
    data["switch"]["macs"] = [(R.mac_text(m), port, age) for m, port, age in data["switch"]["macs"]]
    return CommandResult("\n".join(lines), data)


# --- !fault -------------------------------------------------------------------------------------------

FAULT_KEYS = {"loss": "loss", "dup": "duplicate", "duplicate": "duplicate", "reorder": "reorder",
              "corrupt": "corrupt"}
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)(%?)$")


def parse_probability(inv: Invocation, text: str, at: int) -> float:
    m = _PERCENT.match(text)
    if m is None:
        raise inv.error(f"'{text}' is not a probability (write 2% or 0.02)", at)
    value = float(m.group(1))
    if m.group(2):
        value /= 100.0
    if not 0.0 <= value <= 1.0:
        raise inv.error(f"'{text}' is outside 0..100%", at)
    return value


@command("!fault", area="network", syntax="!fault Host [loss=P] [dup=P] [reorder=P] [corrupt=P] [dir=in|out] | "
                                          "!fault clear",
         summary="Inject packet loss, duplication, reordering or corruption on a host's link",
         help="""
`!fault client loss=2% dup=1% reorder=1% corrupt=1%` sets the probabilities (percent, or a
fraction such as 0.02) on both directions of client's link; `dir=out` only on frames the host
sends (host -> switch), `dir=in` only on frames it receives.  Keys not given are 0.  Faults draw
from the link's seeded generator: the same session loses the same frames.  `!fault Host` with no
keys removes the host's faults; `!fault clear` removes every fault.  !lab shows them.""")
def cmd_fault(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if not words:
        raise inv.error("say which host: !fault Host loss=2% ... or !fault clear", 0)
    world = world_of(dbg)
    first, first_at = words[0]
    if first.lower() == "clear":
        if len(words) > 1:
            raise inv.syntax_error(words[1][1])
        world.clear_faults()
        return CommandResult("Faults cleared on every link.", {"cleared": True})
    host = host_name(dbg, inv, first, first_at)
    config = FaultConfig()
    direction: int | None = None
    for word, at in words[1:]:
        key, eq, value = word.partition("=")
        key = key.lower()
        if not eq or not value:
            raise inv.error(f"expected key=value, e.g. loss=2%, not '{word}'", at)
        value_at = at + len(key) + 1
        if key == "dir":
            if value.lower() not in ("in", "out", "both"):
                raise inv.error("dir is in, out or both", value_at)
            direction = {"out": 0, "in": 1, "both": None}[value.lower()]
            continue
        field = FAULT_KEYS.get(key)
        if field is None:
            raise inv.error(f"unknown fault '{key}' (loss, dup, reorder, corrupt, dir)", at)
        setattr(config, field, parse_probability(inv, value, value_at))
    world.set_faults(host, config, direction)
    where = {None: "both directions", 0: "frames it sends", 1: "frames it receives"}[direction]
    return CommandResult(f"{host}: faults {R.fault_text(config)} on {where} of {world.host(host).link.name}",
                         {"host": host, "direction": direction, "loss": config.loss, "duplicate": config.duplicate,
                          "reorder": config.reorder, "corrupt": config.corrupt})


# --- !offload -----------------------------------------------------------------------------------------

OFFLOAD_KEYS = ("lso", "rsc", "checksum")
_ON_OFF = {"on": True, "off": False, "1": True, "0": False, "enable": True, "disable": False}


def offload_rows(dbg: "Engine") -> list[dict[str, Any]]:
    rows = []
    for name, host in world_of(dbg).hosts.items():
        o = host.nic.offloads
        c = host.nic.counters
        rows.append({"host": name, "checksum": o.tx_checksum and o.rx_checksum, "lso": o.lso,
                     "lso_max": o.lso_max_size if o.lso else 0, "rsc": o.rsc, "lso_segments": c.lso_segments,
                     "lso_largest": c.lso_largest,
                     "rsc_units": c.rsc_units, "rsc_coalesced": c.rsc_coalesced_segments,
                     "rsc_aborts": dict(c.rsc_aborts)})
    return rows


@command("!offload", area="network",
         syntax="!offload [Host [lso=on|off] [rsc=on|off] [checksum=on|off] [lsosize=Bytes]]",
         mutates=True, summary="Show or switch each host's NIC offloads: checksum, LSO, RSC",
         help="""
`!offload` lists every host's adapter offloads - checksum (transmit fill and receive
validation), large send (LSO v2, with its largest offload) and receive segment coalescing (RSC) -
with what they did so far: frames LSO cut, the largest large send's payload, RSC units indicated,
segments coalesced into them, and why units ended early.  `!offload winsrv rsc=on lso=off`
switches them the way Windows does (Set-NetAdapterRsc, Set-NetAdapterLso): OID_TCP_OFFLOAD_PARAMETERS
goes down tcpip's binding to the miniport, which answers with an offload status indication that
tcpip takes.  `lsosize=262144` sets the adapter's LSOv2 MaxOffLoadSize (65536 as the lab boots, at
most 256 KiB): past 64 KB tcpip hands the NIC sends that large on connections with window scaling,
with IP length 0 (the NIC takes the length from the NET_BUFFER).  It is queued on the host's
kernel and happens when the machine next runs (g, or a command with /w).""")
def cmd_offload(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if not words:
        rows = offload_rows(dbg)
        return CommandResult("\n".join(R.offload_lines(rows)), {"hosts": rows})
    host = host_name(dbg, inv, *words[0])
    if dbg.scheduler.halted is not None:
        raise inv.error("the machine has bug-checked; .reboot first")
    changes: dict[str, Any] = {}
    for word, at in words[1:]:
        key, eq, value = word.partition("=")
        key = key.lower()
        if key == "lsosize":
            try:
                size = int(value, 16) if value.lower().startswith("0x") else int(value, 10)
            except ValueError:
                size = 0
            if not 0 < size <= LSO_V2_MAX_OFFLOAD_SIZE:
                raise inv.error(f"lsosize takes bytes of LSOv2 MaxOffLoadSize, 1..{LSO_V2_MAX_OFFLOAD_SIZE}, "
                                f"not '{value}'", at)
            changes["lso_max_size"] = size
            continue
        if key not in OFFLOAD_KEYS:
            raise inv.error(f"unknown offload '{key}' (lso, rsc, checksum, lsosize)", at)
        state = _ON_OFF.get(value.lower()) if eq else None
        if state is None:
            raise inv.error(f"say {key}=on or {key}=off, not '{word}'", at)
        changes[key] = state
    if not changes:
        raise inv.error("say what to switch: lso=on|off, rsc=on|off, checksum=on|off", len(inv.args))
    world_of(dbg).host(host).set_offloads(**changes)
    text = ", ".join(f"MaxOffLoadSize={v}" if k == "lso_max_size" else f"{k}={'on' if v else 'off'}"
                     for k, v in changes.items())
    return CommandResult(f"{host}: OID_TCP_OFFLOAD_PARAMETERS ({text}) queued on tcpip's binding; it takes effect "
                         "when the machine runs (g).", {"host": host, **changes})


# --- !capture -----------------------------------------------------------------------------------------

@command("!capture", area="network", syntax="!capture start File.pcap | !capture stop | !capture",
         summary="Capture every frame on the lab's links to a pcap file (for Wireshark)",
         help="""
`!capture start lab.pcap` taps every host link (each frame is recorded as it enters a link, with
its virtual timestamp); `!capture stop` writes the file and says how many frames it holds.
`!capture` alone shows the state.  A relative path is relative to the running script's folder
(or the current directory).""")
def cmd_capture(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    current = dbg.state.get(CAPTURE_STATE)
    if not words:
        if current is None:
            return CommandResult("No capture is running.", {"running": False})
        return CommandResult(f"Capturing to {current[1]}: {current[0].frames_seen} frames so far.",
                             {"running": True, "frames": current[0].frames_seen})
    verb, at = words[0]
    verb = verb.lower()
    if verb == "start":
        if len(words) != 2:
            raise inv.error("!capture start needs one file name", len(inv.args))
        if current is not None:
            raise inv.error(f"a capture to {current[1]} is already running (!capture stop first)", at)
        path = words[1][0]
        capture = world_of(dbg).capture()
        dbg.state[CAPTURE_STATE] = (capture, path)
        return CommandResult(f"Capturing every link to {path} (stop with !capture stop).", {"file": path})
    if verb == "stop":
        if len(words) != 1:
            raise inv.syntax_error(words[1][1])
        if current is None:
            raise inv.error("no capture is running", at)
        capture, path = current
        capture.stop()
        capture.detach()
        world = world_of(dbg)
        if capture in getattr(world, "captures", []):
            world.captures.remove(capture)
        del dbg.state[CAPTURE_STATE]
        target = path if os.path.isabs(path) or not dbg.script_dirs else os.path.join(dbg.script_dirs[-1], path)
        try:
            written = capture.write_pcap(target)
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
        return CommandResult(f"Wrote {written} frames to {path}.", {"file": path, "frames": written})
    raise inv.error(f"unknown capture action '{words[0][0]}' (start, stop)", at)
