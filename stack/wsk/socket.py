"""WSK socket objects and the socket dispatch routines (listen, connection, stream, datagram).

Each socket is a `WskSocketObject` (a WSK_SOCKET: `Dispatch` first) in nonpaged pool with
tag 'WskS' and the `_WSK_SOCKET_CONTEXT` layout, so `dt` and `db` work on its address.
Routines are `wskprov!WskSend`, `wskprov!WskReceive` ...; transport upcalls land in
`wskprov!Wskp...` routines that call the client's event callbacks.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from stack.kernel import (DISPATCH_LEVEL, KDPC, NT_SUCCESS, STATUS_BUFFER_OVERFLOW, STATUS_BUFFER_TOO_SMALL,
                          STATUS_CANCELLED,
                          STATUS_DATA_NOT_ACCEPTED, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_DEVICE_STATE,
                          STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED, STATUS_PENDING, STATUS_SUCCESS,
                          ExAllocatePoolWithTag, ExFreePoolWithTag, KeInitializeDpc, KeInsertQueueDpc, kroutine,
                          current_kernel)
from stack.kernel.layouts import Field as F, StructLayout, register_layout, LAYOUTS
from stack.kernel.mdl import copy_to_mdl, mdl_chain_length
from stack.kernel.pool import NonPagedPoolNx
from stack.kernel.symbols import symbol_of
from stack.tcpip.addr import SockAddr, any_address

from .constants import (AF_INET, AF_INET6, CATEGORY_NAMES, CONNECTION_EVENTS, DATAGRAM_EVENTS, IPPROTO_IPV6,
                        IPPROTO_TCP, IPV6_V6ONLY, LISTEN_EVENTS, SO_KEEPALIVE, SO_RCVBUF, SO_REUSEADDR, SO_SNDBUF,
                        SO_EXCLUSIVEADDRUSE, SO_WSK_EVENT_CALLBACK, SOL_SOCKET, TCP_NODELAY, WSK_EVENT_ACCEPT,
                        WSK_EVENT_DISABLE, WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE, WSK_EVENT_RECEIVE_FROM,
                        WSK_EVENT_SEND_BACKLOG, WSK_FLAG_ABORTIVE, WSK_FLAG_AT_DISPATCH_LEVEL,
                        WSK_FLAG_CONNECTION_SOCKET, WSK_FLAG_DATAGRAM_SOCKET, WSK_FLAG_ENTIRE_MESSAGE,
                        WSK_FLAG_LISTEN_SOCKET, WSK_FLAG_NODELAY, WSK_FLAG_STREAM_SOCKET, WSK_FLAG_WAITALL,
                        WskGetOption, WskInspectAccept, WskInspectPend, WskInspectReject, WskIoctl, WskSetOption,
                        SO_CONDITIONAL_ACCEPT)
from .events import WskCall, WskEvent, WskSocketState
from .indication import IndicationPiece, build_pieces, free_pieces, retain_pieces
from .irpops import IrpCompletion, call_wskprov, complete_irp
from .state import WskClient, WskProvider, WskSocketInfo, get_provider
from .structs import (WSK_BUF, WSK_CLIENT_CONNECTION_DISPATCH, WSK_DATA_INDICATION, WSK_DATAGRAM_INDICATION,
                      WSK_EVENT_CALLBACK_CONTROL, WSK_SOCKET, NPI_WSK_INTERFACE_ID, Ref, WskAddressError,
                      fill_sockaddr, from_sockaddr, to_sockaddr)


@dataclass(slots=True, frozen=True)
class WSK_INSPECT_ID:
    """Names one connection a WskInspectEvent was asked about."""

    Key: int
    SerialNumber: int

SOCKET_TAG = "WskS"
SOCKET_STATES = ("Open", "Bound", "Listening", "Connecting", "Connected", "Disconnecting", "PeerDisconnected",
                 "Disconnected", "Aborted", "Closing", "Closed")
IDEAL_SEND_BACKLOG = 0x10000  # what WskSendBacklogEvent reports (no SIO_IDEAL_SEND_BACKLOG tuning yet)
LISTEN_BACKLOG = 200  # WSK has no backlog parameter: the system's SOMAXCONN-sized queue

# flag bits of _WSK_SOCKET_CONTEXT.Flags
SKF_V6ONLY = 0x1
SKF_NODELAY = 0x2
SKF_RECEIVE_PAUSED = 0x4
SKF_CLOSING = 0x8
SKF_STATIC_EVENTS = 0x10

register_layout(StructLayout("_WSK_SOCKET_CONTEXT", 0xB0, [
    F("Dispatch", 0x00, "ptr", "Void"),
    F("Category", 0x08, "u32"),
    F("State", 0x0C, "u32"),
    F("AddressFamily", 0x10, "u16"),
    F("SocketType", 0x12, "u16"),
    F("Protocol", 0x14, "u32"),
    F("OwnerDriver", 0x18, "ptr", "_DRIVER_OBJECT"),
    F("ClientContext", 0x20, "ptr", "Void"),
    F("ClientDispatch", 0x28, "ptr", "Void"),
    F("EventMask", 0x30, "u32"),
    F("Flags", 0x34, "u32"),
    F("Endpoint", 0x38, "ptr", "Void"),
    F("LocalAddress", 0x40, "bytes", size=0x1C),
    F("RemoteAddress", 0x60, "bytes", size=0x1C),
    F("BytesSent", 0x80, "u64"),
    F("BytesReceived", 0x88, "u64"),
    F("SendsPending", 0x90, "u32"),
    F("ReceivesPending", 0x94, "u32"),
    F("IndicationsHeld", 0x98, "u32"),
    F("AcceptBacklog", 0x9C, "u32"),
    F("ListenSocket", 0xA0, "ptr", "_WSK_SOCKET_CONTEXT"),
    F("Sequence", 0xA8, "u32"),
]))


def pack_sockaddr(sa: SockAddr | None) -> bytes:
    """SOCKADDR_IN / SOCKADDR_IN6 bytes as Windows stores them (port in network order)."""
    if sa is None:
        return b""
    if sa.ip.version == 4:
        return struct.pack("<H", AF_INET) + struct.pack(">H", sa.port) + sa.ip.packed + bytes(8)
    return struct.pack("<H", AF_INET6) + struct.pack(">H", sa.port) + bytes(4) + sa.ip.packed + bytes(4)


class WskSocketObject(WSK_SOCKET):
    """One WSK socket: the WSK_SOCKET the client sees plus the provider's state."""

    struct_size = 0xB0

    def __init__(self, provider: WskProvider, client: WskClient, category: int, family: int, socket_type: int,
                 protocol: int, context: Any, client_dispatch: Any) -> None:
        k = provider.kernel
        self.kernel = k
        self.provider = provider
        self.client = client
        self.category = category
        self.family = family
        self.socket_type = socket_type
        self.protocol = protocol
        self.ClientContext = context
        self.ClientDispatch = client_dispatch
        self.event_mask = 0
        self.state = "Open"
        self.v6only = family == AF_INET6  # the Windows default for AF_INET6 sockets
        self.nodelay = False
        self.receive_paused = False
        self.closing = False
        self.endpoint: Any = None
        self.local: SockAddr | None = None
        self.remote: SockAddr | None = None
        self.listen_socket: WskSocketObject | None = None
        self.bytes_sent = 0
        self.bytes_received = 0
        self.sends_pending = 0
        self.receives_pending = 0
        self.held: dict[int, list[IndicationPiece]] = {}  # id(first node) -> pieces kept by the client
        self.accept_backlog: deque[WskSocketObject] = deque()  # accepted, not yet claimed by WskAccept
        self.accept_irps: deque[tuple[Any, Any, Any, Any, Any, IrpCompletion]] = deque()
        self.datagram_queue: deque[tuple[SockAddr, bytes]] = deque()  # datagrams nobody took yet (copies)
        self.receive_from_irps: deque[tuple[Any, Any, IrpCompletion]] = deque()
        self.conditional_accept = False  # SO_CONDITIONAL_ACCEPT: WskInspectEvent decides each connection
        self.inspect_pending: dict[tuple[int, int], WskSocketObject] = {}  # pended by WskInspectPend
        self.resume_dpc = KDPC()
        KeInitializeDpc(self.resume_dpc, WskpResumeIndications, self)
        provider.sockets_created += 1
        self.sequence = provider.sockets_created
        self.Dispatch = provider.socket_dispatch[category]
        self.address = ExAllocatePoolWithTag(NonPagedPoolNx, self.struct_size, SOCKET_TAG)
        self.resume_dpc.address = 0
        k.register_object(self)
        provider.sockets[self.address] = self
        client.sockets.add(self.address)
        client.sockets_ever += 1
        self._publish_state()

    # -- inspection ------------------------------------------------------------------------
    @property
    def category_name(self) -> str:
        return CATEGORY_NAMES.get(self.category, str(self.category))

    @property
    def flags(self) -> int:
        return ((SKF_V6ONLY if self.v6only else 0) | (SKF_NODELAY if self.nodelay else 0)
                | (SKF_RECEIVE_PAUSED if self.receive_paused else 0) | (SKF_CLOSING if self.closing else 0)
                | (SKF_STATIC_EVENTS if self.client.static_event_mask else 0))

    @property
    def effective_event_mask(self) -> int:
        return self.event_mask | self._static_mask()

    def _static_mask(self) -> int:
        mask = self.client.static_event_mask
        if self.category == WSK_FLAG_LISTEN_SOCKET:
            return mask & (LISTEN_EVENTS | CONNECTION_EVENTS)
        if self.category == WSK_FLAG_CONNECTION_SOCKET:
            return mask & CONNECTION_EVENTS
        if self.category == WSK_FLAG_DATAGRAM_SOCKET:
            return mask & DATAGRAM_EVENTS
        if self.category == WSK_FLAG_STREAM_SOCKET:
            return mask & (LISTEN_EVENTS | CONNECTION_EVENTS)
        return 0

    def flush(self) -> None:
        k = self.kernel
        drv = k.drivers.get(self.client.owner.lower())
        values = {
            "Dispatch": self.Dispatch.address, "Category": self.category,
            "State": SOCKET_STATES.index(self.state), "AddressFamily": self.family,
            "SocketType": self.socket_type, "Protocol": self.protocol,
            "OwnerDriver": drv.address if drv is not None else 0, "ClientContext": self.ClientContext,
            "ClientDispatch": getattr(self.ClientDispatch, "address", 0) if self.ClientDispatch else 0,
            "EventMask": self.effective_event_mask, "Flags": self.flags,
            "Endpoint": getattr(self.endpoint, "address", 0) if self.endpoint is not None else 0,
            "LocalAddress": pack_sockaddr(self.local), "RemoteAddress": pack_sockaddr(self.remote),
            "BytesSent": self.bytes_sent, "BytesReceived": self.bytes_received,
            "SendsPending": self.sends_pending, "ReceivesPending": self.receives_pending,
            "IndicationsHeld": len(self.held), "AcceptBacklog": len(self.accept_backlog),
            "ListenSocket": self.listen_socket.address if self.listen_socket else 0, "Sequence": self.sequence,
        }
        k.mem.write(self.address, LAYOUTS["_WSK_SOCKET_CONTEXT"].pack(values))

    def info(self) -> WskSocketInfo:
        return WskSocketInfo(self.address, self.category_name, self.state, self.family,
                             str(self.local) if self.local else "", str(self.remote) if self.remote else "",
                             self.client.owner, _address_of(self.ClientContext), self.effective_event_mask,
                             self.bytes_sent, self.bytes_received)

    def set_state(self, state: str) -> None:
        if self.state != state:
            self.state = state
            self._publish_state()

    def _publish_state(self) -> None:
        k = self.kernel
        if k.bus.subscribers:
            k.publish(WskSocketState, socket=self.address, category=self.category_name, state=self.state)

    def __repr__(self) -> str:
        return f"<WskSocket {self.address:x} {self.category_name} {self.state} {self.local} -> {self.remote}>"


