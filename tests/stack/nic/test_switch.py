"""The learning switch: learning, flooding, aging and per-port counters."""

from __future__ import annotations

from stack.kernel.events import EventBus
from stack.kernel.scheduler import NS_PER_S, Scheduler
from stack.nic import FrameDropped, Link, Switch

MACS = [bytes.fromhex(f"0200000000{i:02x}") for i in range(1, 4)]
BROADCAST = b"\xff" * 6
MULTICAST = bytes.fromhex("01005e000001")


class Host:
    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.sink = None

    def deliver(self, frame: bytes, time_ns: int) -> None:
        self.got.append(frame)

    def attach(self, sink) -> None:
        self.sink = sink


def lab(aging_ns: int = 300 * NS_PER_S):
    sched = Scheduler()
    bus = EventBus(clock=lambda: sched.now_ns)
    sw = Switch(sched, bus, aging_ns=aging_ns)
    hosts = []
    for i in range(3):
        host = Host()
        Link(sched, name=f"l{i}", latency_ns=1000).connect(host, sw.add_port(f"p{i}"))
        hosts.append(host)
    return sched, bus, sw, hosts


def send(sched, host: Host, dst: bytes, src: bytes, payload: bytes = bytes(46)) -> None:
    host.sink.deliver(dst + src + b"\x88\xb5" + payload, sched.now_ns)
    sched.run_until_idle()


def test_unknown_destination_is_flooded_to_every_other_port():
    sched, _, sw, (h0, h1, h2) = lab()
    send(sched, h0, MACS[1], MACS[0])
    assert len(h1.got) == 1 and len(h2.got) == 1 and h0.got == []
    assert sw.flooded_frames == 1
    assert sw.ports[1].counters.flooded == 1 and sw.ports[0].counters.rx_frames == 1


def test_switch_learns_source_and_forwards_replies_to_one_port():
    sched, _, sw, (h0, h1, h2) = lab()
    send(sched, h0, MACS[1], MACS[0])
    send(sched, h1, MACS[0], MACS[1])
    assert len(h0.got) == 1 and len(h2.got) == 1  # the reply went to h0 only
    send(sched, h0, MACS[1], MACS[0])
    assert len(h1.got) == 2 and len(h2.got) == 1
    assert sw.lookup(MACS[0]) is sw.ports[0] and sw.lookup(MACS[1]) is sw.ports[1]
    assert sw.forwarded_frames == 2


def test_broadcast_and_multicast_are_always_flooded():
    sched, _, sw, (h0, h1, h2) = lab()
    send(sched, h1, MACS[0], MACS[1])
    send(sched, h0, BROADCAST, MACS[0])
    send(sched, h0, MULTICAST, MACS[0])
    assert len(h1.got) == 2 and len(h2.got) == 3
    assert MULTICAST not in sw.mac_table and BROADCAST not in sw.mac_table


def test_mac_entries_age_out_and_unicast_floods_again():
    sched, _, sw, (h0, h1, h2) = lab(aging_ns=NS_PER_S)
    send(sched, h1, MACS[0], MACS[1])
    send(sched, h0, MACS[1], MACS[0])
    assert len(h2.got) == 1
    sched.run_until(sched.now_ns + 2 * NS_PER_S)
    send(sched, h0, MACS[1], MACS[0])
    assert len(h2.got) == 2


def test_frame_for_a_mac_on_the_same_port_is_filtered():
    sched, _, sw, (h0, h1, h2) = lab()
    send(sched, h0, MACS[1], MACS[0])
    send(sched, h0, MACS[0], MACS[1])  # MACS[1] now appears on port 0, and MACS[0] lives there
    assert sw.ports[0].counters.filtered == 1


def test_runt_at_the_switch_is_dropped_counted_and_published():
    sched, bus, sw, (h0, h1, h2) = lab()
    drops = []
    bus.subscribe(lambda e: drops.append(e) if isinstance(e, FrameDropped) else None)
    h0.sink.deliver(b"short", 0)
    sched.run_until_idle()
    assert sw.ports[0].counters.runts == 1 and h1.got == [] and h2.got == []
    assert drops and drops[0].layer == "switch" and drops[0].reason == "runt" and drops[0].host == "sw0"
