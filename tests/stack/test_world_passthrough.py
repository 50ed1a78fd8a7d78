"""Paravirtual offload pass-through (stack/nic/passthrough.py): a large send crosses the switch uncut
while nobody observes the wire, and nothing above NDIS can tell the difference."""

from __future__ import annotations

import hashlib

import pytest

from stack.nic import FaultConfig
from stack.nic.passthrough import (BLOCK_CAPTURE, BLOCK_FAULT, BLOCK_HOLD, BLOCK_OFF, BLOCK_RECEIVER, BLOCK_SINK,
                                   LargeSend)
from stack.nic.offload import segment_lso, validate_rx_checksums, RX_TCP_SUCCEEDED
from stack.usermode.programs import pattern

from world_harness import lab, echo_exchange

KiB = 1024
# Frame-level events: what exists only below NDIS (the wire, the NIC's interrupt line).
BELOW_NDIS_KINDS = ("frame.", "interrupt")
BELOW_NDIS_MODULES = ("netvmini",)  # the miniport: its DPC drains the rings the wire fills


def _set_passthrough(world, on: bool) -> None:
    for host in world.hosts.values():
        host.nic.passthrough = on


def _echo(world, version: int, data: bytes):
    return echo_exchange(world, version, data)[0]


def _units(world) -> int:
    return sum(h.nic.passthrough_counters.units for h in world.hosts.values())


def _fallbacks(world) -> dict[str, int]:
    total: dict[str, int] = {}
    for h in world.hosts.values():
        for why, n in h.nic.passthrough_counters.fallbacks.items():
            total[why] = total.get(why, 0) + n
    return total


def _record(world) -> list:
    events: list = []
    world.bus.subscribe(events.append)
    return events


def _above_ndis(events) -> list[tuple]:
    """Every event above NDIS by kind, host, virtual time and what it says (frame bytes never enter)."""
    out = []
    for ev in events:
        if ev.kind.startswith(BELOW_NDIS_KINDS):
            continue
        symbol = getattr(ev, "symbol", "") or ""
        if symbol.split("!")[0].lower() in BELOW_NDIS_MODULES:
            continue
        out.append((ev.kind, ev.host, ev.time_ns, ev.describe()))
    return out


def _every_host_in_order(events) -> list[tuple]:
    """Every event with its frame bytes, each host's in the order it saw them.

    Two frames reaching two NICs at the same nanosecond are simultaneous: the bus orders such a tie
    by when each arrival was scheduled, and pass-through schedules a unit's segments when the unit
    crosses the switch rather than frame by frame.  So ties across hosts are put in host order;
    within one host the order is the bus's own, and the virtual times are exact.
    """
    rows = [(e.time_ns, e.host, e.kind, e.describe(), bytes(getattr(e, "frame", None) or b"")) for e in events]
    return sorted(rows, key=lambda row: (row[0], row[1] or ""))  # stable: a host's own order stays


@pytest.mark.parametrize("version,rsc", [(4, True), (6, True), (4, False)])
def test_event_sequence_above_ndis_is_identical_with_and_without_passthrough(version, rsc):
    data = pattern(version, 384 * KiB)
    runs = {}
    for on in (False, True):
        world = lab(seed=7, rsc=rsc)
        _set_passthrough(world, on)
        events = _record(world)
        result = _echo(world, version, data)
        assert result.received_sha256 == hashlib.sha256(data).hexdigest()  # byte-exact both ways
        runs[on] = (world, events)
    (off_world, off_events), (on_world, on_events) = runs[False], runs[True]
    assert _units(off_world) == 0 and _units(on_world) > 0
    above_off, above_on = _above_ndis(off_events), _above_ndis(on_events)
    assert len(above_on) > 1000
    assert above_on == above_off
    # below NDIS too, every event a subscriber sees is the same, frame bytes included (a subscriber
    # is someone who reads the frames, so they are built for real)
    assert _every_host_in_order(on_events) == _every_host_in_order(off_events)
    for name in ("client", "winsrv"):
        a, b = off_world.host(name).nic.counters, on_world.host(name).nic.counters
        assert (a.frames_out, a.bytes_out, a.frames_in, a.rsc_units) == (b.frames_out, b.bytes_out, b.frames_in,
                                                                        b.rsc_units)
        assert off_world.host(name).nic.dma_rx_bytes == on_world.host(name).nic.dma_rx_bytes
    # the switch crossed each unit in one event instead of one per frame
    assert on_world.scheduler.events_run < off_world.scheduler.events_run


def test_rsc_receives_carry_the_ndis_rsc_info_with_passthrough(monkeypatch):
    from stack.ndis.constants import TcpRecvSegCoalesceInfo, rsc_coalesced_segments
    from stack.tcpip.stack import TcpipStack
    seen = []
    original = TcpipStack._receive_chain

    def spy(self, iface, nbls, flags):
        nbl = nbls
        while nbl is not None:
            seen.append(rsc_coalesced_segments(nbl.NetBufferListInfo[TcpRecvSegCoalesceInfo]))
            nbl = nbl.Next
        return original(self, iface, nbls, flags)

    monkeypatch.setattr(TcpipStack, "_receive_chain", spy)
    world = lab(seed=4, rsc=True)
    result = _echo(world, 4, pattern(1, 256 * KiB))
    assert result.received_sha256 == result.sent_sha256
    assert _units(world) > 0 and max(seen) >= 2


