"""The NIC under the Adaptive "Interrupt Moderation Rate" (stack/nic/itr.py), frames through NDIS to a protocol.

Intel's Adaptive setting throttles bulk traffic to a few thousand interrupts per second while a
lone packet after a quiet spell still interrupts at once (Intel Ethernet Adapters and Devices
User Guide, "Interrupt Moderation Rate"; the classes of Linux igb's igb_update_itr).  The ITR
spaces interrupts even with no moderation delay: receive livelock needs the rate Off."""

from __future__ import annotations

from ndis_harness import MAC_A, MAC_B, ethernet, two_hosts

from stack.nic.events import Interrupt
from stack.nic.itr import BULK_LATENCY, BULK_RATE_10G, LOWEST_LATENCY, class_rates

US = 1000


def _run(setting, frames: list[tuple[int, int]], *, moderation_ns: int = 10 * US):
    """Send (gap before it in ns, payload size) frames from A to B with B's NIC at `setting`; B's
    interrupt times relative to the first frame's send, the frames' send times, frames received, B's NIC."""
    h = two_hosts(latency_ns=0, interrupt_moderation_ns=moderation_ns, rx_ring_size=512)  # the lab's ring
    h.nic_b.set_interrupt_moderation_rate(setting)
    h.link.bandwidth_bps = 10_000_000_000  # the lab's wire speed: 1500-byte frames every 1.2 us
    times: list[int] = []
    host_b = h.proto_b.kernel.name
    h.machine.bus.subscribe(lambda e: times.append(e.time_ns)
                            if isinstance(e, Interrupt) and e.host == host_b else None)
    start = h.scheduler.now_ns + 1_000 * US
    at = start
    sent = []
    for i, (gap, size) in enumerate(frames):
        at += gap
        sent.append(at - start)
        h.scheduler.call_at(at, h.proto_a.kernel, h.proto_a.send, ethernet(MAC_B, MAC_A, bytes([i & 0xFF]) * size))
    h.run()
    return [t - start for t in times], sent, len(h.proto_b.received), h.nic_b


BULK = [(2 * US, 1500)] * 200  # 1500-byte payloads every 2 us: a 6 Gb/s stream for 400 us
LONE = [(5_000 * US, 46)]  # then 5 ms of quiet and one small frame


def test_bulk_traffic_takes_the_nic_to_bulk_latency_and_spaces_its_interrupts_250_us_apart():
    times, _, got, nic = _run("Adaptive", BULK)
    assert got == 200
    assert nic.itr_adaptive.latency_class == BULK_LATENCY
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps[-1] >= 250 * US
    off_times, _, _, _ = _run("Off", BULK)
    assert len(times) < len(off_times) // 4


def test_a_lone_small_packet_after_bulk_still_interrupts_after_only_the_moderation_delay():
    times, sent, got, nic = _run("Adaptive", BULK + LONE)
    assert got == 201
    off_times, _, _, _ = _run("Off", BULK + LONE)
    assert times[-1] == off_times[-1]  # the moderation delay after the wire, as with no throttle at all
    assert times[-1] - sent[-1] < 11 * US  # not the bulk class's 250 us
    assert nic.itr_adaptive.latency_class != BULK_LATENCY  # and that interrupt started the way back down


def test_interactive_traffic_stays_at_lowest_latency():
    ping_pong = [(200 * US, 64)] * 20
    times, sent, got, nic = _run("Adaptive", ping_pong)
    assert got == 20
    assert nic.itr_adaptive.latency_class == LOWEST_LATENCY
    assert times == _run("Off", ping_pong)[0]  # no packet waits for the throttle


def test_with_no_moderation_delay_adaptive_still_throttles_and_off_interrupts_per_packet():
    # the receive-livelock setting (`!udpload /nomod`) needs the Interrupt Moderation Rate Off too
    adaptive, _, got_adaptive, _ = _run("Adaptive", BULK, moderation_ns=0)
    off, _, got_off, _ = _run("Off", BULK, moderation_ns=0)
    assert got_adaptive == got_off == 200
    assert len(off) == 200
    assert len(adaptive) < 50


def test_the_same_traffic_gives_the_same_interrupts_every_time():
    first = _run("Adaptive", BULK + LONE)[0]
    assert _run("Adaptive", BULK + LONE)[0] == first


def test_a_nic_whose_link_speed_changes_after_install_takes_that_speeds_bulk_rate():
    # two_hosts installs 1 Gb/s NICs; the wire here is 10 Gb/s.  Raising the NIC's speed after
    # Adaptive is on must give it ixgbe's 12K bulk rate (itr.py), lowering it igb's 4K again,
    # and switching Adaptive on again keeps the speed's rates.
    h = two_hosts(latency_ns=0, interrupt_moderation_ns=10 * US, rx_ring_size=512)
    nic = h.nic_b
    nic.set_interrupt_moderation_rate("Adaptive")
    assert nic.itr_adaptive.rates[BULK_LATENCY] == 4_000
    nic.set_link_speed(10_000_000_000)
    assert nic.link_speed_bps == 10_000_000_000
    assert nic.itr_adaptive.rates == class_rates(10_000_000_000)
    assert nic.itr_adaptive.rates[BULK_LATENCY] == BULK_RATE_10G
    nic.set_interrupt_moderation_rate("Adaptive")  # restart: the rates stay the 10 Gb/s ones
    assert nic.itr_adaptive.rates[BULK_LATENCY] == BULK_RATE_10G
    nic.set_link_speed(1_000_000_000)
    assert nic.itr_adaptive.rates[BULK_LATENCY] == 4_000


def test_a_bulk_stream_at_a_nic_raised_to_10_gbps_interrupts_83_us_apart_not_250():
    def bulk_gaps(speed_bps: int) -> list[int]:
        h = two_hosts(latency_ns=0, interrupt_moderation_ns=10 * US, rx_ring_size=512)
        h.nic_b.set_interrupt_moderation_rate("Adaptive")
        h.nic_b.set_link_speed(speed_bps)
        h.link.bandwidth_bps = 10_000_000_000
        times: list[int] = []
        host_b = h.proto_b.kernel.name
        h.machine.bus.subscribe(lambda e: times.append(e.time_ns)
                                if isinstance(e, Interrupt) and e.host == host_b else None)
        at = h.scheduler.now_ns + 1_000 * US
        for i in range(200):
            at += 2 * US
            h.scheduler.call_at(at, h.proto_a.kernel, h.proto_a.send, ethernet(MAC_B, MAC_A, bytes([i]) * 1500))
        h.run()
        assert h.nic_b.itr_adaptive.latency_class == BULK_LATENCY
        return [b - a for a, b in zip(times, times[1:])]
    assert 83 * US <= bulk_gaps(10_000_000_000)[-1] < 250 * US
    assert bulk_gaps(1_000_000_000)[-1] >= 250 * US
