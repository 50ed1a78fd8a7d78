"""A passed-through large send's segments run back to back in one scheduler event while nothing can
tell (stack/nic/segrun.py, Scheduler.claim_next): everything above the NIC is the same,
event for event, as with one scheduler event per segment; the scheduler's heap just sees fewer."""

from __future__ import annotations

import hashlib

import pytest

from stack.kernel.cpu import install
from stack.ndis.constants import TcpRecvSegCoalesceInfo, rsc_coalesced_segments
from stack.nic import FaultConfig
from stack.tcpip.stack import TcpipStack
from stack.tcpip.tcpl.receive import ReceiveLayer
from stack.usermode.programs import echo_client, echo_server, pattern

from world_harness import any_address, lab, server_address, start, echo_exchange

KiB = 1024


def _chaining(world, on: bool) -> None:
    for host in world.hosts.values():
        host.nic.chain_segments = on


def _spy(monkeypatch, log: list) -> None:
    """Record, in order, every NBL indication (host, time, each NBL's length and RSC segment count)
    and every TCP segment a host processes (host, time, IP payload length, wire segments)."""
    indicate, tcp = TcpipStack._receive_chain, ReceiveLayer.receive_segment

    def receive_chain(self, iface, nbls, flags):
        nbl, nbl_rows = nbls, []
        while nbl is not None:
            nbl_rows.append((nbl.FirstNetBuffer.DataLength,
                             rsc_coalesced_segments(nbl.NetBufferListInfo[TcpRecvSegCoalesceInfo] or 0)))
            nbl = nbl.Next
        log.append(("indicate", self.kernel.name, self.kernel.scheduler.now_ns, flags, tuple(nbl_rows)))
        return indicate(self, iface, nbls, flags)

    def receive_segment(self, rx, src, dst, data, tail=(), segments=1):
        log.append(("tcp", self.kernel.name, self.kernel.scheduler.now_ns, len(data) + sum(map(len, tail)),
                    segments))
        return tcp(self, rx, src, dst, data, tail, segments)

    monkeypatch.setattr(TcpipStack, "_receive_chain", receive_chain)
    monkeypatch.setattr(ReceiveLayer, "receive_segment", receive_segment)


def _echo(world, version: int, data: bytes):
    return echo_exchange(world, version, data)[0]


def _counters(world) -> dict:
    out = {}
    for name, host in world.hosts.items():
        nic = host.nic
        out[name] = (repr(nic.counters), nic.dma_rx_bytes, nic.dma_tx_bytes, 
                     (nic.passthrough_counters.units, nic.passthrough_counters.segments),
                     repr(host.kernel.copies.total_bytes), repr(host.stack.counters))
    return out


@pytest.mark.parametrize("version", [4, 6])
def test_chained_segments_are_indistinguishable_above_the_nic_from_one_event_each(monkeypatch, version):
    # 1.5 MiB: afd's send buffering sends ACK by ACK, in smaller large sends, so fewer segments chain per KiB
    data = pattern(version, 1536 * KiB)
    runs = {}
    log: list = []
    _spy(monkeypatch, log)
    for on in (False, True):
        log.clear()
        # an interrupt per packet (rate Off): the checks below want > 100 indications, and with the lab's
        # Adaptive default this echo's RSC units are three times larger (87 indications)
        world = lab(seed=11, rsc=True, interrupt_moderation_rate="Off")
        _chaining(world, on)
        result = _echo(world, version, data)
        assert result.received_sha256 == hashlib.sha256(data).hexdigest()
        sched = world.scheduler
        runs[on] = (list(log), _counters(world), sched.events_run, sched.claimed, sched.now_ns, world)
    (log_off, counters_off, events_off, claimed_off, now_off, off), (log_on, counters_on, events_on,
                                                                       claimed_on, now_on, on) = runs[False], runs[True]
    assert claimed_off == 0 and claimed_on > 500  # it did chain, a lot
    assert sum(h.nic.passthrough_counters.units for h in on.hosts.values()) > 20
    indications = [row for row in log_on if row[0] == "indicate"]
    assert len(indications) > 100 and any(seg > 1 for row in indications for _, seg in row[4])
    assert log_on == log_off  # every indication and TCP segment: same host, time, lengths, RSC counts
    assert counters_on == counters_off
    assert (events_on, now_on) == (events_off, now_off)  # each segment still counts as an event run
    # ...but the heap saw far fewer events
    assert events_on - claimed_on < events_off - 400


def test_chaining_never_happens_with_a_bus_subscriber():
    world = lab(seed=3, rsc=True)
    seen: list = []
    world.bus.subscribe(seen.append)
    result = _echo(world, 4, pattern(3, 256 * KiB))
    assert result.received_sha256 == result.sent_sha256
    assert sum(h.nic.passthrough_counters.units for h in world.hosts.values()) > 0
    assert world.scheduler.claimed == 0


@pytest.mark.parametrize("perturb", ["capture", "fault", "cpu model", "chaining off"])
def test_chaining_is_off_whenever_something_could_tell(perturb):
    world = lab(seed=3, rsc=True)
    if perturb == "capture":
        world.capture()
    elif perturb == "fault":
        world.set_faults("client", FaultConfig(loss=0.0001))
    elif perturb == "cpu model":
        for host in world.hosts.values():
            install(host.kernel, "x64")
    else:
        _chaining(world, False)
    result = _echo(world, 4, pattern(3, 256 * KiB))
    assert result.received_sha256 == result.sent_sha256
    assert world.scheduler.claimed == 0


def test_stepping_event_by_event_never_chains():
    """A caller that steps with run_one (the debugger, the bridge) sees one event per segment."""
    world = lab(seed=3, rsc=True)
    server = start(world, "winsrv", echo_server, any_address(4, 7))
    world.run_for(1_000_000)
    client = start(world, "client", echo_client, server_address(world, 4, 7), pattern(3, 256 * KiB))
    sched = world.scheduler
    steps = 0
    while not (client.done and server.done) and steps < 2_000_000:
        assert sched.run_one()
        steps += 1
    world.check()
    assert client.result.received_sha256 == client.result.sent_sha256
    assert sum(h.nic.passthrough_counters.units for h in world.hosts.values()) > 0
    assert sched.claimed == 0
