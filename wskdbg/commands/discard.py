"""`!discard`: a timed one-way transfer between two user-mode programs, to watch afd's send buffering.

A discard server (RFC 863, TCP port 9) runs on winsrv as a user-mode program; the sender on `client`
sets SO_SNDBUF (when asked), makes Count blocking sends of Size bytes and shuts down.  The report
gives the virtual time at which each send returned - at once when afd buffered it, or only once the
peer acknowledged it (SO_SNDBUF 0, or a send the KB 214397 quota rule held back) - and when the
shutdown's FIN was acknowledged, i.e. when every byte had been delivered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generator

from stack.kernel import current_kernel
from stack.tcpip.addr import AF_INET, AF_INET6, SockAddr
from stack.usermode.programs import pattern
from stack.usermode.socket import SOCK_STREAM, Socket, UserBuffer, run_program

from wskdbg.commands.registry import CommandResult, Invocation, command
from wskdbg.commands.traffic import (CLIENT_HOST, SERVER_HOST, finish, int_option, parse_args, server_address,
                                     socket_failure, start_job)
from wskdbg.render.net import ms

if TYPE_CHECKING:
    from wskdbg.engine import Engine

DISCARD_PORT = 9


@dataclass
class DiscardResult:
    remote: str = ""
    sndbuf: int = 0
    sndbuf_set: bool = False
    connect_ns: int = 0
    sends: list[tuple[int, int, int]] = field(default_factory=list)  # size, returned at, took (ns from the first send)
    shutdown_ns: int = 0
    received: list[int] = field(default_factory=list)  # what the server read (filled when it finishes)


def discard_server(address: SockAddr, result: DiscardResult) -> Generator[Any, Any, int]:
    """Accept one connection, read until the peer's FIN, close."""
    listener = yield from Socket.create(AF_INET6 if address.ip.version == 6 else AF_INET, SOCK_STREAM)
    yield from listener.bind(address)
    yield from listener.listen(1)
    conn = yield from listener.accept()
    yield from listener.close()
    buf = UserBuffer(64 * 1024)
    total = 0
    try:
        while True:
            n = yield from conn.recv_into(buf)
            if n == 0:
                break
            total += n
    finally:
        yield from conn.close()
        buf.free()
    result.received.append(total)
    return total


def discard_sender(server: SockAddr, count: int, size: int, sndbuf: int | None,
                   result: DiscardResult) -> Generator[Any, Any, DiscardResult]:
    k = current_kernel
    start = k().now_ns
    sock = yield from Socket.create(AF_INET6 if server.ip.version == 6 else AF_INET, SOCK_STREAM)
    buf = UserBuffer(size)
    buf.write(pattern(9, size))
    try:
        if sndbuf is not None:
            yield from sock.setsockopt("SO_SNDBUF", sndbuf)
        result.sndbuf = yield from sock.getsockopt("SO_SNDBUF")
        yield from sock.connect(server)
        result.connect_ns = k().now_ns - start
        first = k().now_ns
        for _ in range(count):
            began = k().now_ns
            yield from sock.send(buf, size)
            result.sends.append((size, k().now_ns - first, k().now_ns - began))
        yield from sock.shutdown()  # returns when our FIN is acknowledged: every byte is delivered
        result.shutdown_ns = k().now_ns - first
    finally:
        yield from sock.close()
        buf.free()
    return result


def discard_report(r: DiscardResult) -> list[str]:
    how = f"SO_SNDBUF {r.sndbuf}" + ("" if r.sndbuf_set else " (default: afd sizes the buffer dynamically)")
    lines = [f"discard: {len(r.sends)} sends to {r.remote}, {how}; connected in {ms(r.connect_ns)}"]
    for i, (size, at, took) in enumerate(r.sends, 1):
        lines.append(f"  send #{i}  {size} bytes  returned at +{ms(at)}  "
                     + ("at once (buffered by afd)" if took == 0 else f"after {ms(took)}"))
    lines.append(f"  shutdown: FIN acknowledged at +{ms(r.shutdown_ns)} - every byte delivered")
    if r.received:
        lines.append(f"discard: winsrv's server read {r.received[0]} bytes")
    return lines


@command("!discard", area="services", syntax="!discard [/w] [-6] [-b SndBuf] [-n Count] [-s Size]", mutates=True,
         summary="Timed one-way transfer from client to a user-mode discard server on winsrv:9 (send buffering)",
         help="""
Starts a discard server (RFC 863, port 9) on winsrv and a sender on `client`, both user-mode programs.
The sender sets SO_SNDBUF to -b bytes (0: no send buffering - a send completes when the peer has
acknowledged it; without -b afd's default buffering), makes -n blocking sends (default 4) of -s bytes
(default 65536) and shuts down.  The report gives, in virtual time from the first send, when each
send returned and when the FIN was acknowledged (every byte delivered).  See !afd for the sockets'
buffers while it runs.  /w runs the machine until both programs are done.""")
def cmd_discard(dbg: "Engine", inv: Invocation) -> CommandResult:
    args = parse_args(inv, ("b", "n", "s"), 0)
    count = int_option(dbg, inv, args, "n", 4, 1, 1000)
    size = int_option(dbg, inv, args, "s", 65536, 1, 1 << 20)
    sndbuf = int_option(dbg, inv, args, "b", -1, 0, 1 << 30) if "b" in args.options else None
    server = server_address(dbg, SERVER_HOST, DISCARD_PORT, args.ipv6)
    listen = SockAddr(server.ip.__class__(0), DISCARD_PORT)
    result = DiscardResult(remote=str(server), sndbuf_set=sndbuf is not None)
    server_program = run_program(dbg.kernel_of(SERVER_HOST), discard_server, listen, result, name="discard-server")

    def body() -> Generator[Any, Any, DiscardResult]:
        yield from discard_sender(server, count, size, sndbuf, result)
        if server_program.thread is not None and not server_program.done:
            from stack.kernel import KeWaitForSingleObject
            yield KeWaitForSingleObject(server_program.thread)  # the server's count belongs to the report
        return result

    job = start_job(dbg, "discard", body, discard_report,
                    socket_failure("discard", " - is port 9 on winsrv free? (!afd on winsrv)"))
    started = f"discard: {count} x {size} bytes to {server} from {CLIENT_HOST}" + (
        f", SO_SNDBUF {sndbuf}" if sndbuf is not None else "")
    return finish(dbg, inv, job, args, started)

