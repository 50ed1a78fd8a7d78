"""The user-mode web server khttpd hands dynamic requests to, and a small HTTP client.

Server (``webserver``) — a program for winsrv, listening on port 8080:

    /app/hello        text: greeting, the virtual time and the request count
    /app/echo?x       text: the query string, echoed
    /app/bytes?n=N    N bytes of a fixed pattern (for the benchmark)
    /app/...  /cgi/...  *.dyn   a small page naming the path (404 for unknown /app/ names)

Every answer carries Content-Length and honours keep-alive.  Requests are
parsed with h11; the answer says ``X-Served-By: usermode-webserver`` so a
relayed reply can be told apart from one khttpd built itself.

Client (``HttpClient``, ``http_fetch``, ``http_raw``) — for tests and the
benchmark on ``client``: GET/HEAD over keep-alive or one connection per
request, reading Content-Length bodies.

Both are generator programs over stack.usermode.socket (run with
``run_program`` / ``spawn``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generator

import h11

from stack.kernel import current_kernel

from .socket import AF_INET, AF_INET6, SOCK_STREAM, SockAddr, Socket, SocketError, UserBuffer, accept_retrying, spawn

WEBSERVER_PORT = 8080
SERVER_NAME = "usermode-webserver/1.0"
RECV_SIZE = 64 * 1024
MAX_REQUEST_HEAD = 16 * 1024
MAX_BYTES_REPLY = 4 * 1024 * 1024
BYTES_PATTERN = bytes(range(256))


class HttpClientError(Exception):
    """The server's answer could not be read as HTTP/1.1 (or the connection ended mid-response)."""


# --- the server --------------------------------------------------------------------------------

@dataclass
class WebServerStats:
    connections: int = 0
    requests: int = 0
    bad_requests: int = 0
    paths: list[str] = field(default_factory=list)


def _family(address: SockAddr) -> int:
    return AF_INET if address.ip.version == 4 else AF_INET6


def webserver(address: SockAddr | None = None, stats: WebServerStats | None = None,
              max_connections: int | None = None, v6only: bool = False) -> Generator[Any, Any, WebServerStats]:
    """Serve until `max_connections` connections were accepted (None: forever).

    The default address is the dual-stack wildcard [::]:8080 (IPV6_V6ONLY off),
    so both 10.0.0.1:8080 and [fd00::1]:8080 reach it.
    """
    stats = stats if stats is not None else WebServerStats()
    address = address or SockAddr.parse(f"[::]:{WEBSERVER_PORT}")
    listener = yield from Socket.create(_family(address), SOCK_STREAM)
    if address.ip.version == 6:
        yield from listener.setsockopt("IPV6_V6ONLY", v6only)
    yield from listener.bind(address)
    yield from listener.listen(64)
    accepted = 0
    # No try/finally around the loop: a program still waiting in accept when the lab is
    # thrown away must not run socket calls while Python collects its generator.
    while max_connections is None or accepted < max_connections:
        conn = yield from accept_retrying(listener)
        accepted += 1
        stats.connections += 1
        if spawn(_serve_connection, conn, stats, name="webserver-conn").thread is None:
            yield from conn.close()  # no thread to serve it: the client sees the connection end
    yield from listener.close()
    return stats


def _serve_connection(conn: Socket, stats: WebServerStats) -> Generator[Any, Any, None]:
    parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
    try:
        buffer = UserBuffer(RECV_SIZE)
    except SocketError:  # no memory to serve it: the client sees the connection end
        yield from conn.close()
        raise
    try:
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                n = yield from conn.recv_into(buffer)
                parser.receive_data(buffer.read(n) if n else b"")
                continue
            if isinstance(event, h11.Request):
                body = bytearray()
                while True:  # read the rest of the message (POST bodies)
                    part = parser.next_event()
                    if part is h11.NEED_DATA:
                        n = yield from conn.recv_into(buffer)
                        parser.receive_data(buffer.read(n) if n else b"")
                        continue
                    if isinstance(part, h11.Data):
                        body += part.data
                        continue
                    break
                status, content_type, payload = answer(event.method.decode("ascii"), event.target, bytes(body),
                                                       stats)
                wire = _response_bytes(parser, event.method == b"HEAD", status, content_type, payload)
                yield from conn.send(wire)
                if parser.our_state is h11.MUST_CLOSE or parser.their_state is h11.MUST_CLOSE:
                    break
                parser.start_next_cycle()
                continue
            break  # ConnectionClosed, or anything unexpected: end the connection
        yield from conn.shutdown()
    except h11.RemoteProtocolError:
        stats.bad_requests += 1
        try:
            yield from conn.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            yield from conn.shutdown()
        except SocketError:
            pass
    except SocketError:
        pass  # the peer reset: nothing more to say
    # Not in a `finally`: see webserver() on generators collected while parked.
    yield from conn.close()
    buffer.free()


def _response_bytes(parser: h11.Connection, head_only: bool, status: int, content_type: str,
                    payload: bytes) -> bytes:
    headers = [("Server", SERVER_NAME), ("Content-Type", content_type), ("Content-Length", str(len(payload))),
               ("X-Served-By", "usermode-webserver")]
    out = parser.send(h11.Response(status_code=status, headers=headers)) or b""
    if not head_only:
        out += parser.send(h11.Data(data=payload)) or b""
    out += parser.send(h11.EndOfMessage()) or b""
    return out