def _address_of(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    return getattr(value, "address", 0) or 0


# --- helpers ---------------------------------------------------------------------------------

def _publish_call(sock: WskSocketObject, call: str, irp: Any, length: int = 0) -> None:
    k = sock.kernel
    if k.bus.subscribers:
        k.publish(WskCall, call=call, socket=sock.address, irp=_address_of(irp), length=length)


def _publish_event(sock: WskSocketObject, event: str, callback: Any, status: int, nbytes: int = 0) -> None:
    k = sock.kernel
    if k.bus.subscribers:
        k.publish(WskEvent, callback=symbol_of(callback), event=event, socket=sock.address, status=status,
                  nbytes=nbytes)


def _event_flags() -> int:
    return WSK_FLAG_AT_DISPATCH_LEVEL if current_kernel().irql == DISPATCH_LEVEL else 0


def _validate_buf(buf: WSK_BUF | None, allow_empty: bool) -> int | None:
    """STATUS_INVALID_PARAMETER for a WSK_BUF outside its MDL chain; None when fine."""
    if buf is None:
        return None if allow_empty else STATUS_INVALID_PARAMETER
    if buf.Length < 0 or buf.Offset < 0:
        return STATUS_INVALID_PARAMETER
    if buf.Length == 0:
        return None if allow_empty or buf.Mdl is not None else STATUS_INVALID_PARAMETER
    if buf.Mdl is None or buf.Offset >= buf.Mdl.byte_count:
        return STATUS_INVALID_PARAMETER  # Offset must fall inside the first MDL
    if buf.Offset + buf.Length > mdl_chain_length(buf.Mdl):
        return STATUS_INVALID_PARAMETER
    return None


def _int_option(value: Any) -> int | None:
    if isinstance(value, Ref):
        value = value.value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value) in (1, 2, 4, 8):
        return int.from_bytes(bytes(value), "little")
    return None


