"""khttpd's responses: static files (zero copy: header MDL -> the cache manager's MDL chain from
FsRtlMdlReadEx (fast I/O when cached, IRP_MN_MDL otherwise), ONE send; copy mode: a nonpaged body
buffer), ranges, and the send path both transports share (KhttpdSendChain: WskSend /
WskDisconnect with data, or TDI_SEND through tdi_transport.py).
KhttpdSendComplete (DISPATCH_LEVEL) only wakes the sender; the sender, back at PASSIVE_LEVEL, gives the
cache pages back (FsRtlMdlReadComplete is PASSIVE_LEVEL only) and frees the header MDL."""

from __future__ import annotations

from typing import Any, Generator

from stack.drivers.khttpd.http import HttpStateError, Request
from stack.drivers.khttpd.conditional import (MULTIPART_BOUNDARY, RANGE_UNSATISFIABLE, Validators, content_range,
                                              multipart_pieces, not_modified, parse_range)
from stack.drivers.khttpd.mime import content_type_for
from stack.drivers.khttpd import tdi_transport
from stack.fs import fsio
from stack.fs.fsrtl import FsRtlMdlReadComplete, fs_mdl_read_fast
from stack.drivers.khttpd.filecache import KhttpdOpenFile, KhttpdReleaseFile
from stack.kernel import (NT_SUCCESS, STATUS_INSUFFICIENT_RESOURCES, STATUS_MORE_PROCESSING_REQUIRED,
                          STATUS_UNSUCCESSFUL, TRACE_LEVEL_ERROR, ExAllocatePoolWithTag, ExFreePoolWithTag,
                          IoAllocateMdl, IoFreeMdl, IoReuseIrp, IoSetCompletionRoutine,
                          KeSetEvent, KeWaitForSingleObject, Mdl, MmBuildMdlForNonPagedPool, NonPagedPoolNx,
                          TraceEvents, current_kernel, kroutine)
from stack.kernel.ke import KEVENT, Executive, KernelMode, SynchronizationEvent, KeClearEvent
from stack.kernel.mdl import mdl_chain_views
from stack.wsk import WSK_BUF

from .state import (BODY_TAG, SEND_TAG, HEADER_BUFFER_SIZE, WPP_PROVIDER, KhttpdConnection, KhttpdSendContext,
                    _http_now, _nonpaged_mdl, _fs_name, _log, free_send_context)
from stack.kernel.lookaside import ExAllocateFromLookasideListEx


