"""khttpd over TDI (Transport=TDI): the same driver, its sockets from the TDI sockets library.

Where the WSK build calls WskAccept/WskReceive/WskSend on a socket's dispatch table,
these routines go through stack.tdi.sockets, whose every call is a TDI IRP sent with
IoCallDriver to \\Device\\Tcp or \\Device\\Tcp6.  Listening uses the thesis's
connect-event design (a TDI_EVENT_CONNECT handler handing out endpoints opened in
advance, a work item opening replacements); one accept thread per address family
turns each accepted socket into a KhttpdConnection for the usual connection worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generator

from stack.kernel import (NT_SUCCESS, STATUS_SUCCESS, TRACE_LEVEL_ERROR, ExAllocatePoolWithTag, ExFreePoolWithTag,
                          IoAllocateMdl, IoFreeMdl, MmBuildMdlForNonPagedPool, NonPagedPoolNx, PsCreateSystemThread,
                          TraceEvents, current_kernel, kroutine)
from stack.kernel.mdl import mdl_chain_views
from stack.tcpip.addr import SockAddr
from stack.tdi import sockets as ks
from stack.tdi.constants import TDI_SEND_AND_DISCONNECT

if TYPE_CHECKING:
    from .state import KhttpdConnection, KhttpdGlobals, KhttpdSendContext

LISTEN_BACKLOG = 8
recv_mdl = ks.recv_mdl  # (fd, mdl, length, timeout_ns): -2 on a timeout (then aborted)
abort_nowait = ks.abort_nowait


def _text(address: SockAddr | None) -> str:
    if address is None:
        return "-"
    ip = address.ip
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


@kroutine("khttpd")
def KhttpdStartListeningTdi(g: "KhttpdGlobals") -> Generator[Any, Any, int]:
    """Bind port `Port` on \\Device\\Tcp and \\Device\\Tcp6, listen with a connect event handler."""
    from .cache import KhttpdResponseCache
    from .cached import KhttpdStartCachedListening, KhttpdTdiAcceptCallback
    ks.ks_startup(g.device)
    cached = g.config.event_driven  # (the cached path's event-driven connections, with or without a cache)
    if int(g.config.ResponseCache):
        g.cache = KhttpdResponseCache(int(g.config.ResponseCache))
    for any_ip, af in (("0.0.0.0", 2), ("::", 23)):
        fd = ks.socket(af)
        status = yield from ks.bind(fd, SockAddr(any_ip, g.config.Port))
        if NT_SUCCESS(status) and cached:
            status = yield from KhttpdStartCachedListening(g, fd)
        if NT_SUCCESS(status):
            status = yield from ks.listen(fd, LISTEN_BACKLOG, ks.KS_LISTEN_EVENT,
                                          KhttpdTdiAcceptCallback if cached else None)
        if not NT_SUCCESS(status):
            yield from ks.closesocket(fd)
            return status
        g.tdi_listen.append(fd)
        if not cached:
            PsCreateSystemThread(KhttpdTdiAcceptThread, (g, fd), name=f"khttpd TDI accept {af}")
    return STATUS_SUCCESS


@kroutine("khttpd")
def KhttpdTdiAcceptThread(Context: tuple["KhttpdGlobals", int]) -> Generator[Any, Any, None]:
    from .driver import KhttpdNewConnection, KhttpdQueueConnection
    g, listen_fd = Context
    while True:
        fd = yield from ks.accept(listen_fd)
        if fd < 0:
            return
        if g.stopping:
            ks.abort_nowait(fd)
            yield from ks.closesocket(fd)
            continue
        local = yield from ks.getsockname(fd)
        connection = KhttpdNewConnection(g, None, _text(ks.getpeername(fd)), _text(local))
        if connection is None:
            ks.abort_nowait(fd)
            yield from ks.closesocket(fd)
            continue
        connection.tdi_fd = fd
        KhttpdQueueConnection(connection)


@kroutine("khttpd")
def KhttpdStopListeningTdi(g: "KhttpdGlobals") -> Generator[Any, Any, None]:
    while g.tdi_listen:
        yield from ks.closesocket(g.tdi_listen.pop())
    if g.cache is not None:
        for connection in list(g.connections):
            if connection.event_driven and not connection.busy and not connection.closing:
                from .cached import _queue_close
                _queue_close(connection)


@kroutine("khttpd")
def KhttpdSendChainTdi(connection: "KhttpdConnection", send: "KhttpdSendContext",
                       length: int) -> Generator[Any, Any, bool]:
    """TDI_SEND of header MDL -> body chain; the IRP is the library's, so the release is ours."""
    from .response import KhttpdLastResponse, KhttpdReleaseSend
    from .state import WPP_PROVIDER, free_send_context
    from .filecache import KhttpdReleaseFile
    flags = 0
    if KhttpdLastResponse(connection):
        connection.disconnected = True
        flags = TDI_SEND_AND_DISCONNECT  # the response and our FIN in one TDI_SEND
    sent = yield from ks.send_mdl(connection.tdi_fd, send.header_mdl, length, flags)
    KhttpdReleaseSend(send)
    ok = sent >= 0
    if ok:
        connection.globals.stats.bytes_sent += sent
    else:
        TraceEvents(WPP_PROVIDER, TRACE_LEVEL_ERROR, "TRCERROR", "TDI_SEND to %s failed", connection.remote)
    if send.file_object is not None:
        KhttpdReleaseFile(connection.globals.open_files, send.file_object)
        send.file_object = None
    free_send_context(send)
    return ok


