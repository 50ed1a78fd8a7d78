"""A tiny httpbin.org for the lab: `GET /uuid` answers `{"uuid": "<uuid>"}`.

The uuid is deterministic (from the world's seed).  `install(world)` adds host `httpbin`
(10.0.0.80 / fd00::80) running the server on port 80 and publishes `httpbin.org` in the
lab DNS (installing the DNS host first if needed), so kernel clients resolve it over UDP.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Any, Generator

from stack.tcpip.addr import AF_INET6, SockAddr

from .socket import SOCK_STREAM, Program, Socket, SocketError, accept_retrying, run_program, spawn

HTTPBIN_HOST = "httpbin"
HTTPBIN_NAME = "httpbin.org"
HTTPBIN_IPV4 = "10.0.0.80"
HTTPBIN_IPV6 = "fd00::80"
MAX_REQUEST = 16 * 1024


def deterministic_uuid(seed: int) -> str:
    return str(uuid.UUID(bytes=random.Random(f"{seed}:httpbin:uuid").randbytes(16), version=4))


@dataclass(slots=True)
class HttpbinStats:
    requests: list[str] = field(default_factory=list)  # request lines, in order
    bad_requests: int = 0


def response_for(request_line: str, uuid_text: str) -> bytes:
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return _response(400, "Bad Request", b"bad request\n", "text/plain")
    method, target, _ = parts
    if method not in ("GET", "HEAD"):
        return _response(405, "Method Not Allowed", b"", "text/plain")
    if target.split("?", 1)[0] != "/uuid":
        return _response(404, "Not Found", b"not found\n", "text/plain")
    body = f'{{"uuid": "{uuid_text}"}}\n'.encode()
    return _response(200, "OK", body if method == "GET" else b"", "application/json", len(body))


def _response(code: int, reason: str, body: bytes, content_type: str, length: int | None = None) -> bytes:
    head = (f"HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n"
            "Server: httpbin (wskdbg lab)\r\n\r\n")
    return head.encode() + body


def _serve_connection(conn: Socket, uuid_text: str, stats: HttpbinStats) -> Generator[Any, Any, None]:
    data = b""
    try:
        while b"\r\n\r\n" not in data and len(data) < MAX_REQUEST:
            chunk = yield from conn.recv(4096)
            if not chunk:
                break
            data += chunk
        head = data.split(b"\r\n\r\n", 1)[0]
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        if b"\r\n\r\n" not in data:
            stats.bad_requests += 1
            yield from conn.send(_response(400, "Bad Request", b"bad request\n", "text/plain"))
        else:
            stats.requests.append(request_line)
            yield from conn.send(response_for(request_line, uuid_text))
        yield from conn.shutdown()
    except SocketError:
        pass  # the client went away
    finally:
        yield from conn.close()


def httpbin_server(uuid_text: str, stats: HttpbinStats, port: int = 80) -> Generator[Any, Any, None]:
    """Dual stack on `port`; one thread per connection, forever."""
    listener = yield from Socket.create(AF_INET6, SOCK_STREAM)
    yield from listener.setsockopt("IPV6_V6ONLY", False)
    yield from listener.bind(SockAddr(IPv6Address(0), port))
    yield from listener.listen(16)
    while True:
        conn = yield from accept_retrying(listener)
        if spawn(_serve_connection, conn, uuid_text, stats, name="httpbin-conn").thread is None:
            yield from conn.close()  # no thread to serve it: the client sees the connection end


@dataclass(slots=True)
class Httpbin:
    host: Any
    uuid: str
    stats: HttpbinStats
    program: Program


def install(world: Any, name: str = HTTPBIN_HOST, ipv4: str = HTTPBIN_IPV4, ipv6: str = HTTPBIN_IPV6) -> Httpbin:
    from . import dns
    host = world.hosts.get(name) or world.add_host(name, ipv4, ipv6)
    server = getattr(world, "dns", None) or dns.install(world)
    server.zone.add(HTTPBIN_NAME, host.address4, host.address6)
    server.zone.add(name, host.address4, host.address6)
    stats = HttpbinStats()
    text = deterministic_uuid(world.seed)
    program = run_program(host.kernel, httpbin_server, text, stats, name="httpbin")
    result = Httpbin(host, text, stats, program)
    world.httpbin = result
    return result
