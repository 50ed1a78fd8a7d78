"""Experiment (issue 14, "units"): bulk echo figures per MiB echoed under a given NIC interrupt
moderation / throttle and TCP delayed-ACK timer.  MTU 1500, LSO+RSC, pass-through on - the row
bench_throughput.py calls "MTU 1500, LSO+RSC".

    PYTHONPATH=. python3 tests/bench/bench_rsc_units.py --mib 4 --samples 3 \
        [--moderation-us 10] [--itr adaptive|off|minimal..extreme|N] [--itr-us N] [--delack-ms 200] [--ack-every 2]

--itr sets Intel's "Interrupt Moderation Rate" on both NICs (default: the lab's, Adaptive; stack/nic/itr.py);
--itr-us a fixed throttle interval in microseconds instead.  Also printed: interrupts per MiB.

Printed (both hosts together, per MiB echoed): CPU MB/s (median of --samples after a warm-up),
virtual ms, RSC units of 2+ segments and segments per unit, NBLs indicated, DPCs, pure ACKs
(TCP packets with no payload, SYN/FIN/RST excluded), large (LSO) sends, data packets handed to IP
and their average size, and Python calls (one cProfile run; exact).  A script, not a test.
"""
from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from stack.kernel import hostgc  # noqa: E402
from stack.nic import NicOffloads  # noqa: E402
from stack.tcpip.addr import SockAddr  # noqa: E402
from stack.tcpip.tcp import MS, TcpConfig  # noqa: E402
from stack.tcpip.tcpl import send as send_mod  # noqa: E402
from stack.usermode.programs import echo_client, echo_server, pattern  # noqa: E402
from stack.usermode.socket import run_program  # noqa: E402
from stack.world import default_world  # noqa: E402

COUNT = {"pure_acks": 0, "data_packets": 0}
_orig = send_mod.SendLayer.build_and_send


def _counting(self, tcb, segs, lso_mss):
    first = segs[0]
    plen = sum(s.payload_len for s in segs)
    if plen == 0 and not first.flags & 0x07:  # no SYN/FIN/RST
        COUNT["pure_acks"] += 1
    elif plen:
        COUNT["data_packets"] += 1
    return _orig(self, tcb, segs, lso_mss)


ITR_NS = 0
ITR_SETTING: str | int | None = None  # None: the lab's default


def run(data: bytes, moderation_ns: int | None, config: TcpConfig, profile: bool = False) -> dict:
    world = default_world(1, services=False, offloads=NicOffloads(lso=True, rsc=True), tcp_config=config)
    if moderation_ns is not None:
        for host in world.hosts.values():
            host.nic.interrupt_moderation_ns = moderation_ns
    for host in world.hosts.values():
        if ITR_NS:
            host.nic.set_interrupt_moderation_rate(1_000_000_000 // ITR_NS)
            host.nic.interrupt_throttle_ns = ITR_NS  # exactly, not rounded through a rate
        elif ITR_SETTING is not None:
            host.nic.set_interrupt_moderation_rate(ITR_SETTING)
    server = run_program(world.host("winsrv").kernel, echo_server, SockAddr.parse("0.0.0.0:7"))
    world.run_for(1_000_000)
    hosts = [world.host(h) for h in ("client", "winsrv")]
    snap = lambda: [(h.nic.counters.rsc_units, h.nic.counters.rsc_coalesced_segments, h.adapter.counters.nbls_indicated,
                     h.adapter.counters.dpcs, h.stack.counters.lso_sends, h.stack.counters.tcp_segments_received,
                     h.nic.counters.interrupts)
                    for h in hosts]
    before = snap()
    COUNT.update(pure_acks=0, data_packets=0)
    v0 = world.now_ns
    prof = cProfile.Profile() if profile else None
    cpu0 = time.process_time()
    client = run_program(world.host("client").kernel, echo_client, SockAddr.parse("10.0.0.1:7"), data)
    if prof:
        prof.enable()
    world.run_while(lambda: not (client.done and server.done), max_events=100_000_000)
    if prof:
        prof.disable()
    cpu = time.process_time() - cpu0
    client.raise_error()
    assert client.result.received_sha256 == hashlib.sha256(data).hexdigest()
    after = snap()
    d = [sum(a[i] - b[i] for a, b in zip(after, before)) for i in range(7)]
    mib = len(data) / (1 << 20)
    units, joined, indicated, dpcs, lso, segs_in, interrupts = d
    out = {"cpu_mbps": len(data) / cpu / 1e6, "virtual_ms_per_mib": (world.now_ns - v0) / 1e6 / mib,
           "rsc_units_per_mib": units / mib, "segs_per_rsc_unit": (joined + units) / units if units else 0,
           "indications_per_mib": indicated / mib, "interrupts_per_mib": interrupts / mib, "dpcs_per_mib": dpcs / mib,
           "pure_acks_per_mib": COUNT["pure_acks"] / mib, "large_sends_per_mib": lso / mib,
           "data_packets_per_mib": COUNT["data_packets"] / mib,
           "avg_send_bytes": 2 * len(data) / COUNT["data_packets"] if COUNT["data_packets"] else 0}
    if prof:
        out["calls_per_mib"] = pstats.Stats(prof).total_calls / mib
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mib", type=float, default=4)
    p.add_argument("--samples", type=int, default=3)
    p.add_argument("--moderation-us", type=float, default=None, help="NIC interrupt moderation (lab default 10)")
    p.add_argument("--delack-ms", type=float, default=200)
    p.add_argument("--ack-every", type=int, default=2)
    p.add_argument("--itr-us", type=float, default=0, help="EXPERIMENT: Intel ITR, shortest interval between interrupts")
    p.add_argument("--itr", default=None, help="Interrupt Moderation Rate: adaptive, off, minimal..extreme or N per s")
    args = p.parse_args()
    global ITR_NS, ITR_SETTING
    ITR_NS = int(args.itr_us * 1000)
    if args.itr is not None:
        from stack.nic.itr import setting_name
        ITR_SETTING = int(args.itr) if args.itr.isdigit() else setting_name(args.itr)
        if ITR_SETTING is None:
            p.error(f"unknown --itr {args.itr!r}")
    hostgc.settle(freeze=False)
    send_mod.SendLayer.build_and_send = _counting
    data = pattern(42, int(args.mib * 1024 * 1024))
    config = TcpConfig(time_wait_ns=1000 * MS, delayed_ack_ns=int(args.delack_ms * MS),
                       delayed_ack_every_segments=args.ack_every)
    mod = None if args.moderation_us is None else int(args.moderation_us * 1000)
    run(data, mod, config)  # warm-up
    runs = sorted((run(data, mod, config) for _ in range(args.samples)), key=lambda r: r["cpu_mbps"])
    med = runs[len(runs) // 2]
    med["calls_per_mib"] = run(data, mod, config, profile=True)["calls_per_mib"]
    print(f"itr={args.itr or 'lab default'} itr_us={args.itr_us} moderation={args.moderation_us}us delack={args.delack_ms}ms every={args.ack_every} mib={args.mib} "
          f"cpu MB/s samples={[round(r['cpu_mbps'], 2) for r in runs]}")
    for k, v in med.items():
        print(f"  {k:<22} {v:,.2f}")


if __name__ == "__main__":
    main()
