"""afd.sys as the kernel half of user-mode Winsock: IRPs on \\Device\\Afd.

(The same driver is the WSK provider - provider.py and the dispatch-table files; its
DriverEntry is in driver.py.)  User-mode socket calls (stack.usermode.socket) reach afd as on
Windows, through NtCreateFile / NtDeviceIoControlFile / NtClose, as IRPs on \\Device\\Afd:
IRP_MJ_CREATE makes an endpoint (its FileObject), IRP_MJ_DEVICE_CONTROL carries one
IOCTL_AFD_* per call with an `AfdRequest` as its input buffer, and IRP_MJ_CLEANUP closes the
endpoint.  Buffers are described by MDLs built over the caller's pages (IoAllocateMdl +
MmProbeAndLockPages).  A send is copied once into afd's send buffer and completes as KB 214397
says (sendbuf.py); with SO_SNDBUF 0 it goes from the user's pages to the wire without a copy and
completes when acknowledged.  A receive is the transport's one copy.  Requests that wait (connect,
accept, a send the quota rule holds back, receive) are pended and completed from the transport's
callbacks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from stack.kernel import (STATUS_CANCELLED, STATUS_INSUFFICIENT_RESOURCES,
                          STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER,
                          STATUS_PENDING, STATUS_SUCCESS, IoAllocateMdl, IoCompleteRequest,
                          IoFreeMdl, IoGetCurrentIrpStackLocation, IoMarkIrpPending, MmProbeAndLockPages,
                          MmUnlockPages, current_kernel, kroutine)
from stack.kernel.io import FILE_DEVICE_NETWORK
from stack.kernel.mdl import IoReadAccess, IoWriteAccess, Mdl
from stack.tcpip.addr import AF_INET, SockAddr
from stack.tcpip.sharing import Share
from stack.tcpip.transport import (RECEIVE_WAITALL, ConnectionEndpoint, DatagramEndpoint, ListenEndpoint,
                                   get_transport)

from .sendbuf import (AFD_DEFAULT_SEND_WINDOW, AfdBufferedSend, BufferedSend, copy_send, ideal_send_backlog,
                      release_waiting, send_quota)

SOCK_STREAM = 1
SOCK_DGRAM = 2

FILE_DEVICE_AFD = 0x12


def _afd_ioctl(function: int, method: int = 3) -> int:
    """CTL_CODE(FILE_DEVICE_NETWORK, function, METHOD_NEITHER, FILE_ANY_ACCESS), the _AFD_CONTROL_CODE shape."""
    return (FILE_DEVICE_AFD << 12) | (function << 2) | method


IOCTL_AFD_BIND = _afd_ioctl(0)
IOCTL_AFD_CONNECT = _afd_ioctl(1)
IOCTL_AFD_START_LISTEN = _afd_ioctl(2)
IOCTL_AFD_ACCEPT = _afd_ioctl(4)
IOCTL_AFD_SEND = _afd_ioctl(7)
TF_DISCONNECT = 0x01  # TransmitFile / TransmitPackets: disconnect once the data is sent
IOCTL_AFD_SEND_DATAGRAM = _afd_ioctl(8)
IOCTL_AFD_RECV = _afd_ioctl(5)
IOCTL_AFD_RECV_DATAGRAM = _afd_ioctl(6)
IOCTL_AFD_DISCONNECT = _afd_ioctl(10)
IOCTL_AFD_SET_OPTION = _afd_ioctl(14)
IOCTL_AFD_GET_INFO = _afd_ioctl(30)

IOCTL_NAMES = {v: k for k, v in globals().items() if k.startswith("IOCTL_AFD_")}

AFD_TAG = "AfdE"


@dataclass(slots=True)
class AfdEndpoint:
    """What a socket handle's FileObject points at."""

    family: int
    type: int
    address: int = 0
    local: SockAddr | None = None
    v6only: bool = False
    connection: ConnectionEndpoint | None = None
    listener: ListenEndpoint | None = None
    datagram: DatagramEndpoint | None = None
    nodelay: bool = False
    closed: bool = False
    share: Share = Share.DEFAULT  # SO_REUSEADDR / SO_EXCLUSIVEADDRUSE (sharing.py)
    owner: Any = "System"  # the security context: the program that opened the socket
    # Send buffering (sendbuf.py): SO_SNDBUF as set (None: the default, sized dynamically), the
    # sends copied into afd's buffer that tcpip has not finished, and a failure to report.
    send_window: int | None = None
    buffered: deque[BufferedSend] = field(default_factory=deque)
    buffered_bytes: int = 0
    send_error: int = 0  # a buffered send failed after it completed: the next send reports it
    sends_buffered: int = 0  # sends copied into afd's buffer (since the socket opened)
    sends_held: int = 0  # of those, sends whose completion waited for the quota rule


