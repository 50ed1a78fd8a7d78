"""The segment pump (stack/nic/segrun.py) runs the passed-through segments of both directions of a bulk
echo back to back, each counted as an event: every RSC unit's boundaries, every interrupt and every
indication must fall exactly where the per-segment path (one scheduler event per segment,
`chain_segments = False`) puts them, under the lab's Adaptive interrupt moderation and with it Off."""

from __future__ import annotations

import hashlib

import pytest

from stack.ndis.constants import TcpRecvSegCoalesceInfo, rsc_coalesced_segments
from stack.nic.nic import EmulatedNic
from stack.tcpip.stack import TcpipStack
from stack.usermode.programs import pattern

from world_harness import echo_exchange, lab

KiB = 1024


def _spy(monkeypatch, log: list, entries: list) -> None:
    """Record in order: each RSC unit the NIC closes (host, time, segments, IP length), each interrupt
    (host, time, cause), each NBL chain indicated to tcpip (host, time, per NBL: length, RSC segments,
    a hash of its bytes);
    and count the events that enter the pump (`entries`)."""
    close_unit, fire, indicate = EmulatedNic._close_unit, EmulatedNic._fire, TcpipStack._receive_chain
    segments_arrived = EmulatedNic._segments_arrived

    def _close_unit(self, unit):
        log.append(("unit", self.kernel.name, self.kernel.scheduler.now_ns, unit.segments, unit.ip_length))
        return close_unit(self, unit)

    def _fire(self):
        log.append(("interrupt", self.kernel.name, self.kernel.scheduler.now_ns, self._cause))
        return fire(self)

    def _receive_chain(self, iface, nbls, flags):
        rows, nbl = [], nbls
        while nbl is not None:
            nb = nbl.FirstNetBuffer  # its bytes: the headers the NIC rewrote for a unit (IP length, PSH, ACK...)
            rows.append((nb.DataLength, rsc_coalesced_segments(nbl.NetBufferListInfo[TcpRecvSegCoalesceInfo] or 0),
                         hashlib.sha256(b"".join(nb.views())).hexdigest()[:16]))
            nbl = nbl.Next
        log.append(("indicate", self.kernel.name, self.kernel.scheduler.now_ns, tuple(rows)))
        return indicate(self, iface, nbls, flags)

    def _segments_arrived_counted(self, unit, times, i, seq0):
        entries.append(self.kernel.name)
        return segments_arrived(self, unit, times, i, seq0)

    monkeypatch.setattr(EmulatedNic, "_close_unit", _close_unit)
    monkeypatch.setattr(EmulatedNic, "_fire", _fire)
    monkeypatch.setattr(TcpipStack, "_receive_chain", _receive_chain)
    monkeypatch.setattr(EmulatedNic, "_segments_arrived", _segments_arrived_counted)


def _run(monkeypatch, itr: str, batching: bool, data: bytes) -> dict:
    log: list = []
    entries: list = []
    with monkeypatch.context() as patch:
        _spy(patch, log, entries)
        world = lab(seed=5, rsc=True, interrupt_moderation_rate=itr)
        for host in world.hosts.values():
            host.nic.chain_segments = batching
        result = echo_exchange(world, 4, data)[0]
    assert result.received_sha256 == hashlib.sha256(data).hexdigest()
    sched = world.scheduler
    nics = {name: host.nic for name, host in world.hosts.items()}
    return {"log": log, "entries": entries, "events": sched.events_run, "claimed": sched.claimed,
            "now": sched.now_ns,
            "counters": {name: (repr(nic.counters), nic.dma_rx_bytes, nic.passthrough_counters.segments)
                         for name, nic in nics.items()}}


