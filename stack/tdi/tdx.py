"""tdx.sys: the TDI provider over tcpip, as on Vista and later.

    load_tdx(kernel)      # IoLoadDriver; creates \\Device\\Tcp, \\Device\\Tcp6, \\Device\\Udp, \\Device\\Udp6

What goes in: IRP_MJ_CREATE with an extended attribute (TdiTransportAddress opens a
transport address object, TdiConnectionContext a connection endpoint, none a control
channel), IRP_MJ_INTERNAL_DEVICE_CONTROL IRPs built with TdiBuild* (the minor function
says which request), IRP_MJ_CLEANUP / IRP_MJ_CLOSE.  What comes out: each IRP completed
with TDI's status, and calls into the client's event handlers (TDI_EVENT_CONNECT,
TDI_EVENT_RECEIVE, TDI_EVENT_CHAINED_RECEIVE, TDI_EVENT_DISCONNECT, TDI_EVENT_ERROR, and on UDP
address objects TDI_EVENT_RECEIVE_DATAGRAM and TDI_EVENT_CHAINED_RECEIVE_DATAGRAM) from the
transport's receive path at DISPATCH_LEVEL.  Underneath, tdx is a client of the same
transport interface WSK uses (stack.tcpip.transport): an address object with a connect
handler or a posted TDI_LISTEN becomes a transport listener; a connection endpoint
becomes a transport connection at connect or accept time.

Two things a reader must know.  TDI_LISTEN with TDI_QUERY_ACCEPT completes when the SYN
arrives, before anything answers it: tcpip holds the SYN (stack/tcpip/syn_hold.py) until the
client's TDI_ACCEPT (the SYN-ACK goes out; the TDI_ACCEPT completes once the handshake is done)
or TDI_DISCONNECT (a RST answers the SYN).  And a receive handler that hands back a TDI_RECEIVE IRP
(STATUS_MORE_PROCESSING_REQUIRED) has that IRP posted by a DPC right after the upcall, with
indications held until it completes, so the bytes keep their order; a graceful disconnect that
arrives meanwhile is indicated once that IRP has completed with the bytes before the FIN.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from stack.kernel import (DISPATCH_LEVEL, IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE,
                          IRP_MJ_INTERNAL_DEVICE_CONTROL, KDPC, NT_SUCCESS, STATUS_ADDRESS_ALREADY_ASSOCIATED,
                          STATUS_ADDRESS_ALREADY_EXISTS, STATUS_ADDRESS_NOT_ASSOCIATED, STATUS_BUFFER_OVERFLOW,
                          STATUS_CANCELLED, STATUS_CONNECTION_ACTIVE,
                          STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_ADDRESS, STATUS_INVALID_ADDRESS_COMPONENT,
                          STATUS_INVALID_CONNECTION, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_EA_NAME,
                          STATUS_INVALID_HANDLE, STATUS_INVALID_PARAMETER, STATUS_MORE_PROCESSING_REQUIRED,
                          STATUS_PENDING, STATUS_SUCCESS, ExAllocatePoolWithTag, ExFreePoolWithTag,
                          IoCompleteRequest, IoCreateDevice, IoGetCurrentIrpStackLocation,
                          IoLoadDriver, IoMarkIrpPending, KeInitializeDpc,
                          NonPagedPoolNx, current_kernel, kroutine)
from stack.kernel.io import FILE_DEVICE_TRANSPORT, DeviceObject, DriverImage, DriverObject
from stack.kernel.kernel import Kernel
from stack.kernel.mdl import copy_to_mdl, mdl_chain_length
from stack.tcpip.addr import SockAddr
from stack.tcpip.transport import ConnectionEndpoint, ListenEndpoint, get_transport

from .constants import (TDI_ACCEPT, TDI_ASSOCIATE_ADDRESS, TDI_CONNECT, TDI_CONNECTION_FILE,
                        TDI_CONTROL_CHANNEL_FILE, TDI_DISASSOCIATE_ADDRESS, TDI_DISCONNECT, TDI_DISCONNECT_ABORT,
                        TDI_EVENT_CHAINED_RECEIVE, TDI_EVENT_CONNECT, TDI_EVENT_DISCONNECT, TDI_EVENT_ERROR,
                        TDI_EVENT_RECEIVE, TDI_LISTEN, TDI_QUERY_ACCEPT, TDI_QUERY_ADDRESS_INFO,
                        TDI_QUERY_CONNECTION_INFO, TDI_QUERY_INFORMATION, TDI_QUERY_PROVIDER_INFO, TDI_RECEIVE,
                        TDI_RECEIVE_DATAGRAM,
                        TDI_SEND, TDI_SEND_AND_DISCONNECT, TDI_SEND_DATAGRAM,
                        TDI_SERVICE_CONNECTION_MODE, TDI_SERVICE_CONNECTIONLESS_MODE, TDI_SERVICE_DELAYED_ACCEPTANCE,
                        TDI_SERVICE_ERROR_FREE_DELIVERY, TDI_SERVICE_ORDERLY_RELEASE, TDI_SET_EVENT_HANDLER,
                        TDI_EVENT_CHAINED_RECEIVE_DATAGRAM, TDI_EVENT_RECEIVE_DATAGRAM, TDI_TRANSPORT_ADDRESS_FILE,
                        TDX_DATAGRAM_EVENTS, TDX_SUPPORTED_EVENTS, TdiConnectionContext, TdiTransportAddress)
from .structs import TRANSPORT_ADDRESS, TdiAddressError, parse_transport_address
from .zw import lookup_handle

MODULE = "tdx"
ADDRESS_TAG = "TdxA"  # transport address objects
CONNECTION_TAG = "TdxC"  # connection endpoints
TDX_DEVICES = {  # device name -> (protocol, IP version)
    "\\Device\\Tcp": ("TCP", 4), "\\Device\\Tcp6": ("TCP", 6),
    "\\Device\\Udp": ("UDP", 4), "\\Device\\Udp6": ("UDP", 6),
}
LISTEN_BACKLOG = 16  # the transport's SYN/accept backlog behind a TDI address object


@dataclass(eq=False)
class TdxAddressObject:
    """FsContext of a transport address file object."""

    address: int
    device: DeviceObject
    protocol: str
    local: SockAddr
    file_object: Any = None
    handlers: dict[int, tuple[Callable[..., int], Any]] = field(default_factory=dict)
    connections: list["TdxConnection"] = field(default_factory=list)
    listen_irps: deque = field(default_factory=deque)  # TDI_LISTEN IRPs waiting for a peer
    query_accepts: dict = field(default_factory=dict)  # str(remote) -> endpoint whose TDI_ACCEPT awaits the handshake
    listener: ListenEndpoint | None = None
    datagram: Any = None  # the transport DatagramEndpoint (UDP)
    closed: bool = False

    def handler(self, event: int) -> tuple[Callable[..., int], Any] | None:
        return self.handlers.get(event)


@dataclass(eq=False)
class TdxConnection:
    """FsContext of a connection endpoint file object."""

    address: int
    device: DeviceObject
    context: Any  # the client's CONNECTION_CONTEXT
    file_object: Any = None
    ao: TdxAddressObject | None = None
    endpoint: ConnectionEndpoint | None = None
    state: str = "Idle"  # Associated, Listening, AcceptPending, Connecting, Connected, Disconnected
    remote: SockAddr | None = None
    receive_held: bool = False  # a client refused or asked for an IRP: wait for a TDI_RECEIVE
    held_syn: int = 0  # TDI_QUERY_ACCEPT: the token of the SYN tcpip holds for our TDI_ACCEPT / TDI_DISCONNECT
    accept_irp: Any = None  # ... and the TDI_ACCEPT waiting for the handshake it started
    post_irp: Any = None  # a TDI_RECEIVE IRP a receive handler returned, posted by post_dpc
    post_dpc: KDPC = field(default_factory=KDPC)
    posting: bool = False  # inside _post_receive: a receive the transport completes at once is not completed yet
    deferred_release: int | None = None  # a graceful disconnect's status, held until the receive IRP before it completes
    bytes_sent: int = 0
    bytes_received: int = 0
    closed: bool = False


@dataclass(eq=False)
class TdxGlobals:
    driver: DriverObject
    devices: dict[str, DeviceObject] = field(default_factory=dict)
    address_objects: list[TdxAddressObject] = field(default_factory=list)
    connections: list[TdxConnection] = field(default_factory=list)
    indications: int = 0  # event handler calls, for the debugger
    tsdus: dict = field(default_factory=dict)  # chained receives clients kept (STATUS_PENDING), by descriptor
    bad_tsdu_returns: int = 0  # TdiReturnChainedReceives of something that was not a kept TSDU
    datagrams_refused: int = 0  # datagrams a receive-datagram handler did not take (dropped, as UDP does)


def tdx_globals(kernel: Kernel) -> TdxGlobals | None:
    drv = kernel.drivers.get("tdx")
    return drv.extension.get("tdx") if drv is not None else None


def _globals() -> TdxGlobals:
    return current_kernel().drivers["tdx"].extension["tdx"]


def _complete(irp: Any, status: int, information: Any = 0) -> int:
    irp.IoStatus.Status = status
    irp.IoStatus.Information = information
    IoCompleteRequest(irp)
    return status


class _Pending:
    """Completes one IRP exactly once whether the transport finished before or after returning."""

    __slots__ = ("irp", "returned", "early")

    def __init__(self, irp: Any) -> None:
        self.irp = irp
        self.returned = False
        self.early: tuple[int, Any] | None = None

    def done(self, status: int, information: Any = 0) -> None:
        if not self.returned:
            self.early = (status, information)
            return
        _complete(self.irp, status, information)

    def started(self, result: int) -> int:
        self.returned = True
        if self.early is not None:
            return _complete(self.irp, *self.early)
        if result == STATUS_PENDING:
            IoMarkIrpPending(self.irp)
            return STATUS_PENDING
        return _complete(self.irp, result, 0)


# ==================================================================================================
# DriverEntry, create, cleanup, close
# ==================================================================================================

@kroutine(MODULE)
def TdxDriverEntry(DriverObject: DriverObject, RegistryPath: str) -> int:
    g = TdxGlobals(DriverObject)
    DriverObject.extension["tdx"] = g
    DriverObject.MajorFunction[IRP_MJ_CREATE] = TdxDispatchCreate
    DriverObject.MajorFunction[IRP_MJ_CLEANUP] = TdxDispatchCleanup
    DriverObject.MajorFunction[IRP_MJ_CLOSE] = TdxDispatchClose
    DriverObject.MajorFunction[IRP_MJ_INTERNAL_DEVICE_CONTROL] = TdxDispatchInternalDeviceControl
    for name, kind in TDX_DEVICES.items():
        status, device = IoCreateDevice(DriverObject, 0, name, FILE_DEVICE_TRANSPORT)
        if device is None:
            return status
        device.extension = kind
        device.flags &= ~0x80
        device.stack_size = 1
        g.devices[name] = device
    return STATUS_SUCCESS


def _ea(irp: Any) -> Any:
    params = IoGetCurrentIrpStackLocation(irp).parameters
    return getattr(params, "EaBuffer", None)


@kroutine(MODULE)
def TdxDispatchCreate(DeviceObject: DeviceObject, Irp: Any) -> int:
    """IRP_MJ_CREATE: an address object, a connection endpoint, or the control channel."""
    irpsp = IoGetCurrentIrpStackLocation(Irp)
    file_object = irpsp.file_object
    ea = _ea(Irp)
    if ea is None:
        file_object.FsContext, file_object.FsContext2 = None, TDI_CONTROL_CHANNEL_FILE
        return _complete(Irp, STATUS_SUCCESS)
    name = getattr(ea, "EaName", None)
    if name == TdiTransportAddress:
        return _complete(Irp, TdxCreateAddress(DeviceObject, file_object, ea.EaValue))
    if name == TdiConnectionContext:
        return _complete(Irp, TdxCreateConnection(DeviceObject, file_object, ea.EaValue))
    return _complete(Irp, STATUS_INVALID_EA_NAME)


@kroutine(MODULE)
def TdxCreateAddress(DeviceObject: DeviceObject, FileObject: Any, TransportAddress: Any) -> int:
    protocol, version = DeviceObject.extension
    try:
        local = parse_transport_address(TransportAddress)
    except (TdiAddressError, TypeError, ValueError):
        return STATUS_INVALID_ADDRESS_COMPONENT
    if local.ip.version != version:
        return STATUS_INVALID_ADDRESS_COMPONENT
    g = _globals()
    if local.port and any(ao.protocol == protocol and ao.local.port == local.port and ao.local.ip == local.ip
                          and not ao.closed for ao in g.address_objects):
        return STATUS_ADDRESS_ALREADY_EXISTS
    address = ExAllocatePoolWithTag(NonPagedPoolNx, 0x180, ADDRESS_TAG)
    if not address:
        return STATUS_INSUFFICIENT_RESOURCES
    ao = TdxAddressObject(address, DeviceObject, protocol, local, FileObject)
    if protocol == "UDP":
        status, ao.datagram = get_transport(current_kernel()).udp_open(local, v6only=True)
        if ao.datagram is None:
            ExFreePoolWithTag(address, ADDRESS_TAG)
            return status
        ao.local = ao.datagram.local
        ao.datagram.context = ao
    current_kernel().register_object(ao)
    g.address_objects.append(ao)
    FileObject.FsContext, FileObject.FsContext2 = ao, TDI_TRANSPORT_ADDRESS_FILE
    return STATUS_SUCCESS


@kroutine(MODULE)
def TdxCreateConnection(DeviceObject: DeviceObject, FileObject: Any, ConnectionContext: Any) -> int:
    if DeviceObject.extension[0] != "TCP":
        return STATUS_INVALID_DEVICE_REQUEST  # connection endpoints exist only on \Device\Tcp(6)
    address = ExAllocatePoolWithTag(NonPagedPoolNx, 0x200, CONNECTION_TAG)
    if not address:
        return STATUS_INSUFFICIENT_RESOURCES
    co = TdxConnection(address, DeviceObject, ConnectionContext, FileObject)
    KeInitializeDpc(co.post_dpc, TdxPostReceiveDpc, co)
    current_kernel().register_object(co)
    _globals().connections.append(co)
    FileObject.FsContext, FileObject.FsContext2 = co, TDI_CONNECTION_FILE
    return STATUS_SUCCESS


@kroutine(MODULE)
def TdxDispatchCleanup(DeviceObject: DeviceObject, Irp: Any) -> int:
    """The last handle is closed: stop listening, abort connections, cancel what is queued."""
    file_object = IoGetCurrentIrpStackLocation(Irp).file_object
    context = file_object.FsContext
    if isinstance(context, TdxAddressObject):
        _cleanup_address(context)
    elif isinstance(context, TdxConnection):
        _cleanup_connection(context)
    return _complete(Irp, STATUS_SUCCESS)


def _cleanup_address(ao: TdxAddressObject) -> None:
    ao.closed = True
    ao.handlers.clear()
    for co in list(ao.connections):
        _disassociate(co)
    while ao.listen_irps:
        _complete(ao.listen_irps.popleft(), STATUS_CANCELLED)
    for co in list(ao.query_accepts.values()):
        _finish_query_accept(co, STATUS_CANCELLED)
    if ao.listener is not None:
        ao.listener.context = None
        ao.listener.close()
        ao.listener = None
    if ao.datagram is not None:
        ao.datagram.close()
        ao.datagram = None


def _cleanup_connection(co: TdxConnection) -> None:
    co.closed = True
    _refuse_held_syn(co)
    if co.endpoint is not None:
        endpoint, co.endpoint = co.endpoint, None
        endpoint.context = None
        endpoint.close()  # never disconnected: aborted; closing gracefully: finishes on its own
    if co.ao is not None:
        _disassociate(co)
    co.state = "Idle"


def _disassociate(co: TdxConnection) -> None:
    ao = co.ao
    if ao is None:
        return
    for irp in list(ao.listen_irps):
        if IoGetCurrentIrpStackLocation(irp).file_object is co.file_object:
            ao.listen_irps.remove(irp)
            _complete(irp, STATUS_CANCELLED)
    if co in ao.connections:
        ao.connections.remove(co)
    co.ao = None
    if co.state in ("Associated", "Listening"):
        co.state = "Idle"


@kroutine(MODULE)
def TdxDispatchClose(DeviceObject: DeviceObject, Irp: Any) -> int:
    file_object = IoGetCurrentIrpStackLocation(Irp).file_object
    context = file_object.FsContext
    k = current_kernel()
    g = _globals()
    if isinstance(context, TdxAddressObject):
        if context in g.address_objects:
            g.address_objects.remove(context)
        k.unregister_object(context)
        ExFreePoolWithTag(context.address, ADDRESS_TAG)
    elif isinstance(context, TdxConnection):
        if context in g.connections:
            g.connections.remove(context)
        k.unregister_object(context)
        ExFreePoolWithTag(context.address, CONNECTION_TAG)
    file_object.FsContext = None
    return _complete(Irp, STATUS_SUCCESS)


# ==================================================================================================
# IRP_MJ_INTERNAL_DEVICE_CONTROL: one routine per TDI request
# ==================================================================================================

@kroutine(MODULE)
def TdxDispatchInternalDeviceControl(DeviceObject: DeviceObject, Irp: Any) -> int:
    irpsp = IoGetCurrentIrpStackLocation(Irp)
    entry = TDX_REQUESTS.get(irpsp.minor)
    if entry is None:
        return _complete(Irp, STATUS_INVALID_DEVICE_REQUEST)
    kind, routine = entry
    context = getattr(irpsp.file_object, "FsContext", None)
    if kind is TdxConnection and not isinstance(context, TdxConnection):
        return _complete(Irp, STATUS_INVALID_CONNECTION)
    if kind is TdxAddressObject and not isinstance(context, TdxAddressObject):
        return _complete(Irp, STATUS_INVALID_ADDRESS)
    if kind is None and context is None and irpsp.minor != TDI_QUERY_INFORMATION:
        return _complete(Irp, STATUS_INVALID_DEVICE_REQUEST)
    return routine(context, Irp, irpsp)


@kroutine(MODULE)
def TdxAssociateAddress(co: TdxConnection, Irp: Any, irpsp: Any) -> int:
    if co.ao is not None:
        return _complete(Irp, STATUS_ADDRESS_ALREADY_ASSOCIATED)
    params = irpsp.parameters
    file_object = lookup_handle(getattr(params, "AddressHandle", 0))
    if file_object is None:
        return _complete(Irp, STATUS_INVALID_HANDLE)
    ao = file_object.FsContext
    if not isinstance(ao, TdxAddressObject) or ao.closed:
        return _complete(Irp, STATUS_INVALID_ADDRESS)
    if ao.protocol != "TCP" or ao.device is not co.device:
        return _complete(Irp, STATUS_INVALID_ADDRESS)
    params.AddressObject = file_object
    co.ao = ao
    ao.connections.append(co)
    co.state = "Associated"
    return _complete(Irp, STATUS_SUCCESS)


@kroutine(MODULE)
def TdxDisassociateAddress(co: TdxConnection, Irp: Any, irpsp: Any) -> int:
    if co.ao is None:
        return _complete(Irp, STATUS_ADDRESS_NOT_ASSOCIATED)
    if co.state in ("Connecting", "Connected", "AcceptPending"):
        return _complete(Irp, STATUS_CONNECTION_ACTIVE)
    _disassociate(co)
    return _complete(Irp, STATUS_SUCCESS)


def _ensure_listening(ao: TdxAddressObject) -> int:
    if ao.listener is not None:
        return STATUS_SUCCESS
    transport = get_transport(current_kernel())
    status, listener = transport.tcp_listen(ao.local, accept=TdxTcpAcceptIndication, backlog=LISTEN_BACKLOG,
                                            v6only=True)
    if listener is None:
        return status
    listener.context = ao
    ao.listener = listener
    return STATUS_SUCCESS


@kroutine(MODULE)
def TdxListen(co: TdxConnection, Irp: Any, irpsp: Any) -> int:
    """Queue the IRP on the address object; the next peer that connects completes it."""
    if co.ao is None:
        return _complete(Irp, STATUS_ADDRESS_NOT_ASSOCIATED)
    if co.state != "Associated":
        return _complete(Irp, STATUS_INVALID_CONNECTION)
    status = _ensure_listening(co.ao)
    if not NT_SUCCESS(status):
        return _complete(Irp, status)
    if irpsp.parameters.RequestFlags & TDI_QUERY_ACCEPT and co.ao.listener.syn_hold is None:
        # From now on tcpip asks tdx about each SYN before answering it (TdxTcpInspectIndication).
        co.ao.listener.set_inspect(TdxTcpInspectIndication, TdxTcpInspectAbort)
    co.state = "Listening"
    co.ao.listen_irps.append(Irp)
    IoMarkIrpPending(Irp)
    return STATUS_PENDING


@kroutine(MODULE)
def TdxAccept(co: TdxConnection, Irp: Any, irpsp: Any) -> int:
    """After TDI_LISTEN with TDI_QUERY_ACCEPT: the client takes the offered connection.  tcpip sends
    the SYN-ACK now; the IRP completes once the handshake is done (TdxTcpAcceptIndication)."""
    if co.state == "AcceptPending" and co.held_syn and co.ao is not None and co.ao.listener is not None \
            and co.accept_irp is None:
        token, co.held_syn = co.held_syn, 0
        co.accept_irp = Irp
        co.ao.query_accepts[str(co.remote)] = co
        IoMarkIrpPending(Irp)
        if co.ao.listener.inspect_complete(token, True) != STATUS_SUCCESS:
            _finish_query_accept(co, STATUS_INVALID_CONNECTION)
        return STATUS_PENDING
    if co.state != "AcceptPending" or co.endpoint is None:
        return _complete(Irp, STATUS_INVALID_CONNECTION)
    _fill_return_info(irpsp.parameters, co.remote)
    _connected(co)
    return _complete(Irp, STATUS_SUCCESS)


@kroutine(MODULE)
def TdxConnect(co: TdxConnection, Irp: Any, irpsp: Any) -> int:
    if co.ao is None:
        return _complete(Irp, STATUS_ADDRESS_NOT_ASSOCIATED)
    if co.state != "Associated":
        return _complete(Irp, STATUS_INVALID_CONNECTION)
    params = irpsp.parameters
    try:
        remote = params.RequestConnectionInformation.remote()
    except (AttributeError, TdiAddressError, ValueError):
        return _complete(Irp, STATUS_INVALID_ADDRESS_COMPONENT)
    if remote.ip.version != co.ao.local.ip.version:
        return _complete(Irp, STATUS_INVALID_ADDRESS_COMPONENT)
    status, endpoint = get_transport(current_kernel()).tcp_socket(co.ao.local, remote.family)
    if endpoint is None:
        return _complete(Irp, status)
    endpoint.context = co
    co.endpoint = endpoint
    co.state = "Connecting"
    pending = _Pending(Irp)

    def connected(ep: ConnectionEndpoint, result: int) -> None:
        if result == STATUS_SUCCESS and not co.closed:
            co.remote = ep.remote
            _fill_return_info(params, ep.remote)
            _connected(co)
        elif not co.closed:
            co.endpoint = None
            co.state = "Associated"
            ep.context = None
            ep.close()
        pending.done(result)

    return pending.started(endpoint.connect(remote, connected))


@kroutine(MODULE)
def TdxDisconnect(co: TdxConnection, Irp: Any, irpsp: Any) -> int:
    """Release (FIN after the queued sends; completes once the FIN is acknowledged) or abort (RST now)."""
    endpoint = co.endpoint
    if co.held_syn:  # TDI_QUERY_ACCEPT declined: a RST answers the held SYN
        _refuse_held_syn(co)
        co.state = "Associated"
        return _complete(Irp, STATUS_SUCCESS)
    if endpoint is None or co.state not in ("Connected", "AcceptPending", "Disconnected"):
        return _complete(Irp, STATUS_INVALID_CONNECTION)
    flags = irpsp.parameters.RequestFlags
    if flags & TDI_DISCONNECT_ABORT or co.state == "AcceptPending":
        co.state = "Disconnected"
        return _complete(Irp, endpoint.disconnect(True, None))
    pending = _Pending(Irp)
    return pending.started(endpoint.disconnect(False, lambda status: pending.done(status)))


@kroutine(MODULE)
def TdxSend(co: TdxConnection, Irp: Any, irpsp: Any) -> int:
    """Zero copy: the transport keeps the IRP's MDL pages until the peer acknowledges them."""
    endpoint = co.endpoint
    if endpoint is None or co.state not in ("Connected", "Disconnected"):
        return _complete(Irp, STATUS_INVALID_CONNECTION)
    params = irpsp.parameters
    length = params.SendLength
    if length and (Irp.mdl_address is None or mdl_chain_length(Irp.mdl_address) < length):
        return _complete(Irp, STATUS_INVALID_PARAMETER)
    pending = _Pending(Irp)

    def sent(status: int, nbytes: int) -> None:
        co.bytes_sent += nbytes
        pending.done(status, nbytes)

    if params.SendFlags & TDI_SEND_AND_DISCONNECT and length:
        # One request for the last data and the FIN: the FIN rides on the last data segment.
        result = endpoint.send(Irp.mdl_address, 0, length, sent, disconnect=lambda status: None)
    else:
        result = endpoint.send(Irp.mdl_address, 0, length, sent) if length else STATUS_SUCCESS
    return pending.started(result)