def _store_output(out: Any, value: Any) -> None:
    if isinstance(out, Ref):
        out.value = value


def _complete_now(sock: WskSocketObject, irp: Any, call: str, status: int, information: Any = 0,
                  length: int = 0, flags: int = 0) -> int:
    """An operation that finishes inside the call: complete the IRP (if any) through wskprov."""
    if irp is None:
        return status

    def start(Irp: Any) -> int:
        complete_irp(Irp, status, information)
        return status

    return call_wskprov(sock.provider.device, irp, call, sock.address, length, flags, start)


# --- destruction -----------------------------------------------------------------------------

def destroy_socket(sock: WskSocketObject) -> None:
    """Free the socket object (after its endpoint is closed) and tell a deregistering client."""
    k = sock.kernel
    for pieces in sock.held.values():
        free_pieces(pieces)
    sock.held.clear()
    sock.set_state("Closed")
    sock.provider.sockets.pop(sock.address, None)
    k.unregister_object(sock)
    ExFreePoolWithTag(sock.address, SOCKET_TAG)
    sock.client.sockets.discard(sock.address)
    sock.client.maybe_finish_deregistration()


def _close_endpoint(sock: WskSocketObject) -> None:
    ep = sock.endpoint
    if sock.category in (WSK_FLAG_LISTEN_SOCKET, WSK_FLAG_STREAM_SOCKET):
        while sock.accept_irps:
            *_, completion = sock.accept_irps.popleft()
            completion.done(STATUS_CANCELLED, 0)
        while sock.accept_backlog:
            child = sock.accept_backlog.popleft()
            if child.endpoint is not None:
                child.endpoint.close()
            destroy_socket(child)
    if sock.category == WSK_FLAG_DATAGRAM_SOCKET:
        while sock.receive_from_irps:
            *_, completion = sock.receive_from_irps.popleft()
            completion.done(STATUS_CANCELLED, 0)
        sock.datagram_queue.clear()
    if ep is not None:
        ep.context = None
        ep.close()


# ==================================================================================================
# basic dispatch
# ==================================================================================================

@kroutine("wskprov")
def WskCloseSocket(Socket: WskSocketObject, Irp: Any) -> int:
    _publish_call(Socket, "WskCloseSocket", Irp)
    if Socket.closing:
        return _complete_now(Socket, Irp, "WskCloseSocket", STATUS_INVALID_DEVICE_STATE)
    Socket.closing = True
    Socket.set_state("Closing")

    def start(irp: Any) -> int:
        _close_endpoint(Socket)  # outstanding requests complete with STATUS_CANCELLED first
        destroy_socket(Socket)
        complete_irp(irp, STATUS_SUCCESS, 0)
        return STATUS_SUCCESS

    if Irp is None:
        return STATUS_INVALID_PARAMETER
    return call_wskprov(Socket.provider.device, Irp, "WskCloseSocket", Socket.address, 0, 0, start)


@kroutine("wskprov")
def WskControlSocket(Socket: WskSocketObject, RequestType: int, ControlCode: int, Level: int, InputSize: int,
                     InputBuffer: Any, OutputSize: int, OutputBuffer: Any, OutputSizeReturned: Any,
                     Irp: Any) -> int:
    _publish_call(Socket, "WskControlSocket", Irp)
    if RequestType == WskSetOption and Level == SOL_SOCKET and ControlCode == SO_WSK_EVENT_CALLBACK:
        return _event_callback_option(Socket, InputBuffer, Irp)
    status, value = _socket_option(Socket, RequestType, ControlCode, Level, InputBuffer)
    if RequestType == WskGetOption and status == STATUS_SUCCESS:
        _store_output(OutputBuffer, value)
        _store_output(OutputSizeReturned, 4)
    return _complete_now(Socket, Irp, "WskControlSocket", status, 4 if RequestType == WskGetOption else 0,
                         InputSize, ControlCode)


def _socket_option(sock: WskSocketObject, request: int, code: int, level: int, input_buffer: Any) -> tuple[int, Any]:
    if request == WskIoctl:
        return STATUS_NOT_SUPPORTED, None
    if request not in (WskSetOption, WskGetOption):
        return STATUS_INVALID_PARAMETER, None
    setting = request == WskSetOption
    value = _int_option(input_buffer) if setting else None
    if setting and value is None:
        return STATUS_INVALID_PARAMETER, None
    if level == IPPROTO_IPV6 and code == IPV6_V6ONLY:
        if sock.family != AF_INET6:
            return STATUS_INVALID_PARAMETER, None
        if not setting:
            return STATUS_SUCCESS, int(sock.v6only)
        if sock.endpoint is not None:
            return STATUS_INVALID_DEVICE_STATE, None  # only before the bind
        sock.v6only = bool(value)
        return STATUS_SUCCESS, None
    if level == IPPROTO_TCP and code == TCP_NODELAY:
        if not setting:
            return STATUS_SUCCESS, int(sock.nodelay)
        sock.nodelay = bool(value)
        if sock.endpoint is not None and hasattr(sock.endpoint, "nodelay"):
            sock.endpoint.nodelay = sock.nodelay
        return STATUS_SUCCESS, None
    if level == SOL_SOCKET and code == SO_CONDITIONAL_ACCEPT:
        if not setting:
            return STATUS_SUCCESS, int(sock.conditional_accept)
        if sock.category != WSK_FLAG_LISTEN_SOCKET or sock.endpoint is not None:
            return STATUS_INVALID_DEVICE_STATE, None  # listening sockets, before the bind
        sock.conditional_accept = bool(value)
        return STATUS_SUCCESS, None
    if level == SOL_SOCKET and code in (SO_REUSEADDR, SO_EXCLUSIVEADDRUSE, SO_KEEPALIVE, SO_RCVBUF, SO_SNDBUF):
        return STATUS_SUCCESS, 0  # accepted; the emulated transport has no such knobs yet
    return STATUS_NOT_SUPPORTED, None