@pytest.mark.parametrize("itr", ["Adaptive", "Off"])
def test_batched_segments_keep_every_rsc_unit_interrupt_and_indication_where_single_segments_put_them(
        monkeypatch, itr):
    data = pattern(7, 1024 * KiB)
    single = _run(monkeypatch, itr, False, data)
    batched = _run(monkeypatch, itr, True, data)
    units = [row for row in single["log"] if row[0] == "unit"]
    assert len(units) > 20 and {row[1] for row in units} == {"client", "winsrv"}  # both directions coalesce
    assert max(row[3] for row in units) > 8
    assert batched["log"] == single["log"]  # each unit's segments and time, each interrupt, each indication
    assert batched["counters"] == single["counters"]
    assert (batched["events"], batched["now"]) == (single["events"], single["now"])  # each segment is an event
    assert single["claimed"] == 0 and batched["claimed"] > 0.8 * single["counters"]["client"][2]
    # the pump ran the two directions' segments in the same events: far fewer entered it than arrived
    segments = sum(counters[2] for counters in single["counters"].values())
    # (with moderation Off an interrupt, and so an event between two segments, comes every ~10 us; under
    # Adaptive with HyStart++'s L = 8 the larger bursts meet more interrupts: 1,443 segments in 153 entries,
    # 9.4 a run, where L = 1 had 15.3)
    assert len(single["entries"]) == 0 and len(batched["entries"]) < segments // {"Adaptive": 8, "Off": 3}[itr]


def test_a_run_loop_stopping_between_two_batched_segments_leaves_the_rest_queued_in_order(monkeypatch):
    """Run the echo in slices of 7 us of virtual time (shorter than a frame at 1 Gb/s): every slice
    ends between two segments, and the next one takes up exactly where the per-segment path would."""
    data = pattern(9, 256 * KiB)
    logs = []
    for batching in (False, True):
        log: list = []
        with monkeypatch.context() as patch:
            _spy(patch, log, [])
            world = lab(seed=6, rsc=True)
            for host in world.hosts.values():
                host.nic.chain_segments = batching
            from stack.usermode.programs import echo_client, echo_server
            from world_harness import any_address, server_address, start
            server = start(world, "winsrv", echo_server, any_address(4, 7))
            world.run_for(1_000_000)
            client = start(world, "client", echo_client, server_address(world, 4, 7), data)
            for _ in range(200_000):
                if client.done and server.done:
                    break
                world.run_for(7_000)
            world.check()
            assert client.result.received_sha256 == hashlib.sha256(data).hexdigest()
        logs.append((log, world.scheduler.events_run, world.now_ns))
    assert logs[0] == logs[1]


def test_two_echoes_at_once_batch_the_same_way_as_single_segments(monkeypatch):
    """Two connections stream through each NIC at once: each NIC keeps two flows' RSC units open,
    and their large sends follow each other on the wire (the pump takes one after the other)."""
    from stack.usermode.programs import echo_client, echo_server
    from world_harness import any_address, run_programs, server_address, start
    data = [pattern(11, 384 * KiB), pattern(12, 320 * KiB)]
    runs = []
    for batching in (False, True):
        log: list = []
        entries: list = []
        with monkeypatch.context() as patch:
            _spy(patch, log, entries)
            world = lab(seed=8, rsc=True)
            for host in world.hosts.values():
                host.nic.chain_segments = batching
            servers = [start(world, "winsrv", echo_server, any_address(4, port)) for port in (7, 9)]
            world.run_for(1_000_000)
            clients = [start(world, "client", echo_client, server_address(world, 4, port), payload)
                       for port, payload in zip((7, 9), data)]
            run_programs(world, *servers, *clients)
        for client, payload in zip(clients, data):
            assert client.result.received_sha256 == hashlib.sha256(payload).hexdigest()
        runs.append((log, world.scheduler.events_run, world.now_ns, len(entries), world.scheduler.claimed))
    (log_single, events_single, now_single, _, claimed_single), (log_batched, events_batched, now_batched,
                                                                  entries_batched, claimed_batched) = runs
    assert log_batched == log_single and (events_batched, now_batched) == (events_single, now_single)
    assert claimed_single == 0 and claimed_batched > 500 and entries_batched < claimed_batched // 4