@kroutine(MODULE)
def TdxReceive(co: TdxConnection, Irp: Any, irpsp: Any) -> int:
    endpoint = co.endpoint
    if endpoint is None or co.state not in ("Connected", "Disconnected"):
        return _complete(Irp, STATUS_INVALID_CONNECTION)
    return _post_receive(co, Irp, irpsp.parameters.ReceiveLength)


def _post_receive(co: TdxConnection, irp: Any, length: int) -> int:
    if irp.mdl_address is None or length <= 0 or mdl_chain_length(irp.mdl_address) < length:
        return _complete(irp, STATUS_INVALID_PARAMETER)
    pending = _Pending(irp)

    def received(status: int, nbytes: int) -> None:
        co.bytes_received += nbytes
        if co.receive_held and co.post_irp is None:
            co.receive_held = False  # the client read with an IRP: indicate again
            _update_handlers(co)
        pending.done(status, nbytes)
        if pending.returned:
            indicate_deferred_release(co)

    co.receive_held = True
    _update_handlers(co)
    co.posting = True
    try:
        result = pending.started(co.endpoint.receive(irp.mdl_address, 0, length, received))
    finally:
        co.posting = False
    if result != STATUS_PENDING:  # completed here: a FIN that came behind its bytes is indicated now
        indicate_deferred_release(co)
    return result


