"""`!nic`: the emulated NICs' paravirtual offload pass-through (stack/nic/passthrough.py).

Shows, per host, whether large sends cross the virtual switch uncut (as one
unit with "checksum partial" metadata, the way vmswitch/netvsc and virtio-net
GSO/GRO do) and why some went out as real frames; `!nic passthrough off`
turns it off (every frame real, every checksum computed) and `on` back on.
`!nic itr adaptive|off|minimal|low|medium|high|extreme|N` sets the NICs' "Interrupt Moderation
Rate" (Intel's ITR, stack/nic/itr.py); `!nic` shows each NIC's setting, the Adaptive class and rate
it is at now, and the interrupts it has taken.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from wskdbg.commands.lab import host_name, world_of
from stack.ndis.interrupt_moderation import moderation_enabled
from stack.nic.itr import ADAPTIVE, FIXED_SETTINGS, OFF, RATE_RANGE, fixed_interval_ns, setting_name
from wskdbg.commands.registry import CommandError, CommandResult, Invocation, command, tokenize

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
                     "holds": dict(sorted(nic.wire_holds.items())), "itr": itr_of(nic),
                     "moderation": moderation_of(nic), "drops": dict(sorted(nic.counters.drops.items()))})
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
    return lines + [""] + moderation_lines(rows) + drop_lines(rows)


def drop_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Frames a NIC itself dropped (no_rx_buffer: no receive buffer posted; runt, oversize, filtered...),
    which no link counts: shown when there are any."""
    dropped = [r for r in rows if any(r["drops"].values())]
    if not dropped:
        return []
    lines = ["", "Receive drops at the NIC (frames that reached it and were not indicated)", ""]
    for r in dropped:
        lines.append(f"{r['host']:<10} " + ", ".join(f"{k} {v}" for k, v in r["drops"].items() if v))
    return lines


def moderation_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["Interrupt moderation (*InterruptModeration; the rate is Intel's \"Interrupt Moderation Rate\")", "",
             f"{'Host':<10} {'*InterruptModeration':<21} {'Rate':<9} {'Class now':<15} {'Ints/s now':>10}  {'Interrupts':>10}"]
    for r in rows:
        m = r["moderation"]
        now = f"{m['rate']}" if m["rate"] else "no limit"
        lines.append(f"{r['host']:<10} {m['keyword']:<21} {m['setting']:<9} {m['class'] or '-':<15} {now:>10}  "
                     f"{m['interrupts']:>10}")
    return lines


def itr_of(nic: Any) -> int:
    """Interrupts per second the throttle allows now (0: no throttle)."""
    if nic.itr_adaptive is not None:
        return nic.itr_adaptive.rate
    return 1_000_000_000 // nic.interrupt_throttle_ns if nic.interrupt_throttle_ns else 0


def moderation_of(nic: Any) -> dict[str, Any]:
    """One NIC's moderation as the debugger shows it: the standardized keyword's value (Windows only knows
    Enabled/Disabled), the vendor's rate setting, the Adaptive class now, interrupts taken."""
    adaptive = nic.itr_adaptive
    setting = nic.itr_setting
    enabled = moderation_enabled(nic)  # what OID_GEN_INTERRUPT_MODERATION's query answers too
    return {"keyword": "1 (Enabled)" if enabled else "0 (Disabled)", "setting": str(setting),
            "class": adaptive.latency_class if adaptive is not None else None, "rate": itr_of(nic),
            "interrupts": nic.counters.interrupts}


