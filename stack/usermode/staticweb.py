"""A user-mode static web server the way IIS 5 / Apache 1.3 on Windows served files (the thesis's baseline).

    staticweb(port=8000)    a program for winsrv: serves the kfs docroot khttpd serves

One thread per connection (Apache 1.3 for Windows ran a pool of such threads);
per request:

    recv          a system call; the request arrives in a user buffer (tcpip's copy)
    parse         in user mode (http_parse)
    CreateFile    a system call: IRP_MJ_CREATE to kfs
    ReadFile      a system call per 64 KiB: IRP_MJ_READ, CcCopyRead copies the cached pages into the
                  user buffer (copy 1)
    send          a system call; AFD of that era copied the user's bytes into its own nonpaged
                  buffer and completed the send (copy 2) - this emulated AFD sends from the locked
                  user pages, so `_send` makes that copy here, for real (RtlCopyMemory)
    CloseHandle   a system call: IRP_MJ_CLEANUP + IRP_MJ_CLOSE

So each request costs two copies of the file and five or more system calls,
where khttpd sends the cached pages by MDL from a kernel thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator

from stack.fs import fsio
from stack.fs.kfs import VOLUME_DEVICE_NAME
from stack.kernel import current_kernel
from stack.kernel.ex import RtlCopyMemory
from stack.kernel.io import IoGetDeviceObjectPointer
from stack.kernel.ntstatus import NT_SUCCESS

from .socket import AF_INET, SOCK_STREAM, SockAddr, Socket, SocketError, UserBuffer, spawn

STATICWEB_PORT = 8000
CHUNK = 64 * 1024  # ReadFile / send size (Apache 1.3's and IIS's file buffers were of this order)
MAX_HEAD = 8 * 1024
SERVER_NAME = "staticweb/1.0 (user mode)"
TYPES = {"html": "text/html", "htm": "text/html", "txt": "text/plain", "css": "text/css", "js": "application/javascript",
         "png": "image/png", "jpg": "image/jpeg", "gif": "image/gif"}


@dataclass
class StaticWebStats:
    connections: int = 0
    requests: int = 0
    not_found: int = 0
    bytes_sent: int = 0


def staticweb(port: int = STATICWEB_PORT, stats: StaticWebStats | None = None) -> Generator[Any, Any, StaticWebStats]:
    """Accept forever on 0.0.0.0:port, a thread per connection."""
    stats = stats if stats is not None else StaticWebStats()
    listener = yield from Socket.create(AF_INET, SOCK_STREAM)
    yield from listener.bind(SockAddr.parse(f"0.0.0.0:{port}"))
    yield from listener.listen(64)
    while True:
        conn = yield from listener.accept()
        stats.connections += 1
        spawn(_serve_connection, conn, stats, name="staticweb-conn")


def _serve_connection(conn: Socket, stats: StaticWebStats) -> Generator[Any, Any, None]:
    buffer = UserBuffer(MAX_HEAD)
    pending = b""
    try:
        while True:
            while b"\r\n\r\n" not in pending:
                n = yield from conn.recv_into(buffer, MAX_HEAD)
                if n == 0:
                    raise EOFError
                pending += buffer.read(n)
            head, _, pending = pending.partition(b"\r\n\r\n")
            keep_alive = yield from _serve_request(conn, head, stats)
            if not keep_alive:
                break
        yield from conn.shutdown()
    except (EOFError, SocketError):
        pass
    yield from conn.close()
    buffer.free()


def _parse(head: bytes) -> tuple[str, str, bool]:
    """(method, path, keep-alive) of a request head, as the server's own code parses it."""
    current_kernel().charge("http_parse")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return "", "", False
    method, target, version = parts
    connection = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "connection":
            connection = value.strip().lower()
    keep = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    return method, target.split("?", 1)[0], keep


def _serve_request(conn: Socket, head: bytes, stats: StaticWebStats) -> Generator[Any, Any, bool]:
    method, path, keep = _parse(head)
    stats.requests += 1
    opened = _create_file(path) if method in ("GET", "HEAD") else None
    if opened is None:
        stats.not_found += 1
        body = b"not found\n"
        response = _head(404, "text/plain", len(body), keep) + body
        buffer = UserBuffer(len(response))
        buffer.write(response)
        yield from _send(conn, buffer, len(response), stats)
        buffer.free()
        return keep
    file_object, size = opened
    head_bytes = _head(200, TYPES.get(path.rsplit(".", 1)[-1], "application/octet-stream"), size, keep)
    body = size if method == "GET" else 0
    buffer = UserBuffer(len(head_bytes) + body)  # the response in one buffer: head, then the file
    buffer.write(head_bytes)
    ok = True
    offset = 0
    while offset < body:
        n = _read_file(file_object, offset, min(CHUNK, body - offset), buffer.va + len(head_bytes) + offset)
        if n <= 0:
            ok = False
            break
        offset += n
    _close_handle(file_object)
    if ok:
        yield from _send(conn, buffer, len(head_bytes) + body, stats)
    buffer.free()
    return keep and ok


def _head(status: int, content_type: str, length: int, keep: bool) -> bytes:
    reason = {200: "OK", 404: "Not Found"}[status]
    return (f"HTTP/1.1 {status} {reason}\r\nServer: {SERVER_NAME}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n{'' if keep else 'Connection: close' + chr(13) + chr(10)}\r\n").encode()


# --- the Win32 calls, each a system call into the I/O manager ------------------------------------

def _create_file(path: str) -> tuple[Any, int] | None:
    """CreateFile + GetFileSize: (FILE_OBJECT, size) or None."""
    k = current_kernel()
    k.charge("syscall")
    volume = IoGetDeviceObjectPointer(VOLUME_DEVICE_NAME)
    if volume is None or ".." in path or not path.startswith("/"):
        return None
    status, file_object = fsio.fs_open(volume, "\\" + path.lstrip("/").replace("/", "\\"))
    if not NT_SUCCESS(status) or file_object is None:
        return None
    k.charge("syscall")
    status, size = fsio.fs_query_size(file_object)
    if not NT_SUCCESS(status):
        _close_handle(file_object)
        return None
    return file_object, size


def _read_file(file_object: Any, offset: int, length: int, user_va: int) -> int:
    """ReadFile into the user buffer: the cache manager copies the pages (copy 1)."""
    current_kernel().charge("syscall")
    status, n = fsio.fs_read(file_object, offset, length, user_va)
    return n if NT_SUCCESS(status) else -1


def _close_handle(file_object: Any) -> None:
    current_kernel().charge("syscall")
    fsio.fs_close(file_object)


def _send(conn: Socket, buffer: UserBuffer, length: int, stats: StaticWebStats) -> Generator[Any, Any, None]:
    """send(): AFD copies the user's bytes into its own buffer (copy 2), then the transport sends them."""
    afd_buffer = UserBuffer(length)  # stands for AFD's nonpaged send buffer
    RtlCopyMemory(afd_buffer.va, buffer.va, length)
    stats.bytes_sent += length
    yield from conn.send(afd_buffer, length)
    afd_buffer.free()


def install(world: Any, host: str = "winsrv", port: int = STATICWEB_PORT) -> StaticWebStats:
    """Start the server on `host` (once) and let it reach accept()."""
    from .socket import run_program
    h = world.host(host)
    stats = h.extras.get("staticweb_stats")
    if stats is None:
        stats = h.extras["staticweb_stats"] = StaticWebStats()
        h.extras["staticweb"] = run_program(h.kernel, staticweb, port, stats, name="staticweb")
        world.run_until_idle(max_events=100_000)
    return stats