def answer(method: str, target: bytes, body: bytes, stats: WebServerStats) -> tuple[int, str, bytes]:
    """The dynamic application: (status, content type, body) for one request."""
    stats.requests += 1
    path, _, query = target.partition(b"?")
    text_path = path.decode("latin-1")
    stats.paths.append(text_path)
    plain = "text/plain; charset=utf-8"
    if text_path == "/app/hello":
        now_s = current_kernel().now_ns / 1e9
        message = (f"Hello from the user-mode web server on {current_kernel().name}\n"
                   f"virtual time: {now_s:.6f} s\nrequests served: {stats.requests}\n")
        return 200, plain, message.encode("ascii")
    if text_path == "/app/bytes":  # /app/bytes?n=65536: n bytes of a fixed pattern (for benchmarks)
        count = int(query[2:]) if query.startswith(b"n=") and query[2:].isdigit() else -1
        if not 0 <= count <= MAX_BYTES_REPLY:
            return 400, plain, b"usage: /app/bytes?n=<0..4194304>\n"
        return 200, "application/octet-stream", (BYTES_PATTERN * (count // len(BYTES_PATTERN) + 1))[:count]
    if text_path == "/app/echo":
        return 200, "application/octet-stream", query + (b"\n" + body if body else b"")
    if text_path.startswith("/app/"):
        return 404, plain, f"no application at {text_path}\n".encode("latin-1")
    page = f"<html><body><p>{method} {text_path} answered in user mode</p></body></html>\n"
    return 200, "text/html; charset=utf-8", page.encode("latin-1")


# --- the client ---------------------------------------------------------------------------------

@dataclass
class HttpResponse:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names; repeated fields joined with ", "
    body: bytes
    raw_head: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class HttpClient:
    """One client connection: requests one after another (keep-alive), Content-Length bodies."""

    def __init__(self, sock: Socket) -> None:
        self.sock = sock
        self._pending = bytearray()
        self._buffer: UserBuffer | None = None
        self.peer_closed = False

    @staticmethod
    def connect(server: SockAddr) -> Generator[Any, Any, "HttpClient"]:
        sock = yield from Socket.create(_family(server), SOCK_STREAM)
        yield from sock.connect(server)
        return HttpClient(sock)

    def request(self, method: str, target: str, host: str = "winsrv", keep_alive: bool = True,
                headers: tuple[tuple[str, str], ...] = ()) -> Generator[Any, Any, HttpResponse]:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
        if not keep_alive:
            lines.append("Connection: close")
        lines += [f"{name}: {value}" for name, value in headers]
        yield from self.sock.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return (yield from self.read_response(head_only=method == "HEAD"))

    def send_raw(self, data: bytes) -> Generator[Any, Any, None]:
        yield from self.sock.send(data)

    def _fill(self) -> Generator[Any, Any, bool]:
        if self._buffer is None:
            self._buffer = UserBuffer(RECV_SIZE)
        n = yield from self.sock.recv_into(self._buffer)
        if n == 0:
            self.peer_closed = True
            return False
        self._pending += self._buffer.read(n)
        return True

    def read_response(self, head_only: bool = False) -> Generator[Any, Any, HttpResponse]:
        while (end := self._pending.find(b"\r\n\r\n")) < 0:
            if not (yield from self._fill()):
                raise HttpClientError("connection closed before a response head")
        raw_head = bytes(self._pending[:end + 4])
        del self._pending[:end + 4]
        status, reason, headers = _parse_head(raw_head)
        length_text = headers.get("content-length")
        if length_text is None or not length_text.isdigit():
            raise HttpClientError("response without a usable Content-Length")
        length = 0 if head_only or status in (204, 304) else int(length_text)
        while len(self._pending) < length:
            if not (yield from self._fill()):
                raise HttpClientError(f"connection closed after {len(self._pending)} of {length} body bytes")
        body = bytes(self._pending[:length])
        del self._pending[:length]
        return HttpResponse(status, reason, headers, body, raw_head)

    def wait_closed(self) -> Generator[Any, Any, bool]:
        """Read until the server closes (True) — any further bytes are an error."""
        while not self.peer_closed:
            if (yield from self._fill()):
                raise HttpClientError(f"unexpected bytes after the response: {bytes(self._pending[:60])!r}")
        return True

    def close(self) -> Generator[Any, Any, None]:
        try:
            yield from self.sock.close()
        finally:
            if self._buffer is not None:
                self._buffer.free()
                self._buffer = None


def _parse_head(raw_head: bytes) -> tuple[int, str, dict[str, str]]:
    lines = raw_head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpClientError(f"bad status line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpClientError(f"bad header line {line!r}")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


def http_fetch(server: SockAddr, method: str, target: str) -> Generator[Any, Any, HttpResponse]:
    """One request on a fresh connection (Connection: close), then close."""
    client = yield from HttpClient.connect(server)
    try:
        return (yield from client.request(method, target, keep_alive=False))
    finally:
        yield from client.close()


def http_session(server: SockAddr, requests: list[tuple[str, str]]) -> Generator[Any, Any, list[HttpResponse]]:
    """Several requests over one keep-alive connection."""
    client = yield from HttpClient.connect(server)
    try:
        out = []
        for method, target in requests:
            out.append((yield from client.request(method, target)))
        return out
    finally:
        yield from client.close()


def http_raw(server: SockAddr, data: bytes,
             head_only: bool = False) -> Generator[Any, Any, tuple[HttpResponse, bool]]:
    """Send raw bytes, read one response; (response, whether the server then closed the connection)."""
    client = yield from HttpClient.connect(server)
    try:
        yield from client.send_raw(data)
        response = yield from client.read_response(head_only=head_only)
        closed = False
        if (response.header("connection") or "").lower() == "close":
            closed = yield from client.wait_closed()
        return response, closed
    finally:
        yield from client.close()