@command("!nic", area="network",
         syntax="!nic [passthrough on|off [Host]] | !nic itr adaptive|off|minimal|low|medium|high|extreme|Rate [Host]"
                " | !nic moderation on|off [Host]",
         mutates=True,
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
`!nic itr` shows only the interrupt moderation table.  `!nic itr Setting` (all hosts, or one host) sets the "Interrupt Moderation Rate" the way Intel's
adapters have it (ITR, the shortest interval between two interrupts): under load one DPC drains a
larger batch and RSC builds larger units; a lone packet after a quiet spell still interrupts after
the usual moderation delay.  Settings: adaptive (the lab's default, as Intel ships it: at every
interrupt the NIC classifies the traffic since the last one as lowest_latency, low_latency or
bulk_latency and throttles to 70000, 20000 or 12000 interrupts per second - bulk at 4000 on a NIC
slower than 10 Gb/s), minimal, low, medium, high, extreme (fixed: about 19500, 9800, 4100, 1950 and 1090 per second), a number of interrupts
per second (0n100 to 0n100000; an expression, read in the current radix like WinDbg's own numbers, so
`!nic itr 0n10000` or `!nic itr 2710` for 10,000 per second; the extension arguments that mirror a Windows
tool's switch, such as `!ping -n` or `!echo -s`, read as that tool does: decimal), or off (no throttle: an interrupt per packet once the 10 us moderation
delay has passed; *InterruptModeration stays 1 until that delay goes too, as !udpload /nomod does).
`!nic moderation off|on` (all hosts, or one host) sends OID_GEN_INTERRUPT_MODERATION down tcpip's binding,
the switch NDIS gives overlying drivers (to time a round trip without the moderation delay, MS Learn
"Interrupt Moderation"): Disabled turns the rate and the delay off; Enabled brings back what was in force.
It takes effect when the machine runs.""")
def cmd_nic(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if not words:
        rows = nic_rows(dbg)
        return CommandResult("\n".join(nic_lines(rows)), {"hosts": rows})
    verb, at = words[0]
    if verb.lower() == "itr":
        return _set_itr(dbg, inv, words)
    if verb.lower() == "moderation":
        return _set_moderation(dbg, inv, words)
    if verb.lower() != "passthrough":
        raise inv.error(f"unknown !nic action '{verb}' (passthrough, itr, moderation)", at)
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


def _set_moderation(dbg: "Engine", inv: Invocation, words: list[tuple[str, int]]) -> CommandResult:
    """`!nic moderation on|off [Host]`: OID_GEN_INTERRUPT_MODERATION set down tcpip's binding, as NDIS
    and overlying drivers switch moderation at run time (stack/ndis/interrupt_moderation.py)."""
    from stack.ndis import NDIS_OID_REQUEST, NdisRequestSetInformation
    from stack.ndis.constants import OID_GEN_INTERRUPT_MODERATION
    from stack.ndis.interrupt_moderation import (NDIS_INTERRUPT_MODERATION_PARAMETERS,
                                                 NdisInterruptModerationDisabled, NdisInterruptModerationEnabled)
    from stack.ndis.protocol import NdisOidRequest
    if len(words) < 2 or words[1][0].lower() not in _ON_OFF:
        raise inv.error("say !nic moderation on or !nic moderation off", len(inv.args))
    if len(words) > 3:
        raise inv.syntax_error(words[3][1])
    state = _ON_OFF[words[1][0].lower()]
    world = world_of(dbg)
    hosts = [host_name(dbg, inv, *words[2])] if len(words) == 3 else list(world.hosts)
    value = NdisInterruptModerationEnabled if state else NdisInterruptModerationDisabled
    word = "NdisInterruptModerationEnabled" if state else "NdisInterruptModerationDisabled"
    bindings = []
    for name in hosts:  # every host checked before any request is queued: all or nothing
        host = world.host(name)
        binding = next((i.binding for i in host.stack.interfaces if i.binding is not None), None)
        if binding is None:
            raise inv.error(f"{name} has no interface bound to its NIC: there is no binding to send "
                            f"OID_GEN_INTERRUPT_MODERATION down", len(inv.args))
        bindings.append((name, host, binding))
    for name, host, binding in bindings:
        request = NDIS_OID_REQUEST(OID_GEN_INTERRUPT_MODERATION, NdisRequestSetInformation,
                                   NDIS_INTERRUPT_MODERATION_PARAMETERS(value).to_bytes())
        _PENDING_OIDS[host.nic] = _PENDING_OIDS.get(host.nic, 0) + 1
        k = host.kernel
        k.scheduler.call_soon(k, _moderation_oid, dbg, name, host.nic, binding, request, word,
                              label="OID_GEN_INTERRUPT_MODERATION")
    return CommandResult(f"{', '.join(hosts)}: OID_GEN_INTERRUPT_MODERATION ({word}) queued on tcpip's binding; "
                         f"it takes effect when the machine runs (g), before any `!nic itr` typed after it.",
                         {"hosts": hosts, "moderation": state})


# NICs with a moderation OID queued and not yet run (per world: a rebuilt world starts with none).
_PENDING_OIDS: "WeakKeyDictionary[Any, int]" = WeakKeyDictionary()


def _moderation_oid(dbg: "Engine", name: str, nic: Any, binding: Any, request: Any, word: str) -> None:
    """The queued OID request, when the machine runs: NdisOidRequest down tcpip's binding, then its
    status in the run's output (the miniport completes this OID at once, never PENDING)."""
    from stack.ndis import NdisOidRequest
    from stack.ndis.constants import ndis_status_name
    try:
        status = NdisOidRequest(binding, request)
    finally:
        _PENDING_OIDS[nic] -= 1
    dbg.emit(f"{name}: OID_GEN_INTERRUPT_MODERATION ({word}) completed: {ndis_status_name(status)}")


def _set_rate_in_order(nic: Any, setting: str | int) -> bool:
    """Set the rate now, or (a moderation OID typed earlier is still queued) queue it behind that OID so
    the typed order holds.  True when it was queued."""
    if not _PENDING_OIDS.get(nic):
        nic.set_interrupt_moderation_rate(setting)
        return False
    k = nic.kernel
    k.scheduler.call_soon(k, nic.set_interrupt_moderation_rate, setting, label="Interrupt Moderation Rate")
    return True


def _rate(dbg: "Engine", inv: Invocation, text: str, at: int) -> int:
    """A rate in interrupts per second: an expression in the current radix, as WinDbg reads its own
    numbers (16 unless `n` changed it; 0n10000 and 0x2710 say their own).  Switches that mirror a
    Windows tool's (`!ping -n`, traffic.int_option) read decimal, as that tool does."""
    try:
        rate = dbg.evaluate(text, inv.args_offset + at)
    except CommandError:
        if not text.isalnum():  # an expression with an error of its own: its message says where
            raise
        raise inv.error(f"unknown Interrupt Moderation Rate '{text}' (adaptive, off, "
                        f"{', '.join(n.lower() for n in FIXED_SETTINGS)}, or interrupts per second)", at) from None
    if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        raise inv.error(f"the rate must be between {RATE_RANGE[0]} and {RATE_RANGE[1]} interrupts per second "
                        f"(0n{RATE_RANGE[0]} to 0n{RATE_RANGE[1]}; {text} is 0n{rate})", at)
    return rate


def _set_itr(dbg: "Engine", inv: Invocation, words: list[tuple[str, int]]) -> CommandResult:
    if len(words) < 2:  # `!nic itr`: the moderation table alone
        rows = nic_rows(dbg)
        return CommandResult("\n".join(moderation_lines(rows)), {"hosts": rows})
    text, at = words[1]
    setting: str | int | None = setting_name(text)
    if setting is None:
        setting = _rate(dbg, inv, text, at)
    if len(words) > 3:
        raise inv.syntax_error(words[3][1])
    world = world_of(dbg)
    hosts = [host_name(dbg, inv, *words[2])] if len(words) == 3 else list(world.hosts)
    queued = [name for name in hosts if _set_rate_in_order(world.host(name).nic, setting)]
    where = ", ".join(hosts)
    if isinstance(setting, int):
        text = f"Interrupt throttle rate is now at most {setting} interrupts per second for {where}."
    elif setting in FIXED_SETTINGS:
        rate = 1_000_000_000 // fixed_interval_ns(setting)
        text = f"Interrupt Moderation Rate is now {setting} (at most {rate} interrupts per second) for {where}."
    elif setting == ADAPTIVE:
        text = f"Interrupt Moderation Rate is now Adaptive for {where}: each interrupt's traffic sets the next interval."
    else:
        assert setting == OFF
        text = f"Interrupt Moderation Rate is now Off for {where}: no throttle."
    if queued:
        if len(queued) == len(hosts):
            text = text.replace(" is now ", " will be ", 1)
        text += (f"\n{', '.join(queued)}: queued behind the pending OID_GEN_INTERRUPT_MODERATION; "
                 "both take effect in the order typed when the machine runs (g).")
    return CommandResult(text, {"hosts": hosts, "queued": queued, "itr": setting if isinstance(setting, int) else setting.lower()})
