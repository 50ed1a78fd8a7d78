"""Bulk-transfer throughput through the whole emulated stack, next to a real asyncio echo on 127.0.0.1.

    python tests/bench/bench_throughput.py [--mib 16] [--profile]

Both sides do the same job: a client sends N bytes to an echo server and reads
them all back (byte-exact, hashed).  The emulated run goes user program -> AFD
IRPs -> tcpip (zero-copy partial MDLs) -> NDIS -> NIC (checksum offload, LSO
when on) -> link -> switch -> the other host and back, with LSO on and off.
Reported: MB/s of payload by wall clock and by process CPU time (the machine may
be shared), scheduler events, and payload copies per byte from kernel.copies.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from stack.nic import NicOffloads  # noqa: E402
from stack.tcpip.addr import SockAddr  # noqa: E402
from stack.tcpip.tcp import MS, TcpConfig  # noqa: E402
from stack.usermode.programs import echo_client, echo_server, pattern  # noqa: E402
from stack.usermode.socket import run_program  # noqa: E402
from stack.world import default_world  # noqa: E402


def emulated_echo(data: bytes, lso: bool, profile: bool) -> dict[str, float]:
    world = default_world(1, services=False, offloads=NicOffloads(lso=lso), tcp_config=TcpConfig(time_wait_ns=1000 * MS))
    server = run_program(world.host("winsrv").kernel, echo_server, SockAddr.parse("0.0.0.0:7"))
    world.run_for(1_000_000)
    events0 = world.scheduler.events_run
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
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return {"wall_mbps": len(data) / wall / 1e6, "cpu_mbps": len(data) / cpu / 1e6, "seconds": wall,
            "events": world.scheduler.events_run - events0, "copies_per_byte": copies / moved,
            "lso_sends": world.host("client").stack.counters.lso_sends,
            "virtual_ms": world.now_ns / 1e6}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=16.0, help="payload size in MiB (default 16)")
    parser.add_argument("--profile", action="store_true", help="cProfile the LSO run's hot path")
    args = parser.parse_args()
    data = pattern(42, int(args.mib * 1024 * 1024))
    loop_wall, loop_cpu = asyncio.run(_loopback_echo(data))
    print(f"payload {len(data) / 1024 / 1024:.1f} MiB echoed (client -> server -> client), byte-exact")
    print(f"{'run':<26}{'MB/s wall':>11}{'MB/s cpu':>10}{'vs loopback':>13}{'events':>10}{'copies/B':>10}")
    print(f"{'asyncio 127.0.0.1':<26}{loop_wall:>11.2f}{loop_cpu:>10.2f}{'1.0000':>13}{'-':>10}{'-':>10}")
    for lso in (True, False):
        r = emulated_echo(data, lso, args.profile and lso)
        name = f"emulated, LSO {'on' if lso else 'off'}"
        print(f"{name:<26}{r['wall_mbps']:>11.2f}{r['cpu_mbps']:>10.2f}{r['cpu_mbps'] / loop_cpu:>13.4f}"
              f"{r['events']:>10}{r['copies_per_byte']:>10.3f}")


if __name__ == "__main__":
    main()
