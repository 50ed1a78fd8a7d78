"""EXPERIMENT (issue 14, "units"): the NIC's interrupt throttle (Intel's ITR: the shortest
interval between two interrupts) beside its moderation delay.

Intel's adapters moderate with both a delay after a packet and a cap on the interrupt rate
("Interrupt Moderation Rate sets the Interrupt Throttle Rate (ITR)", Intel Ethernet Adapters
and Devices User Guide; Linux e1000 docs: InterruptThrottleRate beside RxIntDelay).  The
throttle is off (0) by default: today's behaviour, every transcript unchanged."""

from __future__ import annotations

from ndis_harness import MAC_A, MAC_B, ethernet, two_hosts

from stack.nic.events import Interrupt

US = 1000


def _interrupt_times(throttle_ns: int, gaps_ns: list[int]) -> tuple[list[int], int]:
    """Send one frame per gap (a frame at each cumulative offset) from A to B; B's interrupt
    times (virtual ns) and how many frames B's protocol received."""
    h = two_hosts(latency_ns=0, interrupt_moderation_ns=10 * US)
    h.nic_b.interrupt_throttle_ns = throttle_ns
    times: list[int] = []
    host_b = h.proto_b.kernel.name
    h.machine.bus.subscribe(lambda e: times.append(e.time_ns)
                            if isinstance(e, Interrupt) and e.host == host_b else None)
    start = h.scheduler.now_ns + 1_000 * US
    at = start
    for i, gap in enumerate(gaps_ns):
        at += gap
        h.scheduler.call_at(at, h.proto_a.kernel, h.proto_a.send, ethernet(MAC_B, MAC_A, bytes([i]) * 60))
    h.run()
    return [t - start for t in times], len(h.proto_b.received)


def test_interrupt_throttle_leaves_sparse_traffic_at_the_moderation_delay():
    sparse = [1_000 * US] * 4  # a frame every millisecond: far slower than any throttle
    assert _interrupt_times(100 * US, sparse) == _interrupt_times(0, sparse)


def test_interrupt_throttle_spaces_interrupts_and_batches_a_burst_into_fewer_dpcs():
    burst = [15 * US] * 12  # a frame every 15 us: each its own interrupt with a 10 us delay alone
    plain, got_plain = _interrupt_times(0, burst)
    throttled, got_throttled = _interrupt_times(60 * US, burst)
    assert got_plain == got_throttled == 12
    assert len(plain) == 12
    assert len(throttled) < len(plain) // 2
    assert all(b - a >= 60 * US for a, b in zip(throttled, throttled[1:]))
    assert throttled[0] == plain[0]  # the first frame of a burst still waits only the moderation delay