def _event_callback_option(sock: WskSocketObject, control: Any, irp: Any) -> int:
    if not isinstance(control, WSK_EVENT_CALLBACK_CONTROL) or control.NpiId != NPI_WSK_INTERFACE_ID:
        return _complete_now(sock, irp, "WskControlSocket", STATUS_INVALID_PARAMETER)
    mask = control.EventMask
    if mask & WSK_EVENT_DISABLE:
        bits = mask & ~WSK_EVENT_DISABLE
        if bits & sock._static_mask():
            return _complete_now(sock, irp, "WskControlSocket", STATUS_INVALID_DEVICE_REQUEST)
        sock.event_mask &= ~bits
        _update_handlers(sock)
        return _complete_now(sock, irp, "WskControlSocket", STATUS_SUCCESS)
    if irp is not None:
        return _complete_now(sock, irp, "WskControlSocket", STATUS_INVALID_PARAMETER)  # enabling takes no IRP
    if sock.category == WSK_FLAG_LISTEN_SOCKET:
        allowed = LISTEN_EVENTS | CONNECTION_EVENTS  # connection events are inherited by accepted sockets
        ready = sock.endpoint is not None
    elif sock.category == WSK_FLAG_CONNECTION_SOCKET:
        allowed, ready = CONNECTION_EVENTS, sock.remote is not None
    elif sock.category == WSK_FLAG_DATAGRAM_SOCKET:
        allowed, ready = DATAGRAM_EVENTS, sock.endpoint is not None
    elif sock.category == WSK_FLAG_STREAM_SOCKET:
        allowed, ready = LISTEN_EVENTS | CONNECTION_EVENTS, True
    else:
        return STATUS_INVALID_DEVICE_REQUEST
    if mask & ~allowed or not mask:
        return STATUS_INVALID_PARAMETER
    if not ready:
        return STATUS_INVALID_DEVICE_STATE
    if not _dispatch_has(sock.ClientDispatch, mask & (LISTEN_EVENTS if sock.category == WSK_FLAG_LISTEN_SOCKET
                                                     else allowed)):
        return STATUS_INVALID_PARAMETER
    newly = mask & ~sock.event_mask
    sock.event_mask |= mask
    _update_handlers(sock)
    if newly & WSK_EVENT_SEND_BACKLOG and sock.category == WSK_FLAG_CONNECTION_SOCKET:
        _indicate_send_backlog(sock)
    return STATUS_SUCCESS


_EVENT_FIELDS = {WSK_EVENT_ACCEPT: "WskAcceptEvent", WSK_EVENT_RECEIVE: "WskReceiveEvent",
                 WSK_EVENT_DISCONNECT: "WskDisconnectEvent", WSK_EVENT_SEND_BACKLOG: "WskSendBacklogEvent",
                 WSK_EVENT_RECEIVE_FROM: "WskReceiveFromEvent"}


def _dispatch_has(dispatch: Any, mask: int) -> bool:
    """Every event being enabled must have a callback in the client's dispatch table."""
    for bit, name in _EVENT_FIELDS.items():
        if mask & bit and getattr(dispatch, name, None) is None:
            return False
    return True


def _callback(sock: WskSocketObject, bit: int) -> Callable[..., int] | None:
    if not sock.effective_event_mask & bit:
        return None
    return getattr(sock.ClientDispatch, _EVENT_FIELDS[bit], None)


def _update_handlers(sock: WskSocketObject) -> None:
    """Install the transport upcalls a connection socket needs right now."""
    if sock.category not in (WSK_FLAG_CONNECTION_SOCKET, WSK_FLAG_STREAM_SOCKET) or sock.remote is None:
        return
    conn = sock.endpoint
    if conn is None or sock.closing:
        return
    wants_receive = _callback(sock, WSK_EVENT_RECEIVE) is not None and not sock.receive_paused
    conn.set_handlers(receive=WskpReceiveIndication if wants_receive else None,
                      disconnect=WskpDisconnectIndication)


# ==================================================================================================
# bind / listen / accept
# ==================================================================================================

@kroutine("wskprov")
def WskBind(Socket: WskSocketObject, LocalAddress: Any, Flags: int, Irp: Any) -> int:
    _publish_call(Socket, "WskBind", Irp)
    try:
        local = to_sockaddr(LocalAddress)
    except WskAddressError:
        return _complete_now(Socket, Irp, "WskBind", STATUS_INVALID_PARAMETER)
    if Socket.endpoint is not None or Socket.local is not None or Socket.closing:
        return _complete_now(Socket, Irp, "WskBind", STATUS_INVALID_DEVICE_STATE)
    if local.family != Socket.family:
        return _complete_now(Socket, Irp, "WskBind", STATUS_INVALID_PARAMETER)
    transport = Socket.provider.transport
    if Socket.category == WSK_FLAG_LISTEN_SOCKET:
        status, ep = transport.tcp_listen(local, accept=WskpAcceptIndication, backlog=LISTEN_BACKLOG,
                                          v6only=Socket.v6only)
        if ep is not None:
            ep.context = Socket
            Socket.endpoint = ep
            Socket.local = ep.local
            Socket.set_state("Listening")  # a WSK listening socket listens once bound
    elif Socket.category == WSK_FLAG_CONNECTION_SOCKET:
        status, ep = transport.tcp_socket(local, Socket.family)
        if ep is not None:
            ep.context = Socket
            ep.nodelay = Socket.nodelay
            Socket.endpoint = ep
            Socket.local = ep.local
            Socket.set_state("Bound")
    elif Socket.category == WSK_FLAG_DATAGRAM_SOCKET:
        status, ep = transport.udp_open(local, receive=WskpReceiveFromIndication, v6only=Socket.v6only)
        if ep is not None:
            ep.context = Socket
            Socket.endpoint = ep
            Socket.local = ep.local
            Socket.set_state("Bound")
    elif Socket.category == WSK_FLAG_STREAM_SOCKET:
        Socket.local = local  # becomes a listener or a connection later
        status = STATUS_SUCCESS
        Socket.set_state("Bound")
    else:
        status = STATUS_INVALID_DEVICE_REQUEST
    return _complete_now(Socket, Irp, "WskBind", status)


@kroutine("wskprov")
def WskListen(Socket: WskSocketObject, Irp: Any) -> int:
    """Stream sockets only: become a listening socket on the bound address."""
    _publish_call(Socket, "WskListen", Irp)
    if Socket.category != WSK_FLAG_STREAM_SOCKET or Socket.local is None or Socket.endpoint is not None:
        return _complete_now(Socket, Irp, "WskListen", STATUS_INVALID_DEVICE_STATE)
    status, ep = Socket.provider.transport.tcp_listen(Socket.local, accept=WskpAcceptIndication,
                                                      backlog=LISTEN_BACKLOG, v6only=Socket.v6only)
    if ep is not None:
        ep.context = Socket
        Socket.endpoint = ep
        Socket.local = ep.local
        Socket.set_state("Listening")
    return _complete_now(Socket, Irp, "WskListen", status)