@dataclass(slots=True)
class AfdRequest:
    """The input buffer of every IOCTL_AFD_*: arguments in, results out."""

    address: SockAddr | None = None  # bind/connect/send-to address; receive-from fills it
    buffer_va: int = 0
    length: int = 0
    flags: int = 0
    backlog: int = 16
    abortive: bool = False
    option: str = ""
    value: Any = None
    result: Any = None  # accept: the new FileObject; get-info: a dict


class FileObject:
    """A FILE_OBJECT for a socket: FsContext is the AFD endpoint."""

    def __init__(self, endpoint: AfdEndpoint | None = None) -> None:
        self.FsContext = endpoint
        self.address = 0

    def __repr__(self) -> str:
        return f"<FileObject {self.address:x} {self.FsContext}>"


# --- dispatch --------------------------------------------------------------------------------

@kroutine("afd")
def AfdDispatchCreate(DeviceObject: Any, Irp: Any) -> int:
    loc = IoGetCurrentIrpStackLocation(Irp)
    request: AfdRequest = Irp.system_buffer
    family, sock_type = request.value if request is not None and request.value else (AF_INET, SOCK_STREAM)
    k = current_kernel()
    from stack.kernel.ex import ExAllocatePoolWithTag
    from stack.kernel.pool import NonPagedPoolNx
    address = ExAllocatePoolWithTag(NonPagedPoolNx, 0x80, AFD_TAG)
    if not address:
        return _complete(Irp, STATUS_INSUFFICIENT_RESOURCES)
    endpoint = AfdEndpoint(family, sock_type)
    thread = current_kernel().current_thread
    if thread is not None:
        endpoint.owner = thread.name  # each lab program is its own security context
    endpoint.address = address
    k.addr_objects[endpoint.address] = endpoint
    file_object = loc.file_object
    file_object.FsContext = endpoint
    return _complete(Irp, STATUS_SUCCESS)


@kroutine("afd")
def AfdDispatchCleanup(DeviceObject: Any, Irp: Any) -> int:
    loc = IoGetCurrentIrpStackLocation(Irp)
    endpoint: AfdEndpoint | None = loc.file_object.FsContext if loc.file_object is not None else None
    if endpoint is not None and not endpoint.closed:
        AfdCloseEndpoint(endpoint)
    return _complete(Irp, STATUS_SUCCESS)


@kroutine("afd")
def AfdCloseEndpoint(endpoint: AfdEndpoint) -> None:
    """closesocket: graceful unless data was left unread (then a RST, as Windows does)."""
    endpoint.closed = True
    conn = endpoint.connection
    if conn is not None and not conn.closed:
        if conn.recv_available:
            conn.disconnect(abortive=True)
        elif conn.state in ("ESTABLISHED", "CLOSE_WAIT"):
            conn.disconnect()
        conn.close()
    if endpoint.listener is not None:
        endpoint.listener.close()
    if endpoint.datagram is not None:
        endpoint.datagram.close()
    if endpoint.buffered:
        # A graceful close lingers: the endpoint (and its row in !afd) stays until tcpip is done with
        # the last buffered send (AfdBufferedSendComplete frees it then).
        return
    free_endpoint(endpoint)