def indicate_deferred_release(co: TdxConnection) -> None:
    """The receive IRP ahead of a graceful disconnect has completed: indicate the disconnect."""
    if co.deferred_release is not None:
        status, co.deferred_release = co.deferred_release, None
        TdxIndicateDisconnect(co, False, status)


@kroutine(MODULE)
def TdxSendDatagram(ao: TdxAddressObject, Irp: Any, irpsp: Any) -> int:
    if ao.datagram is None:
        return _complete(Irp, STATUS_INVALID_ADDRESS)
    params = irpsp.parameters
    try:
        remote = params.SendDatagramInformation.remote()
    except (AttributeError, TdiAddressError, ValueError):
        return _complete(Irp, STATUS_INVALID_ADDRESS_COMPONENT)
    pending = _Pending(Irp)
    result = ao.datagram.send_to(remote, Irp.mdl_address, 0, params.SendLength,
                                 lambda status, nbytes: pending.done(status, nbytes))
    return pending.started(result)


@kroutine(MODULE)
def TdxReceiveDatagram(ao: TdxAddressObject, Irp: Any, irpsp: Any) -> int:
    if ao.datagram is None:
        return _complete(Irp, STATUS_INVALID_ADDRESS)
    params = irpsp.parameters
    if Irp.mdl_address is None or params.ReceiveLength <= 0:
        return _complete(Irp, STATUS_INVALID_PARAMETER)
    pending = _Pending(Irp)

    def received(status: int, nbytes: int, remote: SockAddr | None) -> None:
        if remote is not None:
            _fill_return_info(params, remote, "ReturnDatagramInformation")
        pending.done(status, nbytes)

    return pending.started(ao.datagram.receive_from(Irp.mdl_address, 0, params.ReceiveLength, received))