def _new_accepted_socket(listener: WskSocketObject, conn: Any) -> WskSocketObject:
    child = WskSocketObject(listener.provider, listener.client, WSK_FLAG_CONNECTION_SOCKET, listener.family,
                            listener.socket_type, listener.protocol, None, None)
    child.endpoint = conn
    child.local = conn.local
    child.remote = conn.remote
    child.listen_socket = listener
    child.nodelay = listener.nodelay
    conn.context = child
    if listener.nodelay:
        conn.nodelay = True
    child.set_state("Connected")
    return child


def _adopt(child: WskSocketObject, context: Any, dispatch: Any) -> None:
    """The client took the accepted socket: inherit the listener's connection events."""
    child.ClientContext = context
    child.ClientDispatch = dispatch
    listener = child.listen_socket
    if listener is not None and dispatch is not None:
        inherited = listener.event_mask & CONNECTION_EVENTS
        child.event_mask = inherited if _dispatch_has(dispatch, inherited) else 0
    _update_handlers(child)
    if _callback(child, WSK_EVENT_SEND_BACKLOG) is not None:
        _indicate_send_backlog(child)


@kroutine("wskprov")
def WskpAcceptIndication(listener_endpoint: Any, conn: Any) -> int:
    """Transport upcall: a handshake completed on a listening socket's port."""
    from stack.tcpip.transport import ACCEPT, REFUSE
    listener: WskSocketObject | None = listener_endpoint.context
    if listener is None or listener.closing:
        return REFUSE
    child = _new_accepted_socket(listener, conn)
    inspect = getattr(listener.ClientDispatch, "WskInspectEvent", None) if listener.conditional_accept else None
    if inspect is not None:
        # Conditional accept.  (This transport reports a connection once its handshake is done,
        # so the SYN-ACK has gone out; a rejected or aborted connection is then reset.)
        inspect_id = WSK_INSPECT_ID(child.address, child.sequence)
        local = from_sockaddr(conn.local, listener.family)
        remote = from_sockaddr(conn.remote, listener.family)
        action = inspect(listener.ClientContext, local, remote, inspect_id)
        _publish_event(listener, "WskInspectEvent", inspect, action)
        if action == WskInspectPend:
            listener.inspect_pending[(inspect_id.Key, inspect_id.SerialNumber)] = child
            conn.set_handlers(disconnect=WskpInspectAbortIndication)  # no data until decided
            return ACCEPT
        if action != WskInspectAccept:
            conn.context = None
            destroy_socket(child)
            return REFUSE
    return _offer_accepted(listener, child, conn)


def _offer_accepted(listener: WskSocketObject, child: WskSocketObject, conn: Any) -> int:
    """An established (and, under conditional accept, accepted) connection: accept event or WskAccept."""
    from stack.tcpip.transport import ACCEPT, REFUSE
    accept_event = _callback(listener, WSK_EVENT_ACCEPT)
    if accept_event is not None:
        context, dispatch = Ref(), Ref()
        local = from_sockaddr(conn.local, listener.family)
        remote = from_sockaddr(conn.remote, listener.family)
        status = accept_event(listener.ClientContext, _event_flags(), local, remote, child, context, dispatch)
        _publish_event(listener, "WskAcceptEvent", accept_event, status)
        if status != STATUS_SUCCESS:  # STATUS_REQUEST_NOT_ACCEPTED: the provider closes the socket
            conn.context = None
            destroy_socket(child)
            return REFUSE
        _adopt(child, context.value, dispatch.value)
        return ACCEPT
    if listener.accept_irps:
        _complete_accept(listener, child, *listener.accept_irps.popleft())
        return ACCEPT
    listener.accept_backlog.append(child)
    return ACCEPT


def _complete_accept(listener: WskSocketObject, child: WskSocketObject, context: Any, dispatch: Any,
                     local_out: Any, remote_out: Any, completion: IrpCompletion) -> None:
    _adopt(child, context, dispatch)
    if local_out is not None:
        fill_sockaddr(local_out, child.local, listener.family)
    if remote_out is not None:
        fill_sockaddr(remote_out, child.remote, listener.family)
    completion.done(STATUS_SUCCESS, child)


@kroutine("wskprov")
def WskAccept(ListenSocket: WskSocketObject, Flags: int, AcceptSocketContext: Any, AcceptSocketDispatch: Any,
              LocalAddress: Any, RemoteAddress: Any, Irp: Any) -> int:
    _publish_call(ListenSocket, "WskAccept", Irp)
    if ListenSocket.state != "Listening" or ListenSocket.closing:
        return _complete_now(ListenSocket, Irp, "WskAccept", STATUS_INVALID_DEVICE_STATE)

    def start(irp: Any) -> int:
        completion = IrpCompletion(irp)
        if ListenSocket.accept_backlog:
            child = ListenSocket.accept_backlog.popleft()
            _complete_accept(ListenSocket, child, AcceptSocketContext, AcceptSocketDispatch, LocalAddress,
                             RemoteAddress, completion)
        else:
            ListenSocket.accept_irps.append((AcceptSocketContext, AcceptSocketDispatch, LocalAddress,
                                             RemoteAddress, completion))
        return completion.started(STATUS_PENDING)

    return call_wskprov(ListenSocket.provider.device, Irp, "WskAccept", ListenSocket.address, 0, Flags, start)


@kroutine("wskprov")
def WskInspectComplete(ListenSocket: WskSocketObject, InspectId: Any, Action: int, Irp: Any) -> int:
    """The client's decision on a connection its WskInspectEvent pended (WskInspectAccept / Reject)."""
    _publish_call(ListenSocket, "WskInspectComplete", Irp)
    key = (getattr(InspectId, "Key", None), getattr(InspectId, "SerialNumber", None))
    child = ListenSocket.inspect_pending.pop(key, None)
    if child is None or Action not in (WskInspectAccept, WskInspectReject):
        return _complete_now(ListenSocket, Irp, "WskInspectComplete", STATUS_INVALID_PARAMETER)
    conn = child.endpoint
    conn.set_handlers()
    if Action == WskInspectAccept and not ListenSocket.closing:
        from stack.tcpip.transport import ACCEPT
        if _offer_accepted(ListenSocket, child, conn) == ACCEPT:
            return _complete_now(ListenSocket, Irp, "WskInspectComplete", STATUS_SUCCESS)
    conn.context = None
    conn.disconnect(True, None)  # rejected: reset
    destroy_socket(child)
    return _complete_now(ListenSocket, Irp, "WskInspectComplete", STATUS_SUCCESS)