def free_endpoint(endpoint: AfdEndpoint) -> None:
    """The endpoint's 'AfdE' block goes back to pool: the socket is closed and nothing is buffered."""
    from stack.kernel.ex import ExFreePoolWithTag
    current_kernel().addr_objects.pop(endpoint.address, None)
    ExFreePoolWithTag(endpoint.address, AFD_TAG)


@kroutine("afd")
def AfdDispatchDeviceControl(DeviceObject: Any, Irp: Any) -> int:
    loc = IoGetCurrentIrpStackLocation(Irp)
    code = loc.parameters[2] if isinstance(loc.parameters, tuple) else 0
    endpoint: AfdEndpoint | None = loc.file_object.FsContext if loc.file_object is not None else None
    request: AfdRequest | None = Irp.system_buffer
    if endpoint is None or request is None or endpoint.closed:
        return _complete(Irp, STATUS_INVALID_DEVICE_STATE)
    handler = _HANDLERS.get(code)
    if handler is None:
        return _complete(Irp, STATUS_INVALID_DEVICE_REQUEST)
    return handler(endpoint, request, Irp)


def _complete(irp: Any, status: int, information: int = 0) -> int:
    irp.IoStatus.Status = status
    irp.IoStatus.Information = information
    IoCompleteRequest(irp)
    return status


def _pend(irp: Any) -> int:
    IoMarkIrpPending(irp)
    return STATUS_PENDING


# --- IOCTL handlers ------------------------------------------------------------------------------

@kroutine("afd")
def AfdBind(endpoint: AfdEndpoint, request: AfdRequest, irp: Any) -> int:
    if endpoint.local is not None or request.address is None:
        return _complete(irp, STATUS_INVALID_PARAMETER)
    transport = get_transport(current_kernel())
    endpoint.local = request.address
    if endpoint.type == SOCK_DGRAM:
        status, ep = transport.udp_open(request.address, v6only=endpoint.v6only, share=endpoint.share,
                                        owner=endpoint.owner)
        if ep is None:
            endpoint.local = None
            return _complete(irp, status)
        endpoint.datagram = ep
        endpoint.local = ep.local
    return _complete(irp, STATUS_SUCCESS)


@kroutine("afd")
def AfdConnect(endpoint: AfdEndpoint, request: AfdRequest, irp: Any) -> int:
    if endpoint.type != SOCK_STREAM or endpoint.connection is not None or request.address is None:
        return _complete(irp, STATUS_INVALID_DEVICE_STATE)
    transport = get_transport(current_kernel())
    status, conn = transport.tcp_socket(endpoint.local, endpoint.family, endpoint.share, endpoint.owner,
                                        endpoint.v6only)
    if conn is None:
        return _complete(irp, status)
    conn.nodelay = endpoint.nodelay
    endpoint.connection = conn

    def connected(c: ConnectionEndpoint, result: int) -> None:
        if result == STATUS_SUCCESS:
            endpoint.local = c.local
        _complete(irp, result)

    _pend(irp)  # the completion may run before connect() returns
    status = conn.connect(request.address, connected)
    if status != STATUS_PENDING:
        endpoint.connection = None
        conn.close()
        _complete(irp, status)
    return STATUS_PENDING


@kroutine("afd")
def AfdStartListen(endpoint: AfdEndpoint, request: AfdRequest, irp: Any) -> int:
    if endpoint.type != SOCK_STREAM or endpoint.local is None or endpoint.listener is not None:
        return _complete(irp, STATUS_INVALID_DEVICE_STATE)
    transport = get_transport(current_kernel())
    status, listener = transport.tcp_listen(endpoint.local, None, max(1, request.backlog), endpoint.v6only,
                                            endpoint.share, endpoint.owner)
    if listener is None:
        return _complete(irp, status)
    listener.context = endpoint  # how afd's accept hand-over (handover.py) finds a user-mode listener
    endpoint.listener = listener
    endpoint.local = listener.local
    return _complete(irp, STATUS_SUCCESS)