@kroutine(MODULE)
def TdxSetEventHandler(ao: TdxAddressObject, Irp: Any, irpsp: Any) -> int:
    params = irpsp.parameters
    event = params.EventType
    if event not in TDX_SUPPORTED_EVENTS:
        return _complete(Irp, STATUS_INVALID_PARAMETER)
    if (ao.protocol == "UDP") != (event in TDX_DATAGRAM_EVENTS) and event != TDI_EVENT_ERROR:
        return _complete(Irp, STATUS_INVALID_PARAMETER)  # datagram events on \Device\Udp(6), the rest on Tcp
    if params.EventHandler is None:
        ao.handlers.pop(event, None)
    else:
        ao.handlers[event] = (params.EventHandler, params.EventContext)
    if ao.datagram is not None:  # indicate datagrams while a datagram handler is set (posted receives first)
        wants = TDI_EVENT_RECEIVE_DATAGRAM in ao.handlers or TDI_EVENT_CHAINED_RECEIVE_DATAGRAM in ao.handlers
        ao.datagram.receive_handler = TdxReceiveDatagramIndication if wants else None
    if event == TDI_EVENT_CONNECT and params.EventHandler is not None:
        status = _ensure_listening(ao)
        if not NT_SUCCESS(status):
            ao.handlers.pop(event, None)
            return _complete(Irp, status)
    if event in (TDI_EVENT_RECEIVE, TDI_EVENT_CHAINED_RECEIVE, TDI_EVENT_DISCONNECT):
        for co in ao.connections:
            _update_handlers(co)
    return _complete(Irp, STATUS_SUCCESS)