def test_a_nic_setting_changed_between_two_segments_of_one_large_send_takes_effect_at_once(monkeypatch):
    """The pump keeps what it read about a large send between its events: turning RSC off on a NIC
    while a large send is arriving must stop the next segment joining, as with one event each."""
    from stack.usermode.programs import echo_client, echo_server
    from world_harness import any_address, server_address, start
    data = pattern(13, 256 * KiB)
    logs = []
    for batching in (False, True):
        log: list = []
        with monkeypatch.context() as patch:
            _spy(patch, log, [])
            world = lab(seed=9, rsc=True)
            for host in world.hosts.values():
                host.nic.chain_segments = batching
            server = start(world, "winsrv", echo_server, any_address(4, 7))
            world.run_for(1_000_000)
            client = start(world, "client", echo_client, server_address(world, 4, 7), data)
            nic = world.host("winsrv").nic
            switched = 0
            while not (client.done and server.done) and world.now_ns < 60 * 10**9:
                world.run_for(10_000)  # 10 us: less than a frame's time on the wire
                if nic.counters.rsc_coalesced_segments > 20 and switched < 40:
                    nic.offloads.rsc = not nic.offloads.rsc  # off, on, off ... between two segments
                    switched += 1
            world.check()
            assert client.result.received_sha256 == hashlib.sha256(data).hexdigest()
            assert switched == 40 and nic.offloads.rsc
        logs.append((log, world.scheduler.events_run, world.now_ns, repr(nic.counters)))
    assert logs[0] == logs[1]


def test_a_delivered_large_send_is_freed_without_the_cycle_collector():
    """The pump keeps a large send's run on it while segments remain; the last segment drops it, so
    the large send (and its 64 KB snapshot) goes when its last reference does, not at the next
    collection of cyclic garbage."""
    import gc

    from stack.nic.passthrough import LargeSend
    from stack.usermode.programs import echo_client, echo_server
    from world_harness import any_address, run_programs, server_address, start
    world = lab(seed=10, rsc=True)
    server = start(world, "winsrv", echo_server, any_address(4, 7))
    world.run_for(1_000_000)
    gc.collect()
    gc.disable()
    try:
        client = start(world, "client", echo_client, server_address(world, 4, 7), pattern(10, 512 * KiB))
        run_programs(world, server, client)
        world.run_for(10_000_000)
        assert world.scheduler.claimed > 100  # the pump ran
        assert [o for o in gc.get_objects() if type(o) is LargeSend] == []
    finally:
        gc.enable()


def _echo_world(batching: bool, seed: int, size: int):
    from stack.usermode.programs import echo_client, echo_server
    from world_harness import any_address, server_address, start
    world = lab(seed=seed, rsc=True)
    for host in world.hosts.values():
        host.nic.chain_segments = batching
    server = start(world, "winsrv", echo_server, any_address(4, 7))
    world.run_for(1_000_000)
    client = start(world, "client", echo_client, server_address(world, 4, 7), pattern(seed, size))
    return world, server, client


def _a_large_send_mid_pump(world, large_send_type) -> bool:
    """Is a large send, queued for its next segment, holding a pump's run?  (Its events are on the
    scheduler's heap: scanning that is cheap, where gc.get_objects() walks the whole process.)"""
    return any(type(arg) is large_send_type and arg.rx_run is not None
               for _t, _seq, ev in world.scheduler._heap for arg in ev.args)