def test_capture_turns_passthrough_off_and_every_frame_has_real_checksums():
    world = lab(seed=5, rsc=True)
    capture = world.capture()
    result = _echo(world, 4, pattern(2, 256 * KiB))
    assert result.received_sha256 == result.sent_sha256
    assert _units(world) == 0 and _fallbacks(world).get(BLOCK_CAPTURE, 0) > 0
    big = [r.frame for r in capture.records if len(r.frame) > 1000]
    assert len(big) > 100
    assert all(validate_rx_checksums(f) & RX_TCP_SUCCEEDED for f in big)


def test_stopping_the_capture_detached_lets_passthrough_resume():
    world = lab(seed=5, rsc=True)
    capture = world.capture()
    capture.detach()
    result = _echo(world, 4, pattern(2, 128 * KiB))
    assert result.received_sha256 == result.sent_sha256
    assert _units(world) > 0


def test_fault_injection_turns_passthrough_off():
    world = lab(seed=6, rsc=True)
    world.set_faults("client", FaultConfig(loss=0.0001))
    result = _echo(world, 4, pattern(3, 256 * KiB))
    assert result.received_sha256 == result.sent_sha256
    assert _fallbacks(world).get(BLOCK_FAULT, 0) > 0


def test_a_frame_only_sink_such_as_the_tap_bridge_gets_real_frames():
    world = lab(seed=6, rsc=True)

    class PlainSink:  # what the TAP bridge's port is: deliver() and nothing else
        def __init__(self):
            self.frames = []

        def attach(self, sink):
            pass

        def deliver(self, frame, time_ns):
            self.frames.append(frame)

    from stack.nic.switch import MacEntry
    port = world.switch.add_port("tap")
    plain = PlainSink()
    port.attach(plain)
    mac = b"\x02\x00\x00\x00\x00\x99"
    world.switch.mac_table[mac] = MacEntry(port, world.now_ns)
    unit = LargeSend(mac + _lso_frame()[6:], 1448)
    assert world.host("client").nic.passthrough_blocker_tx(unit) == BLOCK_SINK
    # had a unit been under way already, the egress port cuts it into real frames for the sink
    port.send_large(unit, unit.frame_lengths(), [world.now_ns] * unit.count)
    assert plain.frames == segment_lso(mac + _lso_frame()[6:], 1448)


def test_a_receiver_without_rsc_still_takes_segments_each_indicated_alone():
    world = lab(seed=8, rsc=False)
    result = _echo(world, 4, pattern(4, 128 * KiB))
    assert result.received_sha256 == result.sent_sha256
    assert _units(world) > 0
    assert all(h.nic.counters.rsc_units == 0 for h in world.hosts.values())


def test_a_receiver_without_receive_checksum_offload_gets_real_frames():
    world = lab(seed=8, rsc=True)
    nic = world.host("client").nic
    unit = LargeSend(_lso_frame(), 1448)
    assert world.host("winsrv").nic.passthrough_blocker(unit) is None
    world.host("winsrv").nic.offloads.rx_checksum = False
    assert world.host("winsrv").nic.passthrough_blocker(unit) == BLOCK_RECEIVER
    del nic


def test_a_debugger_hold_and_the_off_switch_give_real_frames():
    world = lab(seed=9, rsc=True)
    world.host("winsrv").nic.wire_holds["bp /e frame.rx"] += 1
    world.host("client").nic.passthrough = False
    result = _echo(world, 4, pattern(5, 128 * KiB))
    assert result.received_sha256 == result.sent_sha256
    falls = _fallbacks(world)
    assert _units(world) == 0 and falls.get(BLOCK_HOLD, 0) > 0 and falls.get(BLOCK_OFF, 0) > 0


def _lso_frame(payload: int = 8000) -> bytes:
    import struct
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    ip = b"\x45\x00" + struct.pack("!H", 20 + 20 + payload) + b"\x12\x34\x40\x00\x40\x06\x00\x00" + bytes(
        [10, 0, 0, 1, 10, 0, 0, 2])
    tcp = struct.pack("!HHIIBBHHH", 1, 2, 0xFFFFF000, 4, 5 << 4, 0x18, 100, 0, 0)
    return eth + ip + tcp + bytes(range(256)) * (payload // 256) + bytes(payload % 256)


@pytest.mark.parametrize("mss", [536, 1448, 1460])
def test_large_send_frames_are_exactly_what_lso_cuts_and_partial_ones_differ_only_in_the_checksum(mss):
    frame = _lso_frame(9000)
    unit = LargeSend(frame, mss)
    real = segment_lso(frame, mss)
    assert unit.frames() == real and unit.frame_lengths() == [len(f) for f in real]
    for i, f in enumerate(real):
        partial = unit.frame(i, False)
        assert len(partial) == len(f)
        assert partial[:50] == f[:50] and partial[52:] == f[52:]  # TCP checksum at 14 + 20 + 16
        assert validate_rx_checksums(f) & RX_TCP_SUCCEEDED


@pytest.mark.parametrize("host", ["client", "winsrv"])  # the sender's own link, the receiver's (second hop)
def test_a_link_queue_that_drops_frames_drops_the_same_frames_with_passthrough(host):
    data = pattern(6, 256 * KiB)
    seen = {}
    for on in (False, True):
        world = lab(seed=11, rsc=True)
        _set_passthrough(world, on)
        # afd's send buffering sends ACK by ACK, in LSO units of about 11 frames: a 6-frame queue overflows
        world.host(host).link.queue_frames = 6
        events = _record(world)
        result = _echo(world, 4, data)
        assert result.received_sha256 == result.sent_sha256
        seen[on] = ([(e.kind, e.host, e.time_ns, e.describe()) for e in events],
                    sum(end.counters.queue_drops for end in world.host(host).link.ends))
    assert seen[False][1] > 0  # frames were dropped
    assert seen[True] == seen[False]