@kroutine(MODULE)
def TdxQueryInformation(context: Any, Irp: Any, irpsp: Any) -> int:
    """TDI_QUERY_PROVIDER_INFO, TDI_QUERY_ADDRESS_INFO, TDI_QUERY_CONNECTION_INFO into the IRP's MDL."""
    query = irpsp.parameters.QueryType
    device = irpsp.device_object
    if query == TDI_QUERY_PROVIDER_INFO:
        tcp = device.extension[0] == "TCP"
        flags = (TDI_SERVICE_CONNECTION_MODE | TDI_SERVICE_ORDERLY_RELEASE | TDI_SERVICE_ERROR_FREE_DELIVERY
                 | TDI_SERVICE_DELAYED_ACCEPTANCE) if tcp else TDI_SERVICE_CONNECTIONLESS_MODE
        # TDI_PROVIDER_INFO: Version, MaxSendSize, MaxConnectionUserData, MaxDatagramSize, ServiceFlags,
        # MinimumLookaheadData, MaximumLookaheadData, NumberOfResources, StartTime
        data = (0x0200).to_bytes(4, "little") + (0).to_bytes(4, "little") * 2 + \
            (0 if tcp else 0xFFFF - 28).to_bytes(4, "little") + flags.to_bytes(4, "little") + \
            (1).to_bytes(4, "little") + (0xFFFF).to_bytes(4, "little") + (0).to_bytes(4, "little") + bytes(8)
    elif query == TDI_QUERY_ADDRESS_INFO:
        if isinstance(context, TdxAddressObject):
            local = context.listener.local if context.listener is not None else context.local
        elif isinstance(context, TdxConnection) and context.endpoint is not None:
            local = context.endpoint.local
        else:
            return _complete(Irp, STATUS_INVALID_CONNECTION)
        data = (1).to_bytes(4, "little") + TRANSPORT_ADDRESS(local)  # ActivityCount, Address
    elif query == TDI_QUERY_CONNECTION_INFO:
        if not isinstance(context, TdxConnection) or context.endpoint is None:
            return _complete(Irp, STATUS_INVALID_CONNECTION)
        data = b"".join(v.to_bytes(4, "little") for v in (1, 0, 0, 0, 0, 0)) + bytes(24)
    else:
        return _complete(Irp, STATUS_INVALID_PARAMETER)
    mdl = Irp.mdl_address
    if mdl is None:
        return _complete(Irp, STATUS_BUFFER_OVERFLOW)
    room = mdl_chain_length(mdl)
    copy_to_mdl(mdl, 0, data[:room], "TDI_QUERY_INFORMATION")
    return _complete(Irp, STATUS_BUFFER_OVERFLOW if room < len(data) else STATUS_SUCCESS, min(room, len(data)))