@pytest.mark.parametrize("how", ["bus listener", "wire hold"])
def test_a_large_send_whose_delivery_becomes_observable_midway_is_freed_without_the_cycle_collector(how):
    """A bus listener or a wire hold appearing while a large send is half delivered sends its pump to
    the one-event-per-segment fallback: the large send's run must not stay on it (a cycle that keeps
    the large send and its snapshot alive until the cycle collector runs)."""
    import gc

    from stack.nic.passthrough import LargeSend
    from world_harness import run_programs
    gc.collect()
    gc.disable()
    try:
        world, server, client = _echo_world(True, 10, 512 * KiB)
        for _ in range(100_000):
            world.run_for(3_000)
            if _a_large_send_mid_pump(world, LargeSend):
                break
        else:
            pytest.fail("no large send was ever mid-delivery in the pump")
        nics = [host.nic for host in world.hosts.values()]
        if how == "bus listener":
            unsubscribe = world.bus.subscribe(lambda ev: None)
            world.run_for(2_000_000)
            unsubscribe()
        else:
            for nic in nics:
                nic.wire_holds["test"] += 1
            world.run_for(2_000_000)
            for nic in nics:
                del nic.wire_holds["test"]
        run_programs(world, server, client)
        world.run_for(10_000_000)
        assert client.done and server.done
        assert [o for o in gc.get_objects() if type(o) is LargeSend] == []
    finally:
        gc.enable()


def _halt_on_bad_receive_buffers(batching: bool, victim: str, after_events: int) -> tuple:
    world, server, client = _echo_world(batching, 4, 1024 * KiB)
    sched = world.scheduler
    sched.run_until_idle(max_events=after_events)
    nic = world.host(victim).nic
    # a miniport bug: every posted receive buffer now names a page past the end of physical memory
    nic._rx_posted = type(nic._rx_posted)(([(pfn + (1 << 30), off, ln) for pfn, off, ln in sg], cap, cookie)
                                          for sg, cap, cookie in nic._rx_posted)
    sched.run_while(lambda: not (client.done and server.done), max_events=2_000_000)
    halted = sched.halted
    assert halted is not None
    # what is still due next: the batched path keeps one event per delivery, the per-segment one one
    # per segment, so compare the earliest receive event of each host
    first = {}
    for ev in sorted(sched.pending(), key=lambda ev: (ev.time_ns, ev.seq)):
        if ev.label == "nic rx":
            first.setdefault(ev.kernel.name, (ev.time_ns, ev.seq))
    return (halted.host, halted.code, sched.events_run, sched.now_ns, halted.detail.splitlines()[-1], first)


@pytest.mark.parametrize("victim,after_events", [("winsrv", 600), ("client", 300), ("client", 900)])
def test_a_bad_receive_buffer_halts_the_same_host_at_the_same_event_batched_or_not(victim, after_events):
    """The pump runs the other host's RSC joins inside this host's event: a DMA fault there must
    bug-check the host whose NIC faulted, at the event it faulted in, and leave every other pending
    segment queued, exactly as one event per segment does."""
    single = _halt_on_bad_receive_buffers(False, victim, after_events)
    batched = _halt_on_bad_receive_buffers(True, victim, after_events)
    assert single[0] == victim
    assert batched == single


def test_stepping_with_run_one_under_a_real_time_hook_plans_no_batch_and_runs_the_same(monkeypatch):
    """The real-time bridge steps with run_one and a before_advance hook: claim_next never says yes,
    so the pump must not plan batches or take other deliveries off the heap only to put them back."""
    from stack.nic import segrun
    calls = {"_adopt": 0, "_batch": 0, "_requeue": 0}
    for name in calls:
        original = getattr(segrun, name)

        def counted(*args, _name=name, _original=original):
            calls[_name] += 1
            return _original(*args)
        monkeypatch.setattr(segrun, name, counted)
    results = []
    for batching in (False, True):
        log: list = []
        with monkeypatch.context() as patch:
            _spy(patch, log, [])
            world, server, client = _echo_world(batching, 2, 256 * KiB)
            sched = world.scheduler
            sched.before_advance = lambda t: None
            for _ in range(1_000_000):
                if client.done and server.done:
                    break
                sched.run_one()
            world.check()
        results.append((log, sched.events_run, world.now_ns))
    assert results[0] == results[1]
    assert calls == {"_adopt": 0, "_batch": 0, "_requeue": 0}


