"""Small user-mode programs: echo server and client, bulk sender and receiver, UDP echo.

Each is a generator function to run with `run_program(kernel, fn, ...)` or
`spawn(fn, ...)`; results land in the returned `Program`.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, Generator

from stack.tcpip.addr import AF_INET, AF_INET6, SockAddr

from .socket import SOCK_DGRAM, SOCK_STREAM, Socket, SocketError, UserBuffer, accept_retrying, join, spawn

CHUNK = 256 * 1024


@dataclass
class TransferResult:
    sent: int = 0
    received: int = 0
    sent_sha256: str = ""
    received_sha256: str = ""
    connections: int = 0


def pattern(seed: int, size: int) -> bytes:
    """Deterministic test data."""
    return random.Random(seed).randbytes(size)


def _family(address: SockAddr) -> int:
    return AF_INET if address.ip.version == 4 else AF_INET6


def echo_server(address: SockAddr, max_connections: int = 1, buffer_size: int = 64 * 1024,
                nodelay: bool = False) -> Generator[Any, Any, TransferResult]:
    """Accept `max_connections` connections (each served by its own thread) and echo everything back."""
    result = TransferResult()
    listener = yield from Socket.create(_family(address), SOCK_STREAM)
    yield from listener.bind(address)
    yield from listener.listen(16)
    workers = []
    for _ in range(max_connections):
        conn = yield from accept_retrying(listener)
        result.connections += 1
        worker = spawn(_echo_connection, conn, buffer_size, nodelay, result, name="echo-conn")
        if worker.thread is None:  # no thread to serve it: close it, and report why below
            yield from conn.close()
        workers.append(worker)
    yield from listener.close()
    for worker in workers:
        yield from join(worker)
        worker.raise_error()
    return result


def _echo_connection(conn: Socket, buffer_size: int, nodelay: bool,
                     result: TransferResult) -> Generator[Any, Any, None]:
    if nodelay:
        yield from conn.setsockopt("TCP_NODELAY", True)
    try:
        buf = UserBuffer(buffer_size)
    except SocketError:  # no memory to serve it: close it, so the client hears
        yield from conn.close()
        raise
    try:
        while True:
            n = yield from conn.recv_into(buf)
            if n == 0:
                break
            result.received += n
            yield from conn.send(buf, n)  # the same pages go back out (afd copies them into its send buffer)
            result.sent += n
        yield from conn.shutdown()
    finally:
        yield from conn.close()
        buf.free()


def echo_client(server: SockAddr, data: bytes, chunk: int = CHUNK,
                nodelay: bool = False, sndbuf: int | None = None) -> Generator[Any, Any, TransferResult]:
    """Send `data` to an echo server while a second thread reads the echo; hashes both streams.
    `sndbuf`: SO_SNDBUF for the socket (None: afd's default send buffering)."""
    result = TransferResult(sent_sha256=hashlib.sha256(data).hexdigest())
    sock = yield from Socket.create(_family(server), SOCK_STREAM)
    if nodelay:
        yield from sock.setsockopt("TCP_NODELAY", True)
    if sndbuf is not None:
        yield from sock.setsockopt("SO_SNDBUF", sndbuf)
    yield from sock.connect(server)
    reader = spawn(_read_all, sock, len(data), result, name="echo-reader")
    if reader.thread is None:  # CreateThread failed: give the socket back, report the status
        yield from sock.close()
        reader.raise_error()
    try:
        buf = UserBuffer(min(chunk, max(len(data), 1)))
    except SocketError:
        yield from sock.close()  # the reader's receive ends with it
        yield from join(reader)
        raise
    whole = memoryview(data)  # pieces of it without copying them (the buffer write is the one copy)
    for pos in range(0, len(data), chunk):
        piece = whole[pos:pos + chunk]
        buf.write(piece)
        yield from sock.send(buf, len(piece))
        result.sent += len(piece)
    yield from join(reader)
    reader.raise_error()
    yield from sock.shutdown()
    yield from sock.close()
    buf.free()
    return result


def _read_all(sock: Socket, expected: int, result: TransferResult) -> Generator[Any, Any, None]:
    digest = hashlib.sha256()
    buf = UserBuffer(CHUNK)
    while result.received < expected:
        n = yield from sock.recv_into(buf)
        if n == 0:
            break
        for view in buf.views(0, n):
            digest.update(view)
        result.received += n
    result.received_sha256 = digest.hexdigest()
    buf.free()


def bulk_sender(server: SockAddr, total: int, chunk: int = CHUNK, seed: int = 1,
                sndbuf: int | None = None) -> Generator[Any, Any, TransferResult]:
    """Send `total` bytes (one pattern buffer sent repeatedly; zero copy with `sndbuf` 0, else afd
    copies each send into its send buffer) and close."""
    block = pattern(seed, chunk)
    result = TransferResult()
    digest = hashlib.sha256()
    sock = yield from Socket.create(_family(server), SOCK_STREAM)
    if sndbuf is not None:
        yield from sock.setsockopt("SO_SNDBUF", sndbuf)
    yield from sock.connect(server)
    buf = UserBuffer(chunk)
    buf.write(block)
    while result.sent < total:
        n = min(chunk, total - result.sent)
        yield from sock.send(buf, n)
        digest.update(block[:n])
        result.sent += n
    result.sent_sha256 = digest.hexdigest()
    yield from sock.shutdown()
    yield from sock.close()
    buf.free()
    return result


def bulk_receiver(address: SockAddr, chunk: int = CHUNK) -> Generator[Any, Any, TransferResult]:
    """Accept one connection and read until the peer closes; hashes what arrived."""
    result = TransferResult()
    digest = hashlib.sha256()
    listener = yield from Socket.create(_family(address), SOCK_STREAM)
    yield from listener.bind(address)
    yield from listener.listen(4)
    conn = yield from listener.accept()
    result.connections = 1
    yield from listener.close()
    buf = UserBuffer(chunk)
    while True:
        n = yield from conn.recv_into(buf)
        if n == 0:
            break
        for view in buf.views(0, n):
            digest.update(view)
        result.received += n
    result.received_sha256 = digest.hexdigest()
    yield from conn.close()
    buf.free()
    return result


def udp_echo_server(address: SockAddr, count: int) -> Generator[Any, Any, int]:
    """Echo `count` datagrams back to their senders."""
    sock = yield from Socket.create(_family(address), SOCK_DGRAM)
    yield from sock.bind(address)
    for _ in range(count):
        data, peer = yield from sock.recvfrom(2048)
        yield from sock.sendto(data, peer)
    yield from sock.close()
    return count


def udp_client(server: SockAddr, messages: list[bytes]) -> Generator[Any, Any, list[bytes]]:
    """Send each message and wait for its echo."""
    sock = yield from Socket.create(_family(server), SOCK_DGRAM)
    replies = []
    for message in messages:
        yield from sock.sendto(message, server)
        data, _ = yield from sock.recvfrom(2048)
        replies.append(data)
    yield from sock.close()
    return replies