# minor -> (the FsContext kind the request needs (None: any), routine)
TDX_REQUESTS: dict[int, tuple[type | None, Callable[..., int]]] = {
    TDI_ASSOCIATE_ADDRESS: (TdxConnection, TdxAssociateAddress),
    TDI_DISASSOCIATE_ADDRESS: (TdxConnection, TdxDisassociateAddress),
    TDI_LISTEN: (TdxConnection, TdxListen),
    TDI_ACCEPT: (TdxConnection, TdxAccept),
    TDI_CONNECT: (TdxConnection, TdxConnect),
    TDI_DISCONNECT: (TdxConnection, TdxDisconnect),
    TDI_SEND: (TdxConnection, TdxSend),
    TDI_RECEIVE: (TdxConnection, TdxReceive),
    TDI_SEND_DATAGRAM: (TdxAddressObject, TdxSendDatagram),
    TDI_RECEIVE_DATAGRAM: (TdxAddressObject, TdxReceiveDatagram),
    TDI_SET_EVENT_HANDLER: (TdxAddressObject, TdxSetEventHandler),
    TDI_QUERY_INFORMATION: (None, TdxQueryInformation),
}


def _fill_return_info(params: Any, remote: SockAddr | None, name: str = "ReturnConnectionInformation") -> None:
    info = getattr(params, name, None)
    if info is not None and remote is not None:
        info.RemoteAddress = TRANSPORT_ADDRESS(remote)
        info.RemoteAddressLength = len(info.RemoteAddress)


