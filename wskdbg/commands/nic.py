"""`!nic`: the emulated NICs' paravirtual offload pass-through (stack/nic/passthrough.py).

Shows, per host, whether large sends cross the virtual switch uncut (as one
unit with "checksum partial" metadata, the way vmswitch/netvsc and virtio-net
GSO/GRO do) and why some went out as real frames; `!nic passthrough off`
turns it off (every frame real, every checksum computed) and `on` back on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wskdbg.commands.lab import host_name, world_of
from wskdbg.commands.registry import CommandResult, Invocation, command, tokenize

if TYPE_CHECKING:
    from wskdbg.engine import Engine

_ON_OFF = {"on": True, "off": False}


def nic_rows(dbg: "Engine") -> list[dict[str, Any]]:
    rows = []
    for name, host in world_of(dbg).hosts.items():
        nic = host.nic
        pt = nic.passthrough_counters
        rows.append({"host": name, "nic": nic.name, "passthrough": nic.passthrough, "units": pt.units,
                     "segments": pt.segments, "fallbacks": dict(sorted(pt.fallbacks.items())),
                     "holds": dict(sorted(nic.wire_holds.items()))})
    return rows


def nic_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["Paravirtual offload pass-through (large sends that crossed the switch uncut)", "",
             f"{'Host':<10} {'NIC':<12} {'State':<5} {'Units':>7} {'Segments':>9}  Real frames because"]
    for r in rows:
        why = ", ".join(f"{k} {v}" for k, v in r["fallbacks"].items()) or "-"
        state = "on" if r["passthrough"] else "off"
        if r["holds"]:
            state += "*"
        lines.append(f"{r['host']:<10} {r['nic']:<12} {state:<5} {r['units']:>7} {r['segments']:>9}  {why}")
    return lines


@command("!nic", area="network", syntax="!nic [passthrough on|off [Host]]", mutates=True,
         summary="Show or switch the NICs' paravirtual offload pass-through (large sends cross the switch uncut)",
         help="""
`!nic` lists, per host, whether pass-through is on, how many large sends crossed the virtual switch
as one unit (and how many segments they stood for), and why others went out as real frames:
capture (a tap on a link or switch port), fault (fault injection), frame_sink (the TAP bridge or
another frame-only port), flood (unknown destination), queue (a link queue would drop one of its
frames), receiver_offloads (the receiver has no receive checksum offload), off.
Above NDIS nothing differs: the same NBLs with the same RSC info at the same virtual times; below
it the unit's frames are built only when someone reads them and their TCP checksums are never
computed ("checksum partial" / "data valid").  `!nic passthrough off` (all hosts, or one host) makes
every frame real with real checksums; `!capture start` does the same while it runs.""")
def cmd_nic(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if not words:
        rows = nic_rows(dbg)
        return CommandResult("\n".join(nic_lines(rows)), {"hosts": rows})
    verb, at = words[0]
    if verb.lower() != "passthrough":
        raise inv.error(f"unknown !nic action '{verb}' (passthrough)", at)
    if len(words) < 2 or words[1][0].lower() not in _ON_OFF:
        raise inv.error("say !nic passthrough on or !nic passthrough off", len(inv.args))
    state = _ON_OFF[words[1][0].lower()]
    if len(words) > 3:
        raise inv.syntax_error(words[3][1])
    world = world_of(dbg)
    hosts = [host_name(dbg, inv, *words[2])] if len(words) == 3 else list(world.hosts)
    for name in hosts:
        world.host(name).nic.passthrough = state
    text = "on" if state else "off"
    return CommandResult(f"Pass-through is now {text} for {', '.join(hosts)}.", {"hosts": hosts, "passthrough": state})
