"""Bulk-transfer throughput through the whole emulated stack, next to a real asyncio echo on 127.0.0.1.

    python tests/bench/bench_throughput.py [--mib 16] [--profile] [--profile-only] [--layers] [--itr-us N]
                                           [--cpu x64|none] [--samples 3]
                                           [--gc settle|default]

Both sides do the same job: a client sends N bytes to an echo server and reads
them all back (byte-exact, hashed).  The emulated run goes user program -> AFD
IRPs -> tcpip (zero-copy partial MDLs) -> NDIS -> NIC (checksum offload, LSO
and RSC when on) -> link -> switch -> the other host and back.  Rows: the
standard 1500-byte MTU with LSO+RSC, LSO only, neither; and jumbo frames
(MTU 9000) with LSO+RSC.
Reported: MB/s of payload by wall clock and by process CPU time (the machine may
be shared), scheduler events (every one counted, and how many of them run_one dispatched: the
rest ran chained inside the event before them, Scheduler.claim), and payload copies per byte
from kernel.copies.

Rows with LSO+RSC run with paravirtual offload pass-through on (the default:
a large send crosses the switch as one unit and only the frames someone can
read are built, stack/nic/passthrough.py) and again with it off (every frame
cut and checksummed, as before it existed), in the same run.  Each row is the
median of --samples runs after one warm-up run.

The last row is a floor, not a run: the CPU time this Python needs for nothing
but the Internet checksums the emulated NICs compute for the same transfer
when every frame is real (each frame's TCP checksum is filled in on transmit
and verified on receive, and every byte crosses the stack twice).  With
pass-through on, segments that join an RSC unit are never checksummed, so the
floor bounds only the pass-through-off rows.
The host's garbage collector runs as the wskdbg command line sets it (--gc settle: wider
generations, stack.kernel.hostgc) unless --gc default.  --profile prints, for the MTU 1500
LSO+RSC rows with pass-through on and off, the top 30 functions by own time with calls and
milliseconds per MiB echoed (the calls are exact; cProfile inflates the milliseconds).
--layers runs the MTU 1500 LSO+RSC row once more and prints where its CPU time goes (thread CPU
time per MiB echoed, measured at layer boundaries, so approximate): by scheduler event kind, and
inside tcpip (NDIS receive indications, sends handed to NDIS, calls from AFD, completions up to
AFD, copies into clients' buffers).  --itr-us N gives both NICs that interrupt throttle
(`!nic itr`; bigger RSC units) in every row.
A script, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import pstats
import sys
import time
from heapq import heappop
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from stack.kernel import hostgc  # noqa: E402
from stack.nic import NicOffloads  # noqa: E402
from stack.wire.checksum import ones_sum  # noqa: E402
from stack.tcpip.addr import SockAddr  # noqa: E402
from stack.tcpip.tcp import MS, TcpConfig  # noqa: E402
from stack.usermode.programs import echo_client, echo_server, pattern  # noqa: E402
from stack.usermode.socket import run_program  # noqa: E402
from stack.world import default_world  # noqa: E402


def emulated_echo(data: bytes, lso: bool, rsc: bool, mtu: int, profile: bool, cpu: str | None = None,
                  passthrough: bool = True, started: Callable[[], None] | None = None) -> dict[str, float]:
    config = TcpConfig(time_wait_ns=1000 * MS)
    world = default_world(1, services=False, offloads=NicOffloads(lso=lso, rsc=rsc), tcp_config=config, mtu=mtu)
    for host in world.hosts.values():
        host.nic.passthrough = passthrough
        if ITR_NS:
            host.nic.interrupt_throttle_ns = ITR_NS
    if cpu is not None:  # both hosts' processors spend time (stack.kernel.cpu)
        for name in ("winsrv", "client"):
            world.set_processors(name, cpu)
    server = run_program(world.host("winsrv").kernel, echo_server, SockAddr.parse("0.0.0.0:7"))
    world.run_for(1_000_000)
    events0, claimed0 = world.scheduler.events_run, world.scheduler.claimed
    if started is not None:  # the transfer begins (--layers counts from here)
        started()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    client = run_program(world.host("client").kernel, echo_client, SockAddr.parse("10.0.0.1:7"), data)
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    world.run_while(lambda: not (client.done and server.done), max_events=100_000_000)
    if profiler:
        profiler.disable()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    world.check()
    client.raise_error()
    result = client.result
    assert result.received_sha256 == hashlib.sha256(data).hexdigest(), "echo corrupted"
    copies = sum(world.host(h).kernel.copies.total_bytes for h in ("client", "winsrv"))
    moved = 2 * len(data)  # each byte crosses the stack twice (there and back)
    events = world.scheduler.events_run - events0
    dispatched = events - (world.scheduler.claimed - claimed0)
    if profiler:
        mib = len(data) / (1 << 20)
        print_profile(profiler, mib, f"LSO={lso} RSC={rsc} MTU {mtu} pass-through "
                      f"{'on' if passthrough else 'off'}")
        print(f"events: {events / mib:,.0f} per MiB, {dispatched / mib:,.0f} of them dispatched by run_one")
    return {"wall_mbps": len(data) / wall / 1e6, "cpu_mbps": len(data) / cpu / 1e6, "seconds": wall,
            "events": events, "dispatched": dispatched, "copies_per_byte": copies / moved,
            "lso_sends": world.host("client").stack.counters.lso_sends,
            "virtual_ms": world.now_ns / 1e6}


ITR_NS = 0  # --itr-us: the NICs' interrupt throttle (0: none, the lab's default)


def layer_times(data: bytes) -> None:
    """--layers: thread CPU time per MiB of the MTU 1500 LSO+RSC row, by scheduler event kind and
    at tcpip's boundaries.  Each boundary is a timing wrapper around one function, counted where
    it is outermost; the wrappers' own cost is in the figures, so they are approximate."""
    from stack.kernel.scheduler import Scheduler
    from stack.tcpip.stack import TcpipStack
    from stack.tcpip.tcpl import receive as tcp_receive
    from stack.tcpip.transport import ConnectionEndpoint

    clock = time.thread_time_ns
    spent: dict[str, int] = {}
    active: set[str] = set()

    def timed(owner: object, name: str, what: str) -> None:
        inner = getattr(owner, name)

        def wrapper(*args, **kwargs):
            if what in active:
                return inner(*args, **kwargs)
            active.add(what)
            start = clock()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[what] = spent.get(what, 0) + clock() - start
                active.discard(what)
        setattr(owner, name, wrapper)

    by_kind: dict[str, int] = {}
    run_one = Scheduler.run_one

    def run_one_timed(self: Scheduler) -> bool:
        heap = self._heap
        while heap and heap[0][2].cancelled:  # as run_one does, to read the label of what runs
            heappop(heap)
        label = heap[0][2].label if heap else ""
        start = clock()
        try:
            return run_one(self)
        finally:
            first = label.split(" ")[0]  # "DPC ndis!...", "resume <thread>": one kind each
            kind = {"DPC": "DPC (NDIS indication -> tcpip -> AFD)", "resume": "thread (user mode -> AFD)",
                    "start": "thread (user mode -> AFD)"}.get(first, label)
            by_kind[kind] = by_kind.get(kind, 0) + clock() - start

    saved = [(owner, name, getattr(owner, name)) for owner, name in (
        (Scheduler, "run_one"), (TcpipStack, "receive_indication"), (TcpipStack, "_build_and_send_nbl"),
        (ConnectionEndpoint, "send"), (ConnectionEndpoint, "receive"),
        (tcp_receive.ReceiveLayer, "_complete_receive"), (tcp_receive, "TcpDeliverDataToClient"))]
    Scheduler.run_one = run_one_timed  # type: ignore[method-assign]
    timed(TcpipStack, "receive_indication", "rx: NDIS receive indications into tcpip")
    timed(ConnectionEndpoint, "send", "tx: AFD -> tcpip sends")
    timed(ConnectionEndpoint, "receive", "tx: AFD -> tcpip receives posted")
    timed(TcpipStack, "_build_and_send_nbl", "out: tcpip -> NDIS sends (NBL, miniport, descriptors)")
    timed(tcp_receive.ReceiveLayer, "_complete_receive", "out: receive completions up to AFD")
    timed(tcp_receive, "TcpDeliverDataToClient", "out: copies into clients' receive buffers")
    try:
        emulated_echo(data, True, True, 1500, False)  # warm-up

        def started() -> None:
            spent.clear()
            by_kind.clear()
        emulated_echo(data, True, True, 1500, False, started=started)
        total = sum(by_kind.values())  # every event of the transfer (the run loop's own steps aside)
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)
    mib = len(data) / (1 << 20)
    ms = lambda ns: f"{ns / mib / 1e6:8.1f} ms"  # noqa: E731
    print(f"where the CPU goes, MTU 1500 LSO+RSC{f', ITR {ITR_NS // 1000} us' if ITR_NS else ''} "
          f"(thread CPU per MiB echoed; timing wrappers included, so approximate): {ms(total)} in all")
    for kind, ns in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {ms(ns)}  events: {kind}")
    for what, ns in spent.items():
        print(f"  {ms(ns)}  tcpip {what}")
    inside = spent.get("rx: NDIS receive indications into tcpip", 0) + sum(
        ns for what, ns in spent.items() if what.startswith("tx:"))
    below_above = sum(ns for what, ns in spent.items() if what.startswith("out:"))
    print(f"  {ms(inside - below_above)}  tcpip's own (rx + tx - out), about {(inside - below_above) / total:.0%}")