@kroutine(MODULE)
def TdxLabReleaseConnection(FileObject: Any) -> Any:
    """INVENTED FOR THE LAB (khttpd's accept hand-over over TDI; no such request in TDI): give up a
    connected endpoint's transport connection, with the bytes the client left unread, to a caller
    that hands it to someone else (afd's AfdLabOfferConnection).  The endpoint keeps no connection
    (state Disconnected): closing it sends nothing.  None when it is not a connected endpoint with
    nothing outstanding."""
    co = getattr(FileObject, "FsContext", None)
    if not isinstance(co, TdxConnection) or co.closed or co.state != "Connected" or co.endpoint is None \
            or co.post_irp is not None:
        return None
    conn, co.endpoint = co.endpoint, None
    conn.set_handlers()
    conn.context = None
    co.state = "Disconnected"
    co.receive_held = False
    return conn


def _refuse_held_syn(co: TdxConnection) -> None:
    token, co.held_syn = co.held_syn, 0
    if token and co.ao is not None and co.ao.listener is not None:
        co.ao.listener.inspect_complete(token, False)


def _finish_query_accept(co: TdxConnection, status: int) -> None:
    """The TDI_ACCEPT of a TDI_QUERY_ACCEPT listen completes (handshake done, or it never will)."""
    irp, co.accept_irp = co.accept_irp, None
    if co.ao is not None:
        co.ao.query_accepts.pop(str(co.remote), None)
    if irp is not None:
        _complete(irp, status)