@kroutine("afd")
def AfdAccept(endpoint: AfdEndpoint, request: AfdRequest, irp: Any) -> int:
    listener = endpoint.listener
    if listener is None:
        return _complete(irp, STATUS_INVALID_DEVICE_STATE)

    def accepted(conn: ConnectionEndpoint | None, status: int) -> None:
        if conn is None:
            _complete(irp, status)
            return
        from stack.kernel.ex import ExAllocatePoolWithTag
        from stack.kernel.pool import NonPagedPoolNx
        address = ExAllocatePoolWithTag(NonPagedPoolNx, 0x80, AFD_TAG)
        if not address:  # no endpoint for it: reset the connection, fail the accept
            conn.disconnect(abortive=True)
            conn.close()
            _complete(irp, STATUS_INSUFFICIENT_RESOURCES)
            return
        child = AfdEndpoint(endpoint.family, SOCK_STREAM, local=conn.local, connection=conn)
        child.address = address
        current_kernel().addr_objects[child.address] = child
        request.result = FileObject(child)
        request.address = conn.remote
        if request.length:
            AfdAcceptExReceive(conn, request, irp)  # AcceptEx: complete with the first data
            return
        _complete(irp, STATUS_SUCCESS)

    _pend(irp)
    status = listener.accept(accepted)
    if status != STATUS_PENDING:
        _complete(irp, status)
    return STATUS_PENDING


@kroutine("afd")
def AfdAcceptExReceive(conn: ConnectionEndpoint, request: AfdRequest, irp: Any) -> None:
    """AcceptEx with a receive buffer (delayed accept): the accept completes together with the
    connection's first data, so the server's thread wakes once, for a request it can serve."""
    mdl = _lock_user_buffer(request, irp, IoWriteAccess)
    if mdl is None:
        _complete(irp, STATUS_INVALID_PARAMETER)
        return

    def received(status: int, nbytes: int) -> None:
        _unlock(mdl)
        _complete(irp, status, nbytes)

    status = conn.receive(mdl, 0, request.length, received, 0)
    if status != STATUS_PENDING:
        _unlock(mdl)
        _complete(irp, status, 0)


def _lock_user_buffer(request: AfdRequest, irp: Any, operation: int) -> Mdl | None:
    mdl = IoAllocateMdl(request.buffer_va, request.length, False, False, None)
    if mdl is None:
        return None
    MmProbeAndLockPages(mdl, 1, operation)
    return mdl


def _lock_failure(request: AfdRequest) -> int:
    """Why IoAllocateMdl gave no MDL: a bad length, or no pool for it."""
    return STATUS_INSUFFICIENT_RESOURCES if 0 < request.length <= 0xFFFFFFFF else STATUS_INVALID_PARAMETER


def _unlock(mdl: Mdl) -> None:
    MmUnlockPages(mdl)
    IoFreeMdl(mdl)


@kroutine("afd")
def AfdSend(endpoint: AfdEndpoint, request: AfdRequest, irp: Any) -> int:
    conn = endpoint.connection
    if conn is None:
        return _complete(irp, STATUS_INVALID_DEVICE_STATE)
    if endpoint.send_error:  # a buffered send failed after it completed (sendbuf.py)
        return _complete(irp, endpoint.send_error)
    if request.length == 0:
        return _complete(irp, STATUS_SUCCESS, 0)
    mdl = _lock_user_buffer(request, irp, IoReadAccess)
    if mdl is None:
        return _complete(irp, _lock_failure(request))
    # TransmitPackets (TF_DISCONNECT) sends from the locked pages, as TransmitFile does: no afd buffer.
    if endpoint.send_window != 0 and not request.flags & TF_DISCONNECT:
        entry = copy_send(mdl, request.length)  # KB 214397: afd buffers the send (None: no pool)
        if entry is not None:
            _unlock(mdl)
            return AfdBufferedSend(endpoint, conn, entry, irp)

    def sent(status: int, nbytes: int) -> None:
        _unlock(mdl)
        _complete(irp, status, nbytes)

    _pend(irp)
    if request.flags & TF_DISCONNECT:  # TransmitPackets(TF_DISCONNECT): the FIN rides the last data segment
        status = conn.send(mdl, 0, request.length, sent, disconnect=lambda status: None)
    else:
        status = conn.send(mdl, 0, request.length, sent)
    if status != STATUS_PENDING:
        _unlock(mdl)
        _complete(irp, status, request.length if status == STATUS_SUCCESS else 0)
    return STATUS_PENDING


