"""Experiment (issue 14, ring): winsrv's receive ring during a bulk echo (MTU 1500, LSO+RSC, Adaptive
moderation, the NICs at the links' 10 Gb/s) - how close it runs to empty, and the state at the first
frame it drops for want of a posted buffer (no_rx_buffer).

    PYTHONPATH=. python3 tests/bench/bench_rx_ring.py --mib 4 --limits 1,8 [--bulk-rate 4000]

Per row (HyStart++'s L = slow_start_ack_limit): virtual ms, ring drops, indications made with
NDIS_RECEIVE_FLAGS_RESOURCES (netvmini's LOW_RX_FRACTION), the fewest buffers posted at a DPC, the most
buffers out with tcpip/afd (indicated, not returned) and the interrupt spacing; at the first drop:
posted, held by the open RSC units, completed but not yet taken by a DPC, out with tcpip/afd, time
since the last interrupt and the throttle.  --bulk-rate overrides the bulk_latency class's interrupts
per second (4000: igb's 1 GbE rate, the lab's before ixgbe's 12,000 for 10 Gb/s NICs).
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from stack.ndis import netvmini  # noqa: E402
from stack.nic import NicOffloads, itr  # noqa: E402
from stack.nic import nic as nicmod  # noqa: E402
from stack.tcpip.addr import SockAddr  # noqa: E402
from stack.tcpip.tcp import MS, TcpConfig  # noqa: E402
from stack.usermode.programs import echo_client, echo_server, pattern  # noqa: E402
from stack.usermode.socket import run_program  # noqa: E402
from stack.world import default_world  # noqa: E402

WATCH = "winsrv-nic"


def _out_with_tcpip(nic) -> int:
    """Buffers neither posted, nor held by an open RSC unit, nor completed and waiting for the DPC."""
    waiting = sum(1 + (len(c.rsc.extra) if c.rsc else 0) for c in nic._rx_done)
    return nic.rx_ring_size - nic.rx_posted - nic._rsc_held - waiting


def run(data: bytes, limit: int) -> dict:
    seen: dict = {"fires": [], "min_posted": 1 << 30, "max_out": 0, "resources": 0, "first_drop": None}
    drop, fire, take = nicmod.EmulatedNic._drop, nicmod.EmulatedNic._fire, nicmod.EmulatedNic.take_rx_completions

    def _drop(self, reason, length):
        if self.name == WATCH and reason == "no_rx_buffer" and seen["first_drop"] is None:
            now = self.kernel.scheduler.now_ns
            seen["first_drop"] = (f"t={now / 1e6:.3f} ms posted {self.rx_posted}, in open RSC units {self._rsc_held}, "
                                  f"awaiting the DPC {len(self._rx_done)} completions, out with tcpip/afd "
                                  f"{_out_with_tcpip(self)}; {(now - self._last_fire_ns) / 1e3:.1f} us since the "
                                  f"last interrupt, throttle {self.interrupt_throttle_ns / 1e3:.1f} us")
        return drop(self, reason, length)

    def _fire(self):
        if self.name == WATCH:
            seen["fires"].append(self.kernel.scheduler.now_ns)
        return fire(self)

    def _take(self, n=None):
        if self.name == WATCH and self._rx_done:
            seen["min_posted"] = min(seen["min_posted"], self.rx_posted)
            seen["max_out"] = max(seen["max_out"], _out_with_tcpip(self))
            seen["resources"] += self.rx_posted < max(1, self.rx_ring_size // netvmini.LOW_RX_FRACTION)
        return take(self, n)

    nicmod.EmulatedNic._drop, nicmod.EmulatedNic._fire, nicmod.EmulatedNic.take_rx_completions = _drop, _fire, _take
    try:
        config = TcpConfig(time_wait_ns=1000 * MS, slow_start_ack_limit=limit)
        world = default_world(1, services=False, offloads=NicOffloads(lso=True, rsc=True), tcp_config=config)
        server = run_program(world.host("winsrv").kernel, echo_server, SockAddr.parse("0.0.0.0:7"))
        world.run_for(1_000_000)
        v0 = world.now_ns
        client = run_program(world.host("client").kernel, echo_client, SockAddr.parse("10.0.0.1:7"), data)
        world.run_while(lambda: not (client.done and server.done), max_events=100_000_000)
        client.raise_error()
        assert client.result.received_sha256 == hashlib.sha256(data).hexdigest()
        seen["virtual_ms"] = (world.now_ns - v0) / 1e6
        seen["drops"] = world.host("winsrv").nic.counters.drops["no_rx_buffer"]
    finally:
        nicmod.EmulatedNic._drop, nicmod.EmulatedNic._fire, nicmod.EmulatedNic.take_rx_completions = drop, fire, take
    return seen


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mib", type=float, default=4)
    p.add_argument("--limits", default="1,8")
    p.add_argument("--bulk-rate", type=int, default=None, help="bulk_latency interrupts/s (experiment)")
    args = p.parse_args()
    if args.bulk_rate:
        itr.BULK_RATE_10G = args.bulk_rate
    data = pattern(42, int(args.mib * 1024 * 1024))
    print(f"bulk echo {args.mib} MiB, winsrv's ring of 512, bulk_latency at {itr.BULK_RATE_10G} interrupts/s")
    for limit in args.limits.split(","):
        s = run(data, int(limit))
        gaps = [b - a for a, b in zip(s["fires"], s["fires"][1:])] or [0]
        print(f"  L={limit}: {s['virtual_ms']:.2f} virtual ms, ring drops {s['drops']}, RESOURCES indications "
              f"{s['resources']}, fewest posted at a DPC {s['min_posted']}, most out with tcpip/afd {s['max_out']}, "
              f"interrupts {len(s['fires'])} (median gap {statistics.median(gaps) / 1e3:.1f} us)")
        if s["first_drop"]:
            print(f"    first drop: {s['first_drop']}")


if __name__ == "__main__":
    main()