def print_profile(profiler: cProfile.Profile, mib: float, what: str, top: int = 30) -> None:
    """The `top` functions by own time, as calls and milliseconds per MiB echoed (cProfile's overhead
    included: the ms are for ranking; the calls are exact)."""
    stats = pstats.Stats(profiler)
    print(f"profile: {what}: {stats.total_calls / mib:,.0f} Python calls per MiB, "
          f"{stats.total_tt / mib * 1000:.0f} ms per MiB under cProfile")
    print(f"{'calls/MiB':>10} {'tottime ms/MiB':>15} {'cum ms/MiB':>11}  function")
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]
    root = str(ROOT) + "/"
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in rows:
        where = f"{filename.replace(root, '')}:{line}({name})" if line else name
        print(f"{calls / mib:>10,.0f} {tottime / mib * 1000:>15.2f} {cumtime / mib * 1000:>11.2f}  {where}")


async def _loopback_echo(data: bytes) -> tuple[float, float]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(256 * 1024):
            writer.write(chunk)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    wall0, cpu0 = time.perf_counter(), time.process_time()

    async def send() -> None:
        view = memoryview(data)
        for pos in range(0, len(data), 256 * 1024):
            writer.write(view[pos:pos + 256 * 1024])
            await writer.drain()

    digest = hashlib.sha256()
    received = 0
    sender = asyncio.create_task(send())
    while received < len(data):
        chunk = await reader.read(256 * 1024)
        if not chunk:
            break
        digest.update(chunk)
        received += len(chunk)
    await sender
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    writer.write_eof()
    await reader.read()  # the handler sees EOF and closes its side
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    return len(data) / wall / 1e6, len(data) / cpu / 1e6