@kroutine("afd")
def AfdReceive(endpoint: AfdEndpoint, request: AfdRequest, irp: Any) -> int:
    conn = endpoint.connection
    if conn is None:
        return _complete(irp, STATUS_INVALID_DEVICE_STATE)
    mdl = _lock_user_buffer(request, irp, IoWriteAccess)
    if mdl is None:
        return _complete(irp, _lock_failure(request))

    def received(status: int, nbytes: int) -> None:
        _unlock(mdl)
        _complete(irp, status, nbytes)

    _pend(irp)
    status = conn.receive(mdl, 0, request.length, received, RECEIVE_WAITALL if request.flags & 0x8 else 0)
    if status != STATUS_PENDING:
        _unlock(mdl)
        _complete(irp, status, 0)
    return STATUS_PENDING


@kroutine("afd")
def AfdDisconnect(endpoint: AfdEndpoint, request: AfdRequest, irp: Any) -> int:
    conn = endpoint.connection
    if conn is None:
        return _complete(irp, STATUS_INVALID_DEVICE_STATE)
    _pend(irp)
    status = conn.disconnect(request.abortive, lambda result: _complete(irp, result))
    if status != STATUS_PENDING:
        _complete(irp, status)
    return STATUS_PENDING


@kroutine("afd")
def AfdSendDatagram(endpoint: AfdEndpoint, request: AfdRequest, irp: Any) -> int:
    if endpoint.type != SOCK_DGRAM or request.address is None:
        return _complete(irp, STATUS_INVALID_DEVICE_STATE)
    if endpoint.datagram is None:  # sendto on an unbound socket binds it to an ephemeral port
        status, ep = get_transport(current_kernel()).udp_open(
            SockAddr("0.0.0.0" if endpoint.family == AF_INET else "::", 0), v6only=endpoint.v6only)
        if ep is None:
            return _complete(irp, status)
        endpoint.datagram = ep
        endpoint.local = ep.local
    mdl = _lock_user_buffer(request, irp, IoReadAccess)
    if mdl is None:
        return _complete(irp, _lock_failure(request))

    def sent(status: int, nbytes: int) -> None:
        _unlock(mdl)
        _complete(irp, status, nbytes)

    _pend(irp)
    status = endpoint.datagram.send_to(request.address, mdl, 0, request.length, sent)
    if status != STATUS_PENDING:
        _unlock(mdl)
        _complete(irp, status)
    return STATUS_PENDING


@kroutine("afd")
def AfdReceiveDatagram(endpoint: AfdEndpoint, request: AfdRequest, irp: Any) -> int:
    ep = endpoint.datagram
    if ep is None:
        return _complete(irp, STATUS_INVALID_DEVICE_STATE)
    mdl = _lock_user_buffer(request, irp, IoWriteAccess)
    if mdl is None:
        return _complete(irp, _lock_failure(request))

    def received(status: int, nbytes: int, remote: SockAddr | None) -> None:
        _unlock(mdl)
        request.address = remote
        _complete(irp, status, nbytes)

    _pend(irp)
    status = ep.receive_from(mdl, 0, request.length, received)
    if status != STATUS_PENDING:
        _unlock(mdl)
        _complete(irp, status)
    return STATUS_PENDING