@kroutine("khttpd")
def KhttpdCallBackendTdi(connection: "KhttpdConnection", request: Any) -> Generator[Any, Any, Any]:
    """connect to the user-mode server over TDI, send the raw request, read one response, close."""
    from .state import BODY_TAG, WPP_PROVIDER
    from .relay import BackendResponseReader
    g = connection.globals
    import ipaddress
    address = ipaddress.ip_address(g.config.BackendAddress or connection.local)
    remote = SockAddr(address, g.config.BackendPort)
    fd = ks.socket(2 if address.version == 4 else 23)
    status = yield from ks.connect(fd, remote)
    if not NT_SUCCESS(status):
        TraceEvents(WPP_PROVIDER, TRACE_LEVEL_ERROR, "TRCERROR", "connect to the user-mode server: %!STATUS!",
                    status)
        yield from ks.closesocket(fd)
        return None
    buffer = ExAllocatePoolWithTag(NonPagedPoolNx, max(len(request.raw), 1), BODY_TAG)
    mdl = IoAllocateMdl(buffer, max(len(request.raw), 1)) if buffer else None
    try:
        if mdl is None:
            return None
        MmBuildMdlForNonPagedPool(mdl)
        k = current_kernel()
        k.write(buffer, request.raw)
        k.copies.count(len(request.raw), "KhttpdRelayRequest")
        if (yield from ks.send_mdl(fd, mdl, len(request.raw))) < 0:
            return None
        reader = BackendResponseReader(request.method)
        size = g.config.ReceiveBufferSize
        while True:
            count = yield from ks.recv_mdl(fd, connection.recv_mdl, size)
            if count < 0:
                return None
            data = b"".join(mdl_chain_views(connection.recv_mdl, 0, count)) if count else b""
            result = reader.feed(data)
            if result is not None:
                return result
    finally:
        if mdl is not None:
            IoFreeMdl(mdl)
        if buffer:
            ExFreePoolWithTag(buffer, BODY_TAG)
        yield from ks.shutdown(fd, ks.SD_SEND)
        yield from ks.closesocket(fd)


@kroutine("khttpd")
def close_connection(fd: int, disconnected: bool = False) -> Generator[Any, Any, None]:
    """TDI_DISCONNECT (release) unless the last TDI_SEND carried it, then close the handles."""
    if not disconnected:
        yield from ks.shutdown(fd, ks.SD_SEND)
    yield from ks.closesocket(fd)
