"""Receive livelock (Mogul & Ramakrishnan, "Eliminating Receive Livelock in an Interrupt-driven
Kernel", USENIX 1996), on the emulated 2003-era winsrv (a script, not a test).

    PYTHONPATH=. python3 tests/bench/bench_livelock.py [--ms 20]

`client` sends small UDP datagrams to winsrv at a rising offered rate; a user-mode program on
winsrv receives them (recvfrom, then APP_WORK_NS of its own work per datagram - say a DNS
lookup).  Delivered = datagrams the program finished within the window.  Two receive paths:

  (a) an interrupt per packet, all protocol work at DPC level: no interrupt moderation, the
      miniport's DPC indicates everything on the ring (today's NDIS default);
  (b) interrupt moderation (one interrupt per 125 us, Intel's 8000 interrupts/s) and a per-DPC
      quota (NDIS_RECEIVE_THROTTLE_PARAMETERS.MaxNblsToIndicate) sized from the cost table so
      that receive DPCs may take at most half the processor (Mogul & Ramakrishnan's cycle limit);
      what does not fit stays on the NIC's ring, and a full ring drops at no CPU cost.

Nothing here decides the shape of the curves: the processor model runs ISRs before DPCs before
threads, and the costs come from stack/kernel/costs.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from stack.usermode.socket import run_program  # noqa: E402
from stack.usermode.udpload import APP_WORK_NS, PAYLOAD, SinkStats, udp_blaster, udp_sink  # noqa: E402
from stack.world import World, default_world  # noqa: E402

MODERATION_NS = 125_000  # Intel AP-450: InterruptThrottleRate 8000 interrupts/s
BLASTERS = 8
RATES = [10_000, 20_000, 40_000, 60_000, 80_000, 120_000, 160_000, 240_000, 320_000, 480_000]


def quota_for_half_the_processor(world: World) -> int:
    """NBLs per DPC whose receive work fits in half a moderation interval (from the cost table)."""
    costs = world.host("winsrv").kernel.cpu_model.costs
    per_packet = costs["ndis_indicate"] + costs["tcp_rx_segment"] + costs["copy_byte"] * len(PAYLOAD)
    return max(1, int(0.5 * MODERATION_NS / per_packet))


def lab(mode: str, profile: str) -> tuple[World, SinkStats, int]:
    world = default_world(1, services=False)
    world.set_processors("winsrv", profile, 1)
    host = world.host("winsrv")
    quota = 0
    if mode == "a":
        host.nic.interrupt_moderation_ns = 0
    else:
        host.nic.interrupt_moderation_ns = MODERATION_NS
        quota = quota_for_half_the_processor(world)
        host.adapter.interrupt.throttle.MaxNblsToIndicate = quota
    stats = SinkStats(until_ns=1 << 62)
    run_program(host.kernel, udp_sink, stats, name="udp-sink")
    world.run_until_idle(max_events=100_000)
    return world, stats, quota


def point(mode: str, rate: int, window_ms: float, profile: str) -> tuple[float, float, int]:
    world, stats, quota = lab(mode, profile)
    window_ns = int(window_ms * 1_000_000)
    count = max(1, rate * window_ns // 1_000_000_000)
    start = world.now_ns
    stats.until_ns = start + window_ns
    stats.delivered = 0
    nic = world.host("winsrv").nic
    arrived0 = nic.counters.frames_in + sum(nic.counters.drops.values())
    for i in range(BLASTERS):  # several senders: one client thread cannot send this fast by itself
        run_program(world.host("client").kernel, udp_blaster, "10.0.0.1", rate // BLASTERS, count // BLASTERS,
                    name=f"blaster{i}")
    world.scheduler.run_until(start + window_ns, max_events=20_000_000)
    world.check()
    arrived = nic.counters.frames_in + sum(nic.counters.drops.values()) - arrived0  # what reached winsrv's NIC
    return arrived / (window_ns / 1e9), stats.delivered / (window_ns / 1e9), quota


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ms", type=float, default=20.0, help="offered-load window in virtual ms")
    parser.add_argument("--profile", default="2003")
    args = parser.parse_args(argv)
    wall = time.perf_counter()
    rows = []
    quota = 0
    for rate in RATES:
        offered, a, _ = point("a", rate, args.ms, args.profile)
        _, b, quota = point("b", rate, args.ms, args.profile)
        rows.append((offered, a, b))
    print(f"profile {args.profile}; window {args.ms} ms; app work {APP_WORK_NS // 1000} us/datagram; "
          f"(b) moderation {MODERATION_NS // 1000} us, quota {quota} NBLs/DPC; {time.perf_counter() - wall:.1f} s wall")
    print(f"{'offered pkt/s':>14} {'(a) delivered':>14} {'(b) delivered':>14}")
    for offered, a, b in rows:
        print(f"{offered:14.0f} {a:14.0f} {b:14.0f}")
    top = max(max(a, b) for _, a, b in rows) or 1
    print("\ndelivered vs offered (a = interrupt per packet, all work at DPC; b = moderation + quota)")
    for offered, a, b in rows:
        bar_a = "a" * round(a / top * 50)
        bar_b = "b" * round(b / top * 50)
        print(f"{offered:9.0f} | {bar_a}\n{'':9} | {bar_b}")


if __name__ == "__main__":
    main()
