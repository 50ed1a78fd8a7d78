"""Per-packet cost of the emulated datapath (a script, not a test).

    python tests/bench/bench_packet_path.py [--frames N] [--mib M] [--lso on|off|both]
                                            [--only ndis|tcp] [--profile ndis|tcp] [--top N]

(a) NDIS: two hosts on one link (tests/stack/ndis/ndis_harness.py), each with
    netvmini over an EmulatedNic and a tiny bound protocol; host A sends
    `--frames` 1514-byte frames in batches, host B's protocol receives and
    returns them.  This is NIC + NDIS + kernel only: no transport.
(b) TCP: a bulk transfer client -> winsrv through the whole stack of
    `default_world` (user program -> AFD -> tcpip -> NDIS -> NIC -> link ->
    switch -> link -> NIC -> NDIS -> tcpip -> AFD -> user program).

Reported per run: CPU µs per frame on the wire, payload MB/s by process CPU
time (the machine may be shared, so CPU time is the steadier figure; wall is
shown too), scheduler events per frame, and payload bytes copied
(kernel.copies) per payload byte.  `--profile` prints a cProfile of one part
sorted by tottime.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "stack" / "ndis"))

FRAME_LEN = 1514
BATCH = 32


def _timed(fn: Callable[[], None], profile: bool, top: int) -> tuple[float, float]:
    """(cpu seconds, wall seconds) of fn(), optionally under cProfile."""
    profiler = cProfile.Profile() if profile else None
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    fn()
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(top)
    return cpu, wall


def _row(name: str, frames: int, payload: int, cpu: float, wall: float, events: int, copied: int) -> str:
    return (f"{name:<22}{frames:>9}{cpu * 1e6 / max(frames, 1):>10.1f}{payload / cpu / 1e6:>10.2f}"
            f"{payload / wall / 1e6:>10.2f}{events / max(frames, 1):>9.2f}{copied / max(payload, 1):>10.3f}")


HEADER = (f"{'run':<22}{'frames':>9}{'µs/frame':>10}{'MB/s cpu':>10}{'MB/s wall':>10}{'ev/frame':>9}"
          f"{'copies/B':>10}")


def bench_ndis(frames: int, profile: bool, top: int) -> str:
    """Host A sends `frames` frames to host B in batches of BATCH (one scheduler event per batch)."""
    from ndis_harness import MAC_A, MAC_B, ethernet, two_hosts

    hosts = two_hosts(rx_ring_size=256, latency_ns=10_000)
    frame = ethernet(MAC_B, MAC_A, bytes(range(256)) * 6)[:FRAME_LEN]
    sched = hosts.scheduler
    events0 = sched.events_run
    machine = hosts.machine
    ka = hosts.proto_a.kernel
    send = hosts.proto_a.send

    def send_batch() -> None:
        for _ in range(BATCH):
            send(frame)

    def run() -> None:
        sent = 0
        while sent < frames:
            machine.run_in(ka, send_batch)
            sent += BATCH
            sched.run_until_idle(max_events=1_000_000)
        assert sched.halted is None, sched.halted

    cpu, wall = _timed(run, profile, top)
    sent = (frames + BATCH - 1) // BATCH * BATCH
    received = len(hosts.proto_b.received)
    assert received == sent, f"sent {sent} frames, B received {received}"
    assert len(hosts.proto_a.completed) == sent
    copied = sum(k.copies.total_bytes for k in machine.kernels.values())
    return _row("ndis one-way", sent, sent * FRAME_LEN, cpu, wall, sched.events_run - events0, copied)


def bench_tcp(mib: float, lso: bool, profile: bool, top: int) -> str:
    """A bulk_sender on client -> bulk_receiver on winsrv through default_world."""
    from stack.nic import NicOffloads
    from stack.tcpip.addr import SockAddr
    from stack.tcpip.tcp import MS, TcpConfig
    from stack.usermode.programs import bulk_receiver, bulk_sender
    from stack.usermode.socket import run_program
    from stack.world import default_world

    total = int(mib * 1024 * 1024)
    world = default_world(1, services=False, offloads=NicOffloads(lso=lso), tcp_config=TcpConfig(time_wait_ns=1000 * MS))
    server = run_program(world.host("winsrv").kernel, bulk_receiver, SockAddr.parse("0.0.0.0:9"))
    world.run_for(1_000_000)
    nics = [world.host(h).nic for h in ("client", "winsrv")]
    frames0 = sum(n.counters.frames_out for n in nics)
    copies0 = sum(world.host(h).kernel.copies.total_bytes for h in ("client", "winsrv"))
    events0 = world.scheduler.events_run
    client = run_program(world.host("client").kernel, bulk_sender, SockAddr.parse("10.0.0.1:9"), total)

    def run() -> None:
        world.run_while(lambda: not (client.done and server.done), max_events=100_000_000)

    cpu, wall = _timed(run, profile, top)
    world.check()
    client.raise_error()
    server.raise_error()
    assert server.result.received == total, (server.result.received, total)
    assert server.result.received_sha256 == client.result.sent_sha256, "transfer corrupted"
    frames = sum(n.counters.frames_out for n in nics) - frames0
    copied = sum(world.host(h).kernel.copies.total_bytes for h in ("client", "winsrv")) - copies0
    return _row(f"tcp bulk, LSO {'on' if lso else 'off'}", frames, total, cpu, wall,
                world.scheduler.events_run - events0, copied)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000, help="frames for the NDIS run (default 20000)")
    parser.add_argument("--mib", type=float, default=8.0, help="MiB for the TCP run (default 8)")
    parser.add_argument("--lso", choices=("on", "off", "both"), default="both")
    parser.add_argument("--only", choices=("ndis", "tcp"), default=None)
    parser.add_argument("--profile", choices=("ndis", "tcp"), default=None)
    parser.add_argument("--top", type=int, default=40, help="profile rows to print")
    args = parser.parse_args()
    rows = []
    if args.only in (None, "ndis"):
        rows.append(bench_ndis(args.frames, args.profile == "ndis", args.top))
    if args.only in (None, "tcp"):
        for lso in {"on": (True,), "off": (False,), "both": (True, False)}[args.lso]:
            rows.append(bench_tcp(args.mib, lso, args.profile == "tcp" and lso == (args.lso != "off"), args.top))
    print(HEADER)
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