@kroutine("wskprov")
def WskpInspectAbortIndication(conn: Any, abortive: bool, status: int) -> None:
    """The peer went away while its connection waited for WskInspectComplete: WskAbortEvent."""
    child: WskSocketObject | None = conn.context
    listener = child.listen_socket if child is not None else None
    if listener is None:
        return
    key = (child.address, child.sequence)
    if listener.inspect_pending.pop(key, None) is None:
        return
    abort_event = getattr(listener.ClientDispatch, "WskAbortEvent", None)
    if abort_event is not None:
        result = abort_event(listener.ClientContext, WSK_INSPECT_ID(*key))
        _publish_event(listener, "WskAbortEvent", abort_event, result)
    conn.context = None
    destroy_socket(child)


# ==================================================================================================
# connect / addresses
# ==================================================================================================

@kroutine("wskprov")
def WskConnect(Socket: WskSocketObject, RemoteAddress: Any, Flags: int, Irp: Any) -> int:
    _publish_call(Socket, "WskConnect", Irp)
    try:
        remote = to_sockaddr(RemoteAddress)
    except WskAddressError:
        return _complete_now(Socket, Irp, "WskConnect", STATUS_INVALID_PARAMETER)
    if Socket.category == WSK_FLAG_STREAM_SOCKET and Socket.endpoint is None and Socket.local is not None:
        status, ep = Socket.provider.transport.tcp_socket(Socket.local, Socket.family)
        if ep is None:
            return _complete_now(Socket, Irp, "WskConnect", status)
        ep.context = Socket
        Socket.endpoint = ep
    conn = Socket.endpoint
    if conn is None or Socket.remote is not None or Socket.state != "Bound":
        return _complete_now(Socket, Irp, "WskConnect", STATUS_INVALID_DEVICE_STATE)  # bind first
    return call_wskprov(Socket.provider.device, Irp, "WskConnect", Socket.address, 0, Flags,
                        lambda irp: _start_connect(Socket, conn, remote, irp))


def _start_connect(sock: WskSocketObject, conn: Any, remote: SockAddr, irp: Any) -> int:
    completion = IrpCompletion(irp)
    sock.set_state("Connecting")

    def connected(endpoint: Any, status: int) -> None:
        if status == STATUS_SUCCESS:
            sock.remote = endpoint.remote
            sock.local = endpoint.local
            sock.set_state("Connected")
            _update_handlers(sock)
        else:
            sock.set_state("Bound" if not sock.closing else sock.state)
        completion.done(status, 0)

    result = conn.connect(remote, connected)
    if result != STATUS_PENDING and completion.early is None:
        sock.set_state("Bound")
    return completion.started(result)


@kroutine("wskprov")
def WskGetLocalAddress(Socket: WskSocketObject, LocalAddress: Any, Irp: Any) -> int:
    _publish_call(Socket, "WskGetLocalAddress", Irp)
    if Socket.local is None:
        return _complete_now(Socket, Irp, "WskGetLocalAddress", STATUS_INVALID_DEVICE_STATE)
    try:
        fill_sockaddr(LocalAddress, Socket.local, Socket.family)
    except WskAddressError:
        return _complete_now(Socket, Irp, "WskGetLocalAddress", STATUS_BUFFER_TOO_SMALL)
    return _complete_now(Socket, Irp, "WskGetLocalAddress", STATUS_SUCCESS)


@kroutine("wskprov")
def WskGetRemoteAddress(Socket: WskSocketObject, RemoteAddress: Any, Irp: Any) -> int:
    _publish_call(Socket, "WskGetRemoteAddress", Irp)
    if Socket.remote is None:
        return _complete_now(Socket, Irp, "WskGetRemoteAddress", STATUS_INVALID_DEVICE_STATE)
    try:
        fill_sockaddr(RemoteAddress, Socket.remote, Socket.family)
    except WskAddressError:
        return _complete_now(Socket, Irp, "WskGetRemoteAddress", STATUS_BUFFER_TOO_SMALL)
    return _complete_now(Socket, Irp, "WskGetRemoteAddress", STATUS_SUCCESS)


# ==================================================================================================
# send / receive / disconnect / release
# ==================================================================================================

def _connected(sock: WskSocketObject) -> bool:
    return sock.remote is not None and sock.endpoint is not None and not sock.closing


@kroutine("wskprov")
def WskSend(Socket: WskSocketObject, Buffer: WSK_BUF, Flags: int, Irp: Any) -> int:
    length = Buffer.Length if Buffer is not None else 0
    _publish_call(Socket, "WskSend", Irp, length)
    bad = _validate_buf(Buffer, allow_empty=True)
    if bad is not None:
        return _complete_now(Socket, Irp, "WskSend", bad)
    if not _connected(Socket):
        return _complete_now(Socket, Irp, "WskSend", STATUS_INVALID_DEVICE_STATE)
    return call_wskprov(Socket.provider.device, Irp, "WskSend", Socket.address, length, Flags,
                        lambda irp: _start_send(Socket, Buffer, Flags, irp))


def _start_send(sock: WskSocketObject, buf: WSK_BUF, flags: int, irp: Any) -> int:
    if buf.Length == 0:
        complete_irp(irp, STATUS_SUCCESS, 0)
        return STATUS_SUCCESS
    conn = sock.endpoint
    sock.sends_pending += 1

    def sent(status: int, nbytes: int) -> None:
        sock.sends_pending -= 1
        sock.bytes_sent += nbytes
        completion.done(status, nbytes)

    completion = IrpCompletion(irp)
    push_now = bool(flags & WSK_FLAG_NODELAY) and not sock.nodelay
    if push_now:
        conn.nodelay = True  # this send goes out without waiting for Nagle
    result = conn.send(buf.Mdl, buf.Offset, buf.Length, sent)
    if push_now:
        conn.nodelay = False
    if result != STATUS_PENDING and completion.early is None:
        sock.sends_pending -= 1  # refused at once (no callback will come)
    return completion.started(result)


@kroutine("wskprov")
def WskReceive(Socket: WskSocketObject, Buffer: WSK_BUF, Flags: int, Irp: Any) -> int:
    length = Buffer.Length if Buffer is not None else 0
    _publish_call(Socket, "WskReceive", Irp, length)
    bad = _validate_buf(Buffer, allow_empty=True)
    if bad is not None:
        return _complete_now(Socket, Irp, "WskReceive", bad)
    if not _connected(Socket):
        return _complete_now(Socket, Irp, "WskReceive", STATUS_INVALID_DEVICE_STATE)
    return call_wskprov(Socket.provider.device, Irp, "WskReceive", Socket.address, length, Flags,
                        lambda irp: _start_receive(Socket, Buffer, Flags, irp))