@kroutine("khttpd")
def KhttpdServeStatic(connection: KhttpdConnection, request: Request) -> Generator[Any, Any, bool]:
    """Header MDL -> cache MDL chain, ONE WskSend (or a copied body in copy mode)."""
    g = connection.globals
    http = connection.http
    path = request.path
    assert path is not None
    # The open-file cache's FILE_OBJECT when the file is open already (no IRP), else a new open
    status, file_object, size, last_write_time = KhttpdOpenFile(g.open_files, path.fs_path, _fs_name(path.fs_path))
    if file_object is None or not NT_SUCCESS(status):
        TraceEvents(WPP_PROVIDER, TRACE_LEVEL_ERROR, "TRCFS", "open %s failed: %!STATUS!", path.fs_path, status)
        # Out of memory is the server's trouble, not a missing file: 503, as HTTP.sys answers then.
        code = 503 if status == STATUS_INSUFFICIENT_RESOURCES else 404
        sent = yield from KhttpdSendBytes(connection, http.build_error_response(code, now_s=_http_now()))
        _log(connection, request.method, request.target, request.http_version, code, 0)
        return sent
    content_type = content_type_for(path.fs_path)
    validators = Validators.for_file(path.fs_path, size, last_write_time)
    if not_modified(request.header(b"if-none-match"), request.header(b"if-modified-since"), validators):
        KhttpdReleaseFile(g.open_files, file_object)
        header = http.build_response_header(304, now_s=_http_now(), content_length=size,
                                            headers=validators.headers(), keep_alive=request.keep_alive)
        sent = yield from KhttpdSendBytes(connection, header + http.end_response())
        _log(connection, request.method, request.target, request.http_version, 304, 0)
        return sent
    ranges = parse_range(request.header(b"range"), size, request.header(b"if-range"), validators)
    if ranges == RANGE_UNSATISFIABLE:
        KhttpdReleaseFile(g.open_files, file_object)
        sent = yield from KhttpdSendBytes(connection, http.build_error_response(
            416, now_s=_http_now(), keep_alive=request.keep_alive, headers=[("Content-Range", f"bytes */{size}")]))
        _log(connection, request.method, request.target, request.http_version, 416, 0)
        return sent
    if isinstance(ranges, list) and len(ranges) > 1:
        return (yield from KhttpdServeMultipleRanges(connection, request, file_object, size, content_type,
                                                     validators, ranges))
    status_code, offset, extra = 200, 0, [("Accept-Ranges", "bytes")] + validators.headers()
    if isinstance(ranges, list):
        first, last = ranges[0]
        whole = size
        status_code, offset, size = 206, first, last - first + 1
        extra.append(("Content-Range", content_range(first, last, whole)))
    header = http.build_response_header(status_code, now_s=_http_now(), content_length=size,
                                        content_type=content_type, headers=extra, keep_alive=request.keep_alive)
    send = _new_send_context(connection)
    if send is None:
        KhttpdReleaseFile(g.open_files, file_object)
        return False
    send.file_object = file_object
    send.header_mdl = _header_mdl(connection, header)
    if send.header_mdl is None:  # no MDL for the header: the response cannot start, close
        KhttpdReleaseFile(g.open_files, file_object)
        free_send_context(send)
        return False
    body_length = 0 if request.head_only else size
    if body_length:
        if g.config.CopyMode:
            send.body_buffer, send.body_mdl = _nonpaged_mdl(body_length, BODY_TAG)
            status, _ = fsio.fs_read(file_object, offset, body_length, send.body_mdl) if send.body_mdl else (
                STATUS_INSUFFICIENT_RESOURCES, 0)
            send.header_mdl.next = send.body_mdl
            g.stats.static_copied += 1
        else:
            # FsRtlMdlReadEx: kfs's fast I/O MdlRead when the pages are cached (no IRP), else IRP_MN_MDL
            status, send.cache_mdl = fs_mdl_read_fast(file_object, offset, body_length)
            send.header_mdl.next = send.cache_mdl
            g.stats.static_zero_copy += 1
        if not NT_SUCCESS(status):
            TraceEvents(WPP_PROVIDER, TRACE_LEVEL_ERROR, "TRCFS", "read %s failed: %!STATUS!", path.fs_path,
                        status)
            KhttpdReleaseSend(send)
            KhttpdReleaseFile(g.open_files, file_object)
            free_send_context(send)
            return False  # the header is framed but cannot be honoured: close the connection
        http.body_passthrough(body_length)
    else:
        g.stats.head_requests += int(request.head_only)
    http.end_response()
    sent = yield from KhttpdSendChain(connection, send, len(header) + body_length)
    _log(connection, request.method, request.target, request.http_version, status_code, body_length if sent else 0)
    return sent


@kroutine("khttpd")
def KhttpdServeMultipleRanges(connection: KhttpdConnection, request: Request, file_object: Any, size: int,
                              content_type: str, validators: Validators,
                              ranges: list[tuple[int, int]]) -> Generator[Any, Any, bool]:
    """206 multipart/byteranges, assembled in one nonpaged buffer (each range read from the cache once)."""
    http = connection.http
    body = bytearray()
    k = current_kernel()
    for piece in multipart_pieces(ranges, size, content_type):
        if isinstance(piece, bytes):
            body += piece
            continue
        first, last = piece
        status, mdl = fs_mdl_read_fast(file_object, first, last - first + 1)
        if not NT_SUCCESS(status) or mdl is None:
            KhttpdReleaseFile(connection.globals.open_files, file_object)
            return False
        body += b"".join(mdl_chain_views(mdl, 0, last - first + 1))
        k.copies.count(last - first + 1, "KhttpdServeMultipleRanges")
        FsRtlMdlReadComplete(file_object, mdl)
    KhttpdReleaseFile(connection.globals.open_files, file_object)
    header = http.build_response_header(
        206, now_s=_http_now(), content_length=len(body),
        content_type=f"multipart/byteranges; boundary={MULTIPART_BOUNDARY}",
        headers=[("Accept-Ranges", "bytes")] + validators.headers(), keep_alive=request.keep_alive)
    wire = header + (b"" if request.head_only else http.body_bytes(bytes(body))) + http.end_response()
    sent = yield from KhttpdSendBytes(connection, wire)
    _log(connection, request.method, request.target, request.http_version, 206, len(body) if sent else 0)
    return sent


def _new_send_context(connection: KhttpdConnection) -> KhttpdSendContext | None:
    address = ExAllocateFromLookasideListEx(connection.globals.send_lookaside)
    if not address:
        return None
    return KhttpdSendContext(address, connection, KEVENT(SynchronizationEvent, False))


def _header_mdl(connection: KhttpdConnection, header: bytes) -> Mdl | None:
    """The response header in the connection's nonpaged header buffer, described by a fresh MDL
    (None when IoAllocateMdl fails)."""
    if len(header) > HEADER_BUFFER_SIZE:
        raise HttpStateError(f"response header of {len(header)} bytes does not fit the header buffer")
    current_kernel().write(connection.header_buffer, header)
    mdl = IoAllocateMdl(connection.header_buffer, len(header))
    if mdl is None:
        TraceEvents(WPP_PROVIDER, TRACE_LEVEL_ERROR, "TRCERROR", "no MDL for the response to %s: %!STATUS!",
                    connection.remote, STATUS_INSUFFICIENT_RESOURCES)
        return None
    MmBuildMdlForNonPagedPool(mdl)
    return mdl


