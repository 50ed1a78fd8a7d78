"""The lab's NICs at Intel's default "Interrupt Moderation Rate", Adaptive: a bulk echo end to end
(user-mode programs, tcpip, NDIS, RSC) takes fewer interrupts and hands tcpip larger coalesced units
than with the rate Off, every byte intact, the same way every run."""

from __future__ import annotations

from stack.usermode.programs import pattern

from world_harness import echo_exchange, lab

DATA = pattern(7, 256 * 1024)
# Long enough to leave slow start: afd's buffering hands tcpip data as ACKs return, so a short echo's
# sends stay small and its units with them.
BULK = pattern(7, 1024 * 1024)


def _bulk_echo(setting: str, data: bytes = DATA):
    world = lab(rsc=True)
    for host in world.hosts.values():
        host.nic.set_interrupt_moderation_rate(setting)
    winsrv = world.host("winsrv").nic
    c = winsrv.counters
    client, _ = echo_exchange(world, 4, data)
    assert client.received_sha256 == client.sent_sha256
    units = c.rsc_units
    return {"interrupts": c.interrupts, "units": units, "segments_per_unit": (units + c.rsc_coalesced_segments) / units,
            "indicated": world.host("winsrv").adapter.counters.nbls_indicated, "now": world.now_ns,
            "changes": winsrv.itr_adaptive.changes if winsrv.itr_adaptive else 0}


def test_adaptive_moderation_takes_fewer_interrupts_and_grows_rsc_units_for_a_bulk_echo():
    off = _bulk_echo("Off", BULK)
    adaptive = _bulk_echo("Adaptive", BULK)
    assert adaptive["interrupts"] < off["interrupts"] * 3 // 4
    assert adaptive["segments_per_unit"] > 1.5 * off["segments_per_unit"]
    assert adaptive["indicated"] < off["indicated"]
    assert adaptive["changes"] >= 2  # up to bulk_latency and back down as the echo ended


def test_adaptive_moderation_is_deterministic():
    assert _bulk_echo("Adaptive") == _bulk_echo("Adaptive")