def _start_receive(sock: WskSocketObject, buf: WSK_BUF | None, flags: int, irp: Any) -> int:
    from stack.tcpip.transport import RECEIVE_WAITALL
    if buf is None or buf.Length == 0:
        # A zero-length receive only re-arms indications paused by DATA_NOT_ACCEPTED.
        _schedule_resume(sock)
        complete_irp(irp, STATUS_SUCCESS, 0)
        return STATUS_SUCCESS
    sock.receives_pending += 1

    def received(status: int, nbytes: int) -> None:
        sock.receives_pending -= 1
        sock.bytes_received += nbytes
        completion.done(status, nbytes)
        _schedule_resume(sock)

    completion = IrpCompletion(irp)
    result = sock.endpoint.receive(buf.Mdl, buf.Offset, buf.Length, received,
                                   RECEIVE_WAITALL if flags & WSK_FLAG_WAITALL else 0)
    if result != STATUS_PENDING and completion.early is None:
        sock.receives_pending -= 1
    return completion.started(result)


def _schedule_resume(sock: WskSocketObject) -> None:
    """Indications paused by a partial/refused receive event resume once a WskReceive is done.

    Deferred to a DPC so the transport is not re-entered from inside its own delivery loop."""
    if sock.receive_paused and not sock.closing:
        KeInsertQueueDpc(sock.resume_dpc, None, None)


@kroutine("wskprov")
def WskpResumeIndications(Dpc: Any, DeferredContext: WskSocketObject, Arg1: Any, Arg2: Any) -> None:
    sock = DeferredContext
    if sock.closing or not sock.receive_paused:
        return
    sock.receive_paused = False
    _update_handlers(sock)  # re-enabling the upcall offers what the transport kept


@kroutine("wskprov")
def WskDisconnect(Socket: WskSocketObject, Buffer: WSK_BUF | None, Flags: int, Irp: Any) -> int:
    _publish_call(Socket, "WskDisconnect", Irp, Buffer.Length if Buffer is not None else 0)
    bad = _validate_buf(Buffer, allow_empty=True)
    if bad is not None:
        return _complete_now(Socket, Irp, "WskDisconnect", bad)
    if not _connected(Socket):
        return _complete_now(Socket, Irp, "WskDisconnect", STATUS_INVALID_DEVICE_STATE)
    return call_wskprov(Socket.provider.device, Irp, "WskDisconnect", Socket.address,
                        Buffer.Length if Buffer is not None else 0, Flags,
                        lambda irp: _start_disconnect(Socket, Buffer, Flags, irp))


def _start_disconnect(sock: WskSocketObject, buf: WSK_BUF | None, flags: int, irp: Any) -> int:
    conn = sock.endpoint
    completion = IrpCompletion(irp)
    if flags & WSK_FLAG_ABORTIVE:
        sock.set_state("Aborted")
        return completion.started(conn.disconnect(True, None))
    sock.set_state("Disconnecting")

    def finished(status: int) -> None:
        if not sock.closing:
            sock.set_state("Disconnected")
        completion.done(status, 0)

    if buf is not None and buf.Length:
        # Send and disconnect: the final data and the FIN in one transport request, so the
        # FIN rides on the last data segment.
        sock.sends_pending += 1

        def final_sent(status: int, nbytes: int) -> None:
            sock.sends_pending -= 1
            sock.bytes_sent += nbytes

        result = conn.send(buf.Mdl, buf.Offset, buf.Length, final_sent, disconnect=finished)
        if result != STATUS_PENDING:
            sock.sends_pending -= 1
            return completion.started(result)
        return completion.started(STATUS_PENDING)
    return completion.started(conn.disconnect(False, finished))


@kroutine("wskprov")
def WskRelease(Socket: WskSocketObject, DataIndication: Any) -> int:
    """Give back an indication chain the client kept by returning STATUS_PENDING."""
    _publish_call(Socket, "WskRelease", None)
    pieces = Socket.held.pop(id(DataIndication), None)
    if pieces is None:
        return STATUS_INVALID_PARAMETER
    free_pieces(pieces)
    return STATUS_SUCCESS


# ==================================================================================================
# connection upcalls from the transport
# ==================================================================================================

@kroutine("wskprov")
def WskpReceiveIndication(conn: Any, views: list[memoryview], nbytes: int, flags: int) -> int:
    """Transport upcall with received data: indicate it to the client's WskReceiveEvent."""
    from stack.tcpip.transport import RECEIVE_PUSH
    sock: WskSocketObject | None = conn.context
    if sock is None or sock.closing or sock.receive_paused:
        return 0
    callback = _callback(sock, WSK_EVENT_RECEIVE)
    if callback is None:
        return 0
    k = sock.kernel
    built, pieces = build_pieces(k, views)
    if not NT_SUCCESS(built):
        # No pool for a copy: leave the bytes with the transport until a WskReceive asks.
        _pause(sock)
        return 0
    provider = sock.provider
    provider.indications += 1
    provider.indication_bytes += nbytes
    provider.zero_copy_indications += all(p.pool_buffer == 0 for p in pieces)
    head = pieces[0].node if pieces else None
    accepted = Ref(nbytes)
    event_flags = _event_flags() | (WSK_FLAG_ENTIRE_MESSAGE if flags & RECEIVE_PUSH else 0)
    status = callback(sock.ClientContext, event_flags, head, nbytes, accepted)
    _publish_event(sock, "WskReceiveEvent", callback, status, nbytes)
    if status == STATUS_PENDING:
        if NT_SUCCESS(retain_pieces(k, pieces)):
            sock.held[id(head)] = pieces
            sock.bytes_received += nbytes
            return nbytes
        # The bytes could not be kept past the upcall: the transport keeps them instead
        # (WskRelease of this chain then fails with STATUS_INVALID_PARAMETER).
        free_pieces(pieces)
        _pause(sock)
        return 0
    free_pieces(pieces)
    if status == STATUS_SUCCESS:
        taken = accepted.value if isinstance(accepted.value, int) else nbytes
        taken = max(0, min(taken, nbytes))
        sock.bytes_received += taken
        if taken < nbytes:
            _pause(sock)
        return taken
    if status == STATUS_DATA_NOT_ACCEPTED:
        _pause(sock)
        return 0
    _pause(sock)  # any other status: treat as not accepted
    return 0