@kroutine("khttpd")
def KhttpdSendChain(connection: KhttpdConnection, send: KhttpdSendContext,
                    length: int) -> Generator[Any, Any, bool]:
    """WskSend(WSK_BUF over header MDL -> body chain); KhttpdSendComplete wakes us and we release
    everything here, at PASSIVE_LEVEL (FsRtlMdlReadComplete may not run at DISPATCH_LEVEL)."""
    if connection.tdi_fd:
        return (yield from tdi_transport.KhttpdSendChainTdi(connection, send, length))
    socket = connection.Socket
    irp = connection.send.Irp
    IoReuseIrp(irp, STATUS_UNSUCCESSFUL)
    KeClearEvent(send.event)
    IoSetCompletionRoutine(irp, KhttpdSendComplete, send, True, True, True)
    if KhttpdLastResponse(connection):
        # Send and disconnect: the response and our FIN in one request (the FIN rides the last segment).
        connection.disconnected = True
        socket.Dispatch.WskDisconnect(socket, WSK_BUF(send.header_mdl, 0, length), 0, irp)
    else:
        socket.Dispatch.WskSend(socket, WSK_BUF(send.header_mdl, 0, length), 0, irp)
    if not send.event.signaled:
        yield KeWaitForSingleObject(send.event, Executive, KernelMode, False, None)
    KhttpdReleaseSend(send)
    status = irp.IoStatus.Status
    ok = NT_SUCCESS(status)
    if ok:
        connection.globals.stats.bytes_sent += length if connection.disconnected else int(
            irp.IoStatus.Information or 0)
    else:
        TraceEvents(WPP_PROVIDER, TRACE_LEVEL_ERROR, "TRCERROR", "send to %s failed: %!STATUS!",
                    connection.remote, status)
    if send.file_object is not None:
        KhttpdReleaseFile(connection.globals.open_files, send.file_object)
        send.file_object = None
    free_send_context(send)
    return ok


def KhttpdLastResponse(connection: KhttpdConnection) -> bool:
    """Is this response the connection's last (the HTTP core says close), to be sent with the FIN?"""
    return bool(connection.globals.config.SendAndDisconnect) and connection.http.should_close \
        and not connection.disconnected


@kroutine("khttpd")
def KhttpdSendComplete(DeviceObject: Any, Irp: Any, Context: KhttpdSendContext) -> int:
    """The transport is done with the bytes: wake the sender, which gives the cache pages back at
    PASSIVE_LEVEL (this routine runs at DISPATCH_LEVEL, from the transport's DPC)."""
    KeSetEvent(Context.event)
    return STATUS_MORE_PROCESSING_REQUIRED


def KhttpdReleaseSend(send: KhttpdSendContext) -> None:
    if send.header_mdl is not None:
        send.header_mdl.next = None
        IoFreeMdl(send.header_mdl)
        send.header_mdl = None
    if send.cache_mdl is not None:
        # fast I/O MdlReadComplete, or IRP_MJ_READ / IRP_MN_COMPLETE_MDL when the file system refuses it
        FsRtlMdlReadComplete(send.file_object, send.cache_mdl)
        send.cache_mdl = None
    if send.body_mdl is not None:
        IoFreeMdl(send.body_mdl)
        send.body_mdl = None
    if send.body_buffer:
        ExFreePoolWithTag(send.body_buffer, BODY_TAG)
        send.body_buffer = 0


@kroutine("khttpd")
def KhttpdSendBytes(connection: KhttpdConnection, data: bytes) -> Generator[Any, Any, bool]:
    """Small responses built in memory (errors, relayed replies): one nonpaged buffer, one send."""
    if not data:
        return True
    send = _new_send_context(connection)
    if send is None:
        return False
    if len(data) <= HEADER_BUFFER_SIZE:
        send.header_mdl = _header_mdl(connection, data)
        if send.header_mdl is None:
            free_send_context(send)
            return False
    else:
        send.body_buffer, send.body_mdl = _nonpaged_mdl(len(data), BODY_TAG)
        if send.body_mdl is None:
            free_send_context(send)
            return False
        k = current_kernel()
        k.write(send.body_buffer, data)
        k.copies.count(len(data), "KhttpdSendBytes")
        send.header_mdl, send.body_mdl = send.body_mdl, None  # one MDL; body_buffer is freed with it
    return (yield from KhttpdSendChain(connection, send, len(data)))
