"""A UDP load for receive-livelock experiments: a sink program on the server, blasters on a client.

    stats = SinkStats()
    run_program(server_kernel, udp_sink, stats, name="udp-sink")
    for i in range(8): run_program(client_kernel, udp_blaster, "10.0.0.1", rate // 8, count // 8)

The sink receives each datagram (recvfrom: a system call and the transport's copy) and then does
`work_ns` of its own user-mode work (say, a DNS lookup); `delivered` counts datagrams it finished
before `until_ns`.  A blaster sends 64-byte datagrams on a fixed schedule (`rate` per second).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator

from stack.kernel import current_kernel
from stack.kernel.ke import KeDelayExecutionThread

from .socket import AF_INET, SOCK_DGRAM, SockAddr, Socket

UDPLOAD_PORT = 9000
PAYLOAD = bytes(64)
APP_WORK_NS = 10_000


@dataclass
class SinkStats:
    delivered: int = 0
    until_ns: int = 1 << 62
    work_ns: int = APP_WORK_NS


def udp_sink(stats: SinkStats, port: int = UDPLOAD_PORT) -> Generator[Any, Any, None]:
    sock = yield from Socket.create(AF_INET, SOCK_DGRAM)
    yield from sock.bind(SockAddr.parse(f"0.0.0.0:{port}"))
    while True:
        yield from sock.recvfrom(2048)
        k = current_kernel()
        k.charge("user_work", stats.work_ns)
        if k.now_ns <= stats.until_ns:
            stats.delivered += 1


def udp_blaster(server: str, rate: int, count: int, port: int = UDPLOAD_PORT) -> Generator[Any, Any, int]:
    sock = yield from Socket.create(AF_INET, SOCK_DGRAM)
    target = SockAddr.parse(f"{server}:{port}")
    k = current_kernel()
    start = k.now_ns
    for i in range(count):
        yield from sock.sendto(PAYLOAD, target)
        wait = start + (i + 1) * 1_000_000_000 // max(1, rate) - k.now_ns
        if wait > 0:
            yield KeDelayExecutionThread(Interval=-(wait // 100) or -1)
    return count
