"""`!nic`: the emulated NICs' paravirtual offload pass-through (stack/nic/passthrough.py).

Shows, per host, whether large sends cross the virtual switch uncut (as one
unit with "checksum partial" metadata, the way vmswitch/netvsc and virtio-net
GSO/GRO do) and why some went out as real frames; `!nic passthrough off`
turns it off (every frame real, every checksum computed) and `on` back on.
`!nic itr N` sets the NICs' interrupt throttle rate (Intel's "Interrupt Moderation Rate").
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
                     "holds": dict(sorted(nic.wire_holds.items())), "itr": itr_of(nic)})
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
    throttled = [r for r in rows if r["itr"]]
    if throttled:  # a line only once someone sets it: the default lab has no throttle
        lines += ["", "Interrupt throttle rate (at most N interrupts per second): "
                  + ", ".join(f"{r['host']} {r['itr']}/s" for r in throttled)]
    return lines


def itr_of(nic: Any) -> int:
    """Interrupts per second the throttle allows (0: no throttle)."""
    return 1_000_000_000 // nic.interrupt_throttle_ns if nic.interrupt_throttle_ns else 0


@command("!nic", area="network", syntax="!nic [passthrough on|off [Host]] | !nic itr Rate|off [Host]", mutates=True,
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
every frame real with real checksums; `!capture start` does the same while it runs.
`!nic itr 10000` (all hosts, or one host) sets the interrupt throttle rate the way Intel's adapters
do ("Interrupt Moderation Rate", ITR): the NIC raises at most that many interrupts per second, so
under load one DPC drains a larger batch and RSC builds larger units; sparse traffic still sees
only the usual moderation delay.  100 to 100000 per second; `!nic itr off` removes the throttle.""")
def cmd_nic(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if not words:
        rows = nic_rows(dbg)
        return CommandResult("\n".join(nic_lines(rows)), {"hosts": rows})
    verb, at = words[0]
    if verb.lower() == "itr":
        return _set_itr(dbg, inv, words)
    if verb.lower() != "passthrough":
        raise inv.error(f"unknown !nic action '{verb}' (passthrough, itr)", at)
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


ITR_RANGE = (100, 100_000)  # interrupts per second, the span Intel's ITR settings cover


def _set_itr(dbg: "Engine", inv: Invocation, words: list[tuple[str, int]]) -> CommandResult:
    if len(words) < 2:
        raise inv.error("say !nic itr <interrupts per second> or !nic itr off", len(inv.args))
    text, at = words[1]
    if text.lower() == "off":
        rate = 0
    else:
        rate = int(text) if text.isdigit() else dbg.evaluate(text, inv.args_offset + at)
        if not ITR_RANGE[0] <= rate <= ITR_RANGE[1]:
            raise inv.error(f"the rate must be between {ITR_RANGE[0]} and {ITR_RANGE[1]} interrupts per second", at)
    if len(words) > 3:
        raise inv.syntax_error(words[3][1])
    world = world_of(dbg)
    hosts = [host_name(dbg, inv, *words[2])] if len(words) == 3 else list(world.hosts)
    for name in hosts:
        world.host(name).nic.interrupt_throttle_ns = 1_000_000_000 // rate if rate else 0
    said = f"at most {rate} interrupts per second" if rate else "off"
    return CommandResult(f"Interrupt throttle rate is now {said} for {', '.join(hosts)}.",
                         {"hosts": hosts, "itr": rate})