def _connected(co: TdxConnection) -> None:
    co.state = "Connected"
    _update_handlers(co)


def _update_handlers(co: TdxConnection) -> None:
    """Indicate data only while the address object has a receive handler and no IRP is owed."""
    endpoint = co.endpoint
    if endpoint is None or endpoint.closed:
        return
    ao = co.ao
    wants = (ao is not None and co.state in ("Connected", "Disconnected") and not co.receive_held
             and co.post_irp is None
             and (TDI_EVENT_RECEIVE in ao.handlers or TDI_EVENT_CHAINED_RECEIVE in ao.handlers))
    endpoint.set_handlers(receive=TdxReceiveIndication if wants else None, disconnect=TdxDisconnectIndication)


# The transport's upcalls live in tdx_upcalls.py (imported last: they use the helpers above).
from .tdx_upcalls import (TdxDisconnectIndication, TdxIndicateDisconnect, TdxPostReceiveDpc,  # noqa: E402
                          TdxReceiveDatagramIndication, TdxReceiveIndication, TdxTcpAcceptIndication, TdxTcpInspectAbort, TdxTcpInspectIndication)

# --- loading --------------------------------------------------------------------------------------

TDX_IMAGE = DriverImage("tdx", "tdx", TdxDriverEntry, image="tdx.sys", size=0x30000,
                        pool_tags=(ADDRESS_TAG, CONNECTION_TAG), description="TDI Translation Driver")


def load_tdx(kernel: Kernel, on_done: Callable[[int], None] | None = None) -> DriverObject:
    """Start loading tdx.sys (it runs when the scheduler runs); tcpip must be loaded first."""
    return IoLoadDriver(kernel, TDX_IMAGE, on_done)