def _nic_state(world) -> tuple:
    rows = []
    for name, host in sorted(world.hosts.items()):
        nic = host.nic
        c = nic.counters
        units = sorted((flow.hex(), u.segments, u.ip_length, u.next_seq, u.extra_bytes, len(u.extra), u.psh)
                       for flow, u in nic._rsc_open.items())
        rows.append((name, c.frames_in, c.bytes_in, c.rsc_coalesced_segments, len(nic._rx_posted), nic._rsc_held,
                     nic._cause, nic._fire_scheduled, c.interrupts, nic.dma_rx_bytes, tuple(units)))
    return tuple(rows)


def test_a_run_loop_condition_sees_each_open_rsc_unit_as_between_single_segment_events():
    """run_while asks its condition before every event, claimed ones too: at a batched segment the open
    RSC unit (segments, IP length, next sequence, buffers) must already hold every segment before
    it, as it does between single-segment events, not catch up at the end of the batch."""
    seen = []
    for batching in (False, True):
        world, server, client = _echo_world(batching, 3, 512 * KiB)
        states: list = []

        def condition(world=world, states=states, server=server, client=client):
            states.append((world.scheduler.events_run, world.now_ns, _nic_state(world)))
            return not (client.done and server.done)
        world.run_while(condition)
        seen.append((states, world.scheduler.claimed))
    (single, _), (batched, claimed) = seen
    assert claimed > 100  # the pump ran, in batches
    assert batched == single


def _probed_echo(monkeypatch, batching: bool, seed: int) -> tuple:
    """An echo where, at a few segments' arrival times (exactly, or a nanosecond either side), an event
    of its own notes the NICs' state: queued just before the large send's segments or just after
    them, so an equal-time tie goes one way or the other by insertion number."""
    import random

    from stack.usermode.programs import echo_client, echo_server
    from world_harness import any_address, run_programs, server_address, start
    rng = random.Random(seed)
    log: list = []
    deliver_large = EmulatedNic.deliver_large
    world = lab(seed=seed, rsc=True, interrupt_moderation_rate=rng.choice(["Adaptive", "Off", 20000]))

    def probe(tag):
        sched = world.scheduler
        log.append((tag, sched.now_ns, sched.events_run, _nic_state(world)))

    def deliver_large_probed(self, unit, lengths, times):
        sched = self.kernel.scheduler
        plan = []
        for _ in range(rng.choice([0] * 6 + [1, 2])):
            t = times[rng.randrange(len(times))] + rng.choice([0, 0, 0, -1, 1])
            kernel = rng.choice([self.kernel, None])
            plan.append((rng.random() < 0.5, t, kernel))
        for before, t, kernel in plan:
            if before:
                sched.call_at(t, kernel, probe, ("before", self.name, t), label="probe")
        deliver_large(self, unit, lengths, times)
        for before, t, kernel in plan:
            if not before:
                sched.call_at(t, kernel, probe, ("after", self.name, t), label="probe")
    monkeypatch.setattr(EmulatedNic, "deliver_large", deliver_large_probed)
    for host in world.hosts.values():
        host.nic.chain_segments = batching
    data = pattern(seed, 256 * KiB)
    server = start(world, "winsrv", echo_server, any_address(4, 7))
    world.run_for(1_000_000)
    client = start(world, "client", echo_client, server_address(world, 4, 7), data)
    run_programs(world, server, client)
    assert client.result.received_sha256 == hashlib.sha256(data).hexdigest()
    return log, world.scheduler.events_run, world.now_ns, _nic_state(world), world.scheduler.claimed


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_segments_put_back_on_the_heap_keep_their_place_among_equal_time_events(monkeypatch, seed):
    """Events due at the very time of a segment interrupt the pump; the segments it puts back
    (_requeue) must keep the insertion numbers deliver_large reserved for them, so a tie with an
    event queued before or after the large send still goes the way it goes with single events."""
    with monkeypatch.context() as patch:
        single = _probed_echo(patch, False, seed)
    with monkeypatch.context() as patch:
        batched = _probed_echo(patch, True, seed)
    assert batched[4] > 100  # the pump ran
    assert batched[:4] == single[:4]
