"""How the lab's cost grows with the number of connections held open (a script, not a test).

    PYTHONPATH=. python3 tests/bench/bench_scale.py [--counts 10,1000,10000] [--rounds 3] [--memory-mb 256]

For each count N, `client` opens N TCP connections to echosrv on winsrv (the WDK WSK echo
sample) and keeps them all open.  Then, with all N held, one *round* sends 16 bytes on every
connection and reads the echo back, connection after connection.  Reported per count:

  connect   wall and CPU time per connection to open them (one after another)
  round     wall and CPU time per connection for one round: a warm-up round, then the median
            of --rounds rounds
  rss       the process's resident memory with the N connections open
  ratio     the round's wall cost per connection at this N divided by the cost at the smallest N
            (the last line gives the CPU ratio too),
            measured in the same run (1.0 = linear: holding more connections costs nothing extra
            per connection)

Nothing is asserted: the figures are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any, Generator

from stack.drivers import echosrv
from stack.kernel import IoLoadDriver
from stack.tcpip.addr import AF_INET, SockAddr
from stack.usermode.socket import SOCK_STREAM, Socket, SocketError, UserBuffer, run_program
from stack.world import World

ECHO4 = SockAddr.parse("10.0.0.1:40007")
MESSAGE = b"0123456789abcdef"


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


def measure(count: int, rounds: int, seed: int, memory_mb: int) -> dict[str, float]:
    world = _lab(seed, memory_mb)
    held: list[Socket] = []
    failures, connect_wall, connect_cpu = _run(world, _open, count, held)
    rss = _rss_mb()

    def with_buffer(sockets: list[Socket]) -> Generator[Any, Any, int]:
        buffer = UserBuffer(len(MESSAGE))
        try:
            return (yield from _round(sockets, buffer))
        finally:
            buffer.free()

    _run(world, with_buffer, held)  # warm-up
    samples = [_run(world, with_buffer, held)[1:] for _ in range(rounds)]
    n = max(1, len(held))
    return {"count": count, "open": len(held), "refused": failures,
            "connect_wall_us": connect_wall / max(1, count) * 1e6, "connect_cpu_us": connect_cpu / max(1, count) * 1e6,
            "round_wall_us": statistics.median(w for w, _ in samples) / n * 1e6,
            "round_cpu_us": statistics.median(c for _, c in samples) / n * 1e6, "rss_mb": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="10,1000,10000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--memory-mb", type=int, default=160, help="emulated RAM per host")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    rows = [measure(c, args.rounds, args.seed, args.memory_mb) for c in counts]
    base = rows[0]["round_wall_us"]
    print(f"{'conns':>7} {'open':>7} {'refused':>7} {'connect wall':>13} {'connect cpu':>12} {'round wall':>11} "
          f"{'round cpu':>10} {'rss MB':>8} {'ratio':>6}")
    for r in rows:
        print(f"{r['count']:>7} {r['open']:>7} {r['refused']:>7} {r['connect_wall_us']:>10.0f} us "
              f"{r['connect_cpu_us']:>9.0f} us {r['round_wall_us']:>8.0f} us {r['round_cpu_us']:>7.0f} us "
              f"{r['rss_mb']:>8.1f} {r['round_wall_us'] / base:>6.2f}")
    cpu_base = rows[0]["round_cpu_us"]
    print(f"per-connection round cost, {rows[-1]['count']} / {rows[0]['count']}: "
          f"{rows[-1]['round_wall_us'] / base:.2f}x wall, {rows[-1]['round_cpu_us'] / cpu_base:.2f}x CPU "
          f"(CPU is the steadier figure on a shared machine)")


if __name__ == "__main__":
    main()