@kroutine("afd")
def AfdSetOption(endpoint: AfdEndpoint, request: AfdRequest, irp: Any) -> int:
    if request.option == "TCP_NODELAY":
        endpoint.nodelay = bool(request.value)
        if endpoint.connection is not None:
            endpoint.connection.nodelay = endpoint.nodelay
    elif request.option == "IPV6_V6ONLY":
        endpoint.v6only = bool(request.value)
    elif request.option == "SO_SNDBUF":
        if not isinstance(request.value, int) or isinstance(request.value, bool) or request.value < 0:
            return _complete(irp, STATUS_INVALID_PARAMETER)
        endpoint.send_window = request.value  # 0: no buffering for the sends that follow
        release_waiting(endpoint)  # a larger buffer lets held sends complete now
    elif request.option in _SHARE_OPTIONS:
        option = _SHARE_OPTIONS[request.option]
        if endpoint.local is not None:
            return _complete(irp, STATUS_INVALID_PARAMETER)  # WSAEINVAL: only before bind
        if request.value:
            if endpoint.share not in (Share.DEFAULT, option):
                return _complete(irp, STATUS_INVALID_PARAMETER)  # the two exclude each other
            endpoint.share = option
        elif endpoint.share is option:
            endpoint.share = Share.DEFAULT
    else:
        return _complete(irp, STATUS_INVALID_PARAMETER)
    return _complete(irp, STATUS_SUCCESS)


_SHARE_OPTIONS = {"SO_REUSEADDR": Share.REUSEADDR, "SO_EXCLUSIVEADDRUSE": Share.EXCLUSIVE}


@kroutine("afd")
def AfdGetInfo(endpoint: AfdEndpoint, request: AfdRequest, irp: Any) -> int:
    conn = endpoint.connection
    if request.option:  # getsockopt / WSAIoctl query of one value
        getter = _GET_OPTIONS.get(request.option)
        if getter is None:
            return _complete(irp, STATUS_INVALID_PARAMETER)
        if request.option == "SIO_IDEAL_SEND_BACKLOG_QUERY" and conn is None:
            return _complete(irp, STATUS_INVALID_DEVICE_STATE)  # WSAENOTCONN: connected sockets only
        request.result = getter(endpoint)
        return _complete(irp, STATUS_SUCCESS)
    request.result = {
        "local": endpoint.local, "remote": conn.remote if conn is not None else None,
        "state": conn.state if conn is not None else ("LISTEN" if endpoint.listener else "UNCONNECTED"),
        "tcb": conn.snapshot() if conn is not None else None,
        "SO_REUSEADDR": int(endpoint.share is Share.REUSEADDR),
        "SO_EXCLUSIVEADDRUSE": int(endpoint.share is Share.EXCLUSIVE),
    }
    return _complete(irp, STATUS_SUCCESS)


_GET_OPTIONS = {
    "SO_SNDBUF": lambda ep: AFD_DEFAULT_SEND_WINDOW if ep.send_window is None else ep.send_window,
    "TCP_NODELAY": lambda ep: int(ep.nodelay),
    "SIO_IDEAL_SEND_BACKLOG_QUERY": ideal_send_backlog,
    "send_quota": send_quota,  # the lab's view: what the quota rule uses now (dynamic or SO_SNDBUF)
}


_HANDLERS = {
    IOCTL_AFD_BIND: AfdBind, IOCTL_AFD_CONNECT: AfdConnect, IOCTL_AFD_START_LISTEN: AfdStartListen,
    IOCTL_AFD_ACCEPT: AfdAccept, IOCTL_AFD_SEND: AfdSend, IOCTL_AFD_RECV: AfdReceive,
    IOCTL_AFD_DISCONNECT: AfdDisconnect, IOCTL_AFD_SEND_DATAGRAM: AfdSendDatagram,
    IOCTL_AFD_RECV_DATAGRAM: AfdReceiveDatagram, IOCTL_AFD_SET_OPTION: AfdSetOption,
    IOCTL_AFD_GET_INFO: AfdGetInfo,
}


@kroutine("afd")
def AfdDispatchClose(DeviceObject: Any, Irp: Any) -> int:
    return _complete(Irp, STATUS_SUCCESS)


_ = (STATUS_CANCELLED, FILE_DEVICE_NETWORK)
