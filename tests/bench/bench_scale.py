"""How the lab's cost grows with the number of connections held open (a script, not a test).

    PYTHONPATH=. python3 tests/bench/bench_scale.py [--counts 10,1000,10000] [--samples 5] [--gc tuned|default]

For each count N, `client` opens N TCP connections to echosrv on winsrv (the WDK WSK echo
sample) and keeps them all open.  Then, with all N held, one *round* sends 16 bytes on every
connection and reads the echo back, connection after connection, and lets the lab run on
past the delayed-ACK timer (200 ms of virtual time), so every connection's exchange is the
same frames whatever N is: data, echo, the client's delayed ACK.  (Without that settle, a
round over 10 connections ends before any delayed ACK fires and the next round's data
carries it, while over 10,000 every ACK goes out alone: 16 events per connection against 23,
a difference of TCP, not of the emulator.)  A *sample* repeats the round until it has done at
least --min-exchanges exchanges (many rounds at 10 connections, one at 10,000), so small
counts are not timed over a few milliseconds.  Reported per count:

  connect   wall and CPU time per connection to open them (one after another)
  round     wall and CPU time per exchange: one warm-up sample, then the median of --samples
  rss       the process's resident memory with the N connections open
  ratio     the wall (and CPU) cost per exchange at this N divided by the cost at the smallest N,
            measured in the same run (1.0 = holding more connections costs nothing extra;
            the aim is <= 1.3 at 10,000 / 10)

--gc tuned (the default) runs the lab under stack.kernel.hostgc's policy for a process that holds
one lab: the booted lab frozen out of the collector and a larger first generation, so a full
collection does not walk every held connection's objects again and again.  (The debugger does
not apply it yet: time travel rebuilds labs in one process, and frozen labs are never freed.)
--gc thresholds widens the generations without freezing (safe for a process with many labs);
--gc default leaves Python's collector as it is, for comparison.

Nothing is asserted: the figures are printed.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from typing import Any, Generator

from stack.drivers import echosrv
from stack.kernel import hostgc
from stack.kernel import IoLoadDriver
from stack.tcpip.addr import AF_INET, SockAddr
from stack.usermode.socket import SOCK_STREAM, Socket, SocketError, UserBuffer, run_program
from stack.world import World

ECHO4 = SockAddr.parse("10.0.0.1:40007")
MESSAGE = b"0123456789abcdef"
SETTLE_NS = 250_000_000  # past the 200 ms delayed-ACK timer (TcpConfig.delayed_ack_ns)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _lab(seed: int, memory_mb: int) -> World:
    world = World(seed, memory_mb=memory_mb)
    world.add_host("winsrv", "10.0.0.1/24", "fd00::1/64", boot=False)
    world.add_host("client", "10.0.0.2/24", "fd00::2/64", boot=False)
    world.boot()
    world._update_host_tables()
    for image in (echosrv.DRIVER_IMAGE,):  # afd.sys (the WSK provider) starts with every host
        done: list[int] = []
        IoLoadDriver(world.host("winsrv").kernel, image, on_done=done.append)
        world.run_while(lambda: not done, max_events=2_000_000)
        assert done == [0], f"loading {image.name}: {done}"
    return world


def _open(count: int, held: list[Socket]) -> Generator[Any, Any, int]:
    failures = 0
    for _ in range(count):
        sock = yield from Socket.create(AF_INET, SOCK_STREAM)
        try:
            yield from sock.connect(ECHO4)
            held.append(sock)
        except SocketError:
            failures += 1
            yield from sock.close()
    return failures


def _round(held: list[Socket], buffer: UserBuffer) -> Generator[Any, Any, int]:
    echoed = 0
    for sock in held:
        yield from sock.send(MESSAGE)
        got = 0
        while got < len(MESSAGE):
            got += yield from sock.recv_into(buffer, len(MESSAGE) - got)
        echoed += 1
    return echoed


def _run(world: World, fn: Any, *args: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    program = run_program(world.host("client").kernel, fn, *args)
    world.run_while(lambda: not program.done, max_events=500_000_000)
    world.check()
    program.raise_error()
    return program.result, time.perf_counter() - wall, time.process_time() - cpu


def _sample(world: World, held: list[Socket], rounds: int) -> tuple[float, float]:
    """Wall and CPU seconds for `rounds` rounds, each followed by the delayed-ACK settle."""
    def with_buffer(sockets: list[Socket]) -> Generator[Any, Any, int]:
        buffer = UserBuffer(len(MESSAGE))
        try:
            return (yield from _round(sockets, buffer))
        finally:
            buffer.free()

    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        program = run_program(world.host("client").kernel, with_buffer, held)
        world.run_while(lambda: not program.done, max_events=500_000_000)
        world.check()
        program.raise_error()
        world.run_for(SETTLE_NS)
        world.check()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(count: int, samples: int, seed: int, memory_mb: int, min_exchanges: int, gc_mode: str) -> dict[str, float]:
    world = _lab(seed, memory_mb)
    if gc_mode != "default":
        hostgc.settle(freeze=gc_mode == "tuned")  # the booted lab out of the collector's way
    held: list[Socket] = []
    failures, connect_wall, connect_cpu = _run(world, _open, count, held)
    rss = _rss_mb()
    n = max(1, len(held))
    rounds = max(1, -(-min_exchanges // n))
    _sample(world, held, rounds)  # warm-up
    timed = [_sample(world, held, rounds) for _ in range(samples)]
    exchanges = n * rounds
    row = {"count": count, "open": len(held), "refused": failures, "rounds": rounds,
           "connect_wall_us": connect_wall / max(1, count) * 1e6, "connect_cpu_us": connect_cpu / max(1, count) * 1e6,
           "round_wall_us": statistics.median(w for w, _ in timed) / exchanges * 1e6,
           "round_cpu_us": statistics.median(c for _, c in timed) / exchanges * 1e6, "rss_mb": rss}
    del world, held
    if gc_mode != "default":
        hostgc.release()
    gc.collect()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="10,1000,10000")
    parser.add_argument("--samples", type=int, default=5, help="timed samples per count (the median is shown)")
    parser.add_argument("--min-exchanges", type=int, default=10_000,
                        help="exchanges per sample: rounds are repeated until a sample has this many")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--memory-mb", type=int, default=160, help="emulated RAM per host")
    parser.add_argument("--gc", choices=("tuned", "thresholds", "default"), default="tuned")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    rows = [measure(c, args.samples, args.seed, args.memory_mb, args.min_exchanges, args.gc)
            for c in counts]
    base, cpu_base = rows[0]["round_wall_us"], rows[0]["round_cpu_us"]
    print(f"gc: {args.gc}; {args.samples} samples after a warm-up, median shown; times per connection / exchange")
    print(f"{'conns':>7} {'open':>7} {'refused':>7} {'rounds':>6} {'connect wall':>13} {'connect cpu':>12} "
          f"{'xchg wall':>10} {'xchg cpu':>9} {'rss MB':>8} {'ratio wall':>10} {'ratio cpu':>9}")
    for r in rows:
        print(f"{r['count']:>7} {r['open']:>7} {r['refused']:>7} {r['rounds']:>6} {r['connect_wall_us']:>10.0f} us "
              f"{r['connect_cpu_us']:>9.0f} us {r['round_wall_us']:>7.0f} us {r['round_cpu_us']:>6.0f} us "
              f"{r['rss_mb']:>8.1f} {r['round_wall_us'] / base:>10.2f} {r['round_cpu_us'] / cpu_base:>9.2f}")
    print(f"per-connection exchange cost, {rows[-1]['count']} / {rows[0]['count']}: "
          f"{rows[-1]['round_wall_us'] / base:.2f}x wall, {rows[-1]['round_cpu_us'] / cpu_base:.2f}x CPU "
          f"(aim <= 1.3; CPU is the steadier figure on a shared machine)")


if __name__ == "__main__":
    main()
