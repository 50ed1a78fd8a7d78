"""Connection loads for the overload lessons of issue 12: a slow-accepting server and its clients.

    stats = ConnLoadStats()
    run_program(server_kernel, slow_server, stats, 5, 2_000_000, name="slow-server")   # backlog 5, 2 ms/request
    run_program(client_kernel, connect_burst, stats, "10.0.0.1", 50, 2000, name="burst")  # 50 at 2000/s
    run_program(client_kernel, connect_serial, stats, "10.0.0.1", 300, name="serial")  # 300 one after another

The server is a user-mode program with one thread: accept, read the request, spend `work_ns` of
its own work (UserTime, with the processor model on), answer, then wait for the client to close
and close too - so the client closes first and its side of each connection waits in TIME_WAIT
(240 s, TcpTimedWaitDelay's default).  Connections that arrive meanwhile wait in the listen
backlog; past the backlog tcpip refuses them (RST: WSAECONNREFUSED at the client).

The clients count what happened to each connection, by the NTSTATUS their socket call failed with.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Generator

from stack.kernel import STATUS_INSUFFICIENT_RESOURCES, current_kernel
from stack.kernel.ke import KeDelayExecutionThread
from stack.kernel.ntstatus import STATUS_CONNECTION_REFUSED, STATUS_CONNECTION_RESET

from .socket import AF_INET, SOCK_STREAM, SockAddr, Socket, SocketError, accept_retrying, join, spawn

CONNLOAD_PORT = 9100
REQUEST = b"GET /\r\n"
REPLY = b"200 OK\r\n"

# outcome -> how the user would see it (the Winsock error the NTSTATUS becomes)
OUTCOMES = {
    "ok": "served",
    STATUS_CONNECTION_REFUSED: "refused (WSAECONNREFUSED)",
    STATUS_CONNECTION_RESET: "reset (WSAECONNRESET)",
    STATUS_INSUFFICIENT_RESOURCES: "no dynamic port (WSAENOBUFS)",
}


@dataclass
class ConnLoadStats:
    outcomes: Counter = field(default_factory=Counter)  # "ok" or the failing NTSTATUS -> connections
    served: int = 0  # connections the server answered
    running: int = 0  # client programs not finished yet

    def summary(self) -> list[tuple[str, int]]:
        known = [(OUTCOMES[key], self.outcomes[key]) for key in OUTCOMES]
        other = sum(n for key, n in self.outcomes.items() if key not in OUTCOMES)
        return known + ([("failed otherwise", other)] if other else [])


def slow_server(stats: ConnLoadStats, backlog: int, work_ns: int,
                port: int = CONNLOAD_PORT) -> Generator[Any, Any, None]:
    listener = yield from Socket.create(AF_INET, SOCK_STREAM)
    yield from listener.bind(SockAddr.parse(f"0.0.0.0:{port}"))
    yield from listener.listen(backlog)
    while True:
        sock = yield from accept_retrying(listener)
        try:
            yield from sock.recv(64)
            current_kernel().charge("user_work", work_ns)
            yield from sock.send(REPLY)
            yield from sock.recv(64)  # the client's FIN (0 bytes): it closes first
            stats.served += 1
        except SocketError:
            pass  # a connection reset under it: on to the next one
        yield from sock.close()


def _one(stats: ConnLoadStats, target: SockAddr) -> Generator[Any, Any, None]:
    sock = yield from Socket.create(AF_INET, SOCK_STREAM)
    try:
        yield from sock.connect(target)
        yield from sock.send(REQUEST)
        reply = yield from sock.recv(64)
        stats.outcomes["ok" if reply == REPLY else STATUS_CONNECTION_RESET] += 1
    except SocketError as err:
        stats.outcomes[err.status] += 1
    yield from sock.close()


def connect_burst(stats: ConnLoadStats, server: str, count: int, rate: int = 0,
                  port: int = CONNLOAD_PORT) -> Generator[Any, Any, None]:
    """`count` connections, each in its own thread, started `rate` per second (0: all at once),
    as httperf --rate opens them whether or not the earlier ones were served."""
    stats.running += 1
    target = SockAddr.parse(f"{server}:{port}")
    k = current_kernel()
    start = k.now_ns
    workers = []
    for i in range(count):
        if rate:
            wait = start + i * 1_000_000_000 // rate - k.now_ns
            if wait > 0:
                yield KeDelayExecutionThread(Interval=-(wait // 100) or -1)
        workers.append(spawn(_one, stats, target, name=f"connect{i}"))
    for worker in workers:
        yield from join(worker)
    stats.running -= 1


def connect_serial(stats: ConnLoadStats, server: str, count: int,
                   port: int = CONNLOAD_PORT) -> Generator[Any, Any, None]:
    """`count` short connections one after another (each ends in TIME_WAIT on this side)."""
    stats.running += 1
    target = SockAddr.parse(f"{server}:{port}")
    for _ in range(count):
        yield from _one(stats, target)
    stats.running -= 1
