"""afd's datagram-socket dispatch (WSK_PROVIDER_DATAGRAM_DISPATCH): WskSendTo and WskReceiveFrom.

A datagram from tcpip (afd!WskProTLEventReceiveMessages) fills a pended WskReceiveFrom first,
then goes to the client's WskReceiveFromEvent, else waits in a bounded queue.
"""

from __future__ import annotations

from typing import Any

from stack.kernel import (NT_SUCCESS, STATUS_BUFFER_OVERFLOW, STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER,
                          STATUS_PENDING, STATUS_SUCCESS, kroutine)
from stack.kernel.mdl import copy_to_mdl
from stack.kernel.memory import NO_PHYSICAL_ADDRESS
from stack.tcpip.addr import SockAddr
from stack.wsk.constants import WSK_EVENT_RECEIVE_FROM
from stack.wsk.structs import WSK_BUF, WskAddressError, fill_sockaddr, from_sockaddr, to_sockaddr

from .indication import build_pieces, free_pieces, retain_pieces
from .irp import IrpCompletion, afd_take_irp
from .socket import (WskSocketObject, complete_now, event_callback, event_flags, publish_call, publish_event,
                     store_output, validate_buf)


@kroutine("afd")
def WskProAPISendTo(Socket: WskSocketObject, Buffer: WSK_BUF, Flags: int, RemoteAddress: Any, ControlInfoLength: int,
              ControlInfo: Any, Irp: Any) -> int:
    length = Buffer.Length if Buffer is not None else 0
    publish_call(Socket, "WskSendTo", Irp, length)
    bad = validate_buf(Buffer, allow_empty=False)
    try:
        remote = to_sockaddr(RemoteAddress)
    except WskAddressError:
        bad = STATUS_INVALID_PARAMETER
    if bad is not None:
        return complete_now(Socket, Irp, "WskSendTo", bad)
    if Socket.endpoint is None or Socket.closing:
        return complete_now(Socket, Irp, "WskSendTo", STATUS_INVALID_DEVICE_STATE)

    def start(irp: Any) -> int:
        completion = IrpCompletion(irp)

        def sent(status: int, nbytes: int) -> None:
            Socket.bytes_sent += nbytes
            completion.done(status, nbytes)

        return completion.started(Socket.endpoint.send_to(remote, Buffer.Mdl, Buffer.Offset, Buffer.Length, sent))

    return afd_take_irp(Socket.provider.device, Irp, "WskSendTo", Socket.address, length, Flags, start)


@kroutine("afd")
def WskProAPIReceiveFrom(Socket: WskSocketObject, Buffer: WSK_BUF, Flags: int, RemoteAddress: Any, ControlLength: Any,
                   ControlInfo: Any, ControlFlags: Any, Irp: Any) -> int:
    length = Buffer.Length if Buffer is not None else 0
    publish_call(Socket, "WskReceiveFrom", Irp, length)
    bad = validate_buf(Buffer, allow_empty=False)
    if bad is not None:
        return complete_now(Socket, Irp, "WskReceiveFrom", bad)
    if Socket.endpoint is None or Socket.closing:
        return complete_now(Socket, Irp, "WskReceiveFrom", STATUS_INVALID_DEVICE_STATE)
    store_output(ControlLength, 0)
    store_output(ControlFlags, 0)

    def start(irp: Any) -> int:
        completion = IrpCompletion(irp)
        if Socket.datagram_queue:
            remote, data = Socket.datagram_queue.popleft()
            _fill_receive_from(Socket, Buffer, RemoteAddress, completion, remote,
                               [(NO_PHYSICAL_ADDRESS, memoryview(data))], len(data))
            if not Socket.datagram_queue:
                Socket.receive_paused = False  # the event may be indicated again
        else:
            Socket.receive_from_irps.append((Buffer, RemoteAddress, completion))
        return completion.started(STATUS_PENDING)

    return afd_take_irp(Socket.provider.device, Irp, "WskReceiveFrom", Socket.address, length, Flags, start)


def _fill_receive_from(sock: WskSocketObject, buf: WSK_BUF, remote_out: Any, completion: IrpCompletion,
                       remote: SockAddr, runs: list[tuple[int, memoryview]], nbytes: int) -> None:
    take = min(nbytes, buf.Length)
    if take:
        chunks: list[memoryview] = []
        left = take
        for _, v in runs:
            if left <= 0:
                break
            chunks.append(v[:left])
            left -= len(chunks[-1])
        copy_to_mdl(buf.Mdl, buf.Offset, chunks, "wsk receive-from into client MDL")
    if remote_out is not None:
        fill_sockaddr(remote_out, remote, sock.family)
    sock.bytes_received += take
    completion.done(STATUS_SUCCESS if take == nbytes else STATUS_BUFFER_OVERFLOW, take)


@kroutine("afd")
def WskProTLEventReceiveMessages(endpoint: Any, remote: SockAddr, runs: list[tuple[int, memoryview]],
                                 nbytes: int) -> None:
    """Transport upcall with one datagram, as runs (physical address, view): a posted WskReceiveFrom
    first, then the event."""
    sock: WskSocketObject | None = endpoint.context
    if sock is None or sock.closing:
        return
    if sock.receive_from_irps:
        buf, remote_out, completion = sock.receive_from_irps.popleft()
        _fill_receive_from(sock, buf, remote_out, completion, remote, runs, nbytes)
        return
    callback = event_callback(sock, WSK_EVENT_RECEIVE_FROM)
    if callback is None or sock.receive_paused:
        _queue_datagram(sock, remote, runs, nbytes)
        return
    k = sock.kernel
    built, pieces = build_pieces(k, runs, datagram=True)
    if not NT_SUCCESS(built):
        _queue_datagram(sock, remote, runs, nbytes)  # no pool for an indication: keep it for WskReceiveFrom
        return
    if not pieces:
        return
    for piece in pieces:
        piece.node.RemoteAddress = from_sockaddr(remote, sock.family)  # type: ignore[union-attr]
    head = pieces[0].node
    status = callback(sock.ClientContext, event_flags(), head)
    publish_event(sock, "WskReceiveFromEvent", callback, status, nbytes)
    if status == STATUS_PENDING:
        if NT_SUCCESS(retain_pieces(k, pieces)):
            sock.held[id(head)] = pieces
            sock.bytes_received += nbytes
            return
        free_pieces(pieces)  # the datagram cannot outlive the upcall: dropped, as a full buffer would
        return
    free_pieces(pieces)
    if status == STATUS_SUCCESS:
        sock.bytes_received += nbytes
        return
    sock.receive_paused = True  # DATA_NOT_ACCEPTED: keep it until a WskReceiveFrom takes it
    _queue_datagram(sock, remote, runs, nbytes)


def _queue_datagram(sock: WskSocketObject, remote: SockAddr, runs: list[tuple[int, memoryview]],
                    nbytes: int) -> None:
    data = b"".join([view for _, view in runs])
    sock.kernel.copies.count(nbytes, "wsk datagram queued")
    sock.datagram_queue.append((remote, data))
    if len(sock.datagram_queue) > 64:  # a bounded queue, like a socket receive buffer
        sock.datagram_queue.popleft()