def checksum_floor(data: bytes, mtu: int) -> float:
    """MB/s of echo payload if the NICs' checksum work were the only cost (see the module docstring)."""
    segment = mtu - 40
    view = memoryview(data)
    cpu0 = time.process_time()
    for _crossing in range(2):  # there and back
        for _side in range(2):  # filled on transmit, verified on receive
            for pos in range(0, len(view), segment):
                ones_sum(view[pos:pos + segment])
    return len(data) / (time.process_time() - cpu0) / 1e6


RUNS = [("MTU 1500, LSO+RSC", True, True, 1500, True), ("  pass-through off", True, True, 1500, False),
        ("MTU 1500, LSO", True, False, 1500, True), ("MTU 1500, no offload", False, False, 1500, True),
        ("MTU 9000, LSO+RSC", True, True, 9000, True), ("  pass-through off", True, True, 9000, False)]


def _median_run(data: bytes, samples: int, *args, **kwargs) -> dict[str, float]:
    """The run with the median CPU throughput of `samples` runs (after the caller's warm-up)."""
    runs = sorted((emulated_echo(data, *args, **kwargs) for _ in range(samples)), key=lambda r: r["cpu_mbps"])
    return runs[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=16.0, help="payload size in MiB (default 16)")
    parser.add_argument("--profile", action="store_true", help="print the MTU 1500 LSO+RSC rows' top-30 functions per MiB")
    parser.add_argument("--cpu", default="x64", help="cost profile for the 'cpu model on' rows (none: skip them)")
    parser.add_argument("--samples", type=int, default=3, help="runs per row; the median is shown (default 3)")
    parser.add_argument("--profile-only", action="store_true", help="print the profiles (--profile) and stop")
    parser.add_argument("--layers", action="store_true",
                        help="print where the MTU 1500 LSO+RSC row's CPU time goes, by event kind and layer, and stop")
    parser.add_argument("--itr-us", type=float, default=0,
                        help="NIC interrupt throttle in microseconds for every emulated row (0: none, the default)")
    parser.add_argument("--gc", choices=("settle", "default"), default="settle",
                        help="host GC as the wskdbg command line sets it (settle: wider generations, "
                             "stack.kernel.hostgc) or Python's defaults")
    args = parser.parse_args()
    if args.gc == "settle":
        hostgc.settle(freeze=False)  # both sides of every ratio run under it
    global ITR_NS
    ITR_NS = int(args.itr_us * 1000)
    data = pattern(42, int(args.mib * 1024 * 1024))
    if args.layers:
        layer_times(data)
        return
    if args.profile_only:
        emulated_echo(data, True, True, 1500, False)  # warm-up
        emulated_echo(data, True, True, 1500, True)
        emulated_echo(data, True, True, 1500, True, passthrough=False)
        return
    _loopback_echo_sync = lambda: asyncio.run(_loopback_echo(data))  # noqa: E731
    _loopback_echo_sync()  # warm-up
    loops = sorted((_loopback_echo_sync() for _ in range(args.samples)), key=lambda r: r[1])
    loop_wall, loop_cpu = loops[len(loops) // 2]
    emulated_echo(data, True, True, 1500, False)  # warm-up
    if args.profile:  # the MTU 1500 LSO+RSC row's hot path, pass-through on and off
        emulated_echo(data, True, True, 1500, True)
        emulated_echo(data, True, True, 1500, True, passthrough=False)
    print(f"payload {len(data) / 1024 / 1024:.1f} MiB echoed (client -> server -> client), byte-exact; "
          f"median of {args.samples}")
    print(f"{'run':<26}{'MB/s wall':>11}{'MB/s cpu':>10}{'vs loopback':>13}{'events':>10}{'dispatched':>11}"
          f"{'copies/B':>10}")
    print(f"{'asyncio 127.0.0.1':<26}{loop_wall:>11.2f}{loop_cpu:>10.2f}{'1.0000':>13}{'-':>10}{'-':>11}{'-':>10}")
    for name, lso, rsc, mtu, passthrough in RUNS:
        r = _median_run(data, args.samples, lso, rsc, mtu, False, passthrough=passthrough)
        print(f"{name:<26}{r['wall_mbps']:>11.2f}{r['cpu_mbps']:>10.2f}{r['cpu_mbps'] / loop_cpu:>13.4f}"
              f"{r['events']:>10}{r['dispatched']:>11}{r['copies_per_byte']:>10.3f}")
        if args.cpu != "none":  # the same run with the processor model on: its wall-clock overhead
            c = _median_run(data, args.samples, lso, rsc, mtu, False, args.cpu, passthrough=passthrough)
            print(f"{'  + cpu ' + args.cpu:<26}{c['wall_mbps']:>11.2f}{c['cpu_mbps']:>10.2f}"
                  f"{c['cpu_mbps'] / loop_cpu:>13.4f}{c['events']:>10}{c['dispatched']:>11}"
                  f"{c['copies_per_byte']:>10.3f}"
                  f"   cpu time x{r['cpu_mbps'] / c['cpu_mbps']:.3f}")
    floor = checksum_floor(data, 1500)
    print(f"{'floor: checksums alone':<26}{'-':>11}{floor:>10.2f}{floor / loop_cpu:>13.4f}{'-':>10}{'-':>11}"
          f"{'-':>10}")


if __name__ == "__main__":
    main()