def _pause(sock: WskSocketObject) -> None:
    sock.receive_paused = True
    _update_handlers(sock)


@kroutine("wskprov")
def WskpDisconnectIndication(conn: Any, abortive: bool, status: int) -> None:
    """Transport upcall: the peer closed (FIN) or the connection was reset/aborted."""
    sock: WskSocketObject | None = conn.context
    if sock is None or sock.closing:
        return
    sock.set_state("Aborted" if abortive else "PeerDisconnected")
    callback = _callback(sock, WSK_EVENT_DISCONNECT)
    if callback is not None:
        result = callback(sock.ClientContext, WSK_FLAG_ABORTIVE if abortive else 0)
        _publish_event(sock, "WskDisconnectEvent", callback, result)


def _indicate_send_backlog(sock: WskSocketObject) -> None:
    callback = _callback(sock, WSK_EVENT_SEND_BACKLOG)
    if callback is not None:
        result = callback(sock.ClientContext, IDEAL_SEND_BACKLOG)
        _publish_event(sock, "WskSendBacklogEvent", callback, result, IDEAL_SEND_BACKLOG)


# ==================================================================================================
# datagram sockets
# ==================================================================================================

@kroutine("wskprov")
def WskSendTo(Socket: WskSocketObject, Buffer: WSK_BUF, Flags: int, RemoteAddress: Any, ControlInfoLength: int,
              ControlInfo: Any, Irp: Any) -> int:
    length = Buffer.Length if Buffer is not None else 0
    _publish_call(Socket, "WskSendTo", Irp, length)
    bad = _validate_buf(Buffer, allow_empty=False)
    try:
        remote = to_sockaddr(RemoteAddress)
    except WskAddressError:
        bad = STATUS_INVALID_PARAMETER
    if bad is not None:
        return _complete_now(Socket, Irp, "WskSendTo", bad)
    if Socket.endpoint is None or Socket.closing:
        return _complete_now(Socket, Irp, "WskSendTo", STATUS_INVALID_DEVICE_STATE)

    def start(irp: Any) -> int:
        completion = IrpCompletion(irp)

        def sent(status: int, nbytes: int) -> None:
            Socket.bytes_sent += nbytes
            completion.done(status, nbytes)

        return completion.started(Socket.endpoint.send_to(remote, Buffer.Mdl, Buffer.Offset, Buffer.Length, sent))

    return call_wskprov(Socket.provider.device, Irp, "WskSendTo", Socket.address, length, Flags, start)


@kroutine("wskprov")
def WskReceiveFrom(Socket: WskSocketObject, Buffer: WSK_BUF, Flags: int, RemoteAddress: Any, ControlLength: Any,
                   ControlInfo: Any, ControlFlags: Any, Irp: Any) -> int:
    length = Buffer.Length if Buffer is not None else 0
    _publish_call(Socket, "WskReceiveFrom", Irp, length)
    bad = _validate_buf(Buffer, allow_empty=False)
    if bad is not None:
        return _complete_now(Socket, Irp, "WskReceiveFrom", bad)
    if Socket.endpoint is None or Socket.closing:
        return _complete_now(Socket, Irp, "WskReceiveFrom", STATUS_INVALID_DEVICE_STATE)
    _store_output(ControlLength, 0)
    _store_output(ControlFlags, 0)

    def start(irp: Any) -> int:
        completion = IrpCompletion(irp)
        if Socket.datagram_queue:
            remote, data = Socket.datagram_queue.popleft()
            _fill_receive_from(Socket, Buffer, RemoteAddress, completion, remote, [memoryview(data)], len(data))
            if not Socket.datagram_queue:
                Socket.receive_paused = False  # the event may be indicated again
        else:
            Socket.receive_from_irps.append((Buffer, RemoteAddress, completion))
        return completion.started(STATUS_PENDING)

    return call_wskprov(Socket.provider.device, Irp, "WskReceiveFrom", Socket.address, length, Flags, start)


def _fill_receive_from(sock: WskSocketObject, buf: WSK_BUF, remote_out: Any, completion: IrpCompletion,
                       remote: SockAddr, views: list[memoryview], nbytes: int) -> None:
    take = min(nbytes, buf.Length)
    if take:
        chunks: list[memoryview] = []
        left = take
        for v in views:
            if left <= 0:
                break
            chunks.append(v[:left])
            left -= len(chunks[-1])
        copy_to_mdl(buf.Mdl, buf.Offset, chunks, "wsk receive-from into client MDL")
    if remote_out is not None:
        fill_sockaddr(remote_out, remote, sock.family)
    sock.bytes_received += take
    completion.done(STATUS_SUCCESS if take == nbytes else STATUS_BUFFER_OVERFLOW, take)


@kroutine("wskprov")
def WskpReceiveFromIndication(endpoint: Any, remote: SockAddr, views: list[memoryview], nbytes: int) -> None:
    """Transport upcall with one datagram: a posted WskReceiveFrom first, then the event."""
    sock: WskSocketObject | None = endpoint.context
    if sock is None or sock.closing:
        return
    if sock.receive_from_irps:
        buf, remote_out, completion = sock.receive_from_irps.popleft()
        _fill_receive_from(sock, buf, remote_out, completion, remote, views, nbytes)
        return
    callback = _callback(sock, WSK_EVENT_RECEIVE_FROM)
    if callback is None or sock.receive_paused:
        _queue_datagram(sock, remote, views, nbytes)
        return
    k = sock.kernel
    built, pieces = build_pieces(k, views, datagram=True)
    if not NT_SUCCESS(built):
        _queue_datagram(sock, remote, views, nbytes)  # no pool for an indication: keep it for WskReceiveFrom
        return
    if not pieces:
        return
    for piece in pieces:
        piece.node.RemoteAddress = from_sockaddr(remote, sock.family)  # type: ignore[union-attr]
    head = pieces[0].node
    status = callback(sock.ClientContext, _event_flags(), head)
    _publish_event(sock, "WskReceiveFromEvent", callback, status, nbytes)
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
    _queue_datagram(sock, remote, views, nbytes)


def _queue_datagram(sock: WskSocketObject, remote: SockAddr, views: list[memoryview], nbytes: int) -> None:
    data = b"".join(views)
    sock.kernel.copies.count(nbytes, "wsk datagram queued")
    sock.datagram_queue.append((remote, data))
    if len(sock.datagram_queue) > 64:  # a bounded queue, like a socket receive buffer
        sock.datagram_queue.popleft()


_ = (WSK_DATA_INDICATION, WSK_DATAGRAM_INDICATION, WSK_CLIENT_CONNECTION_DISPATCH, any_address)
