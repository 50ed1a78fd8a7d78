"""The protocol edge of NDIS: registration, binding, send, return and OID requests.

A protocol (tcpip, or a test protocol) registers its characteristics; NDIS
binds it to each Running adapter as a separate scheduler event by calling
its BindAdapterHandlerEx, which opens the adapter with NdisOpenAdapterEx.
NDIS calls a miniport only through the handlers it registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from stack.kernel.pool import NonPagedPoolNx
from stack.kernel.symbols import current_kernel, kroutine

from .constants import (MINIPORT_STATE_RUNNING, NDIS_RETURN_FLAGS_DISPATCH_LEVEL, NDIS_SEND_FLAGS_DISPATCH_LEVEL,
                        NDIS_STATUS_ADAPTER_NOT_FOUND, NDIS_STATUS_FAILURE, NDIS_STATUS_PAUSED,
                        NDIS_STATUS_PENDING, NDIS_STATUS_SUCCESS, NdisMedium802_3)
from .events import NblReturned, NblSendCompleted, NblSent, OidRequested
from .ownership import NBL_PROTOCOL_RETURNED, NBL_PROTOCOL_SENT, NBL_RETURNED_TO_MINIPORT, NBL_SEND_COMPLETED
from .state import NdisState, ndis_state

if TYPE_CHECKING:
    from .miniport import Adapter
    from .nbl import NetBufferList
    from .oid import NDIS_OFFLOAD, NDIS_OID_REQUEST

BUGCODE_NDIS_DRIVER = 0x7C


@dataclass(slots=True)
class NDIS_PROTOCOL_DRIVER_CHARACTERISTICS:
    Name: str = "PROTOCOL"
    MajorNdisVersion: int = 6
    MinorNdisVersion: int = 30
    MajorDriverVersion: int = 1
    MinorDriverVersion: int = 0
    Flags: int = 0
    SetOptionsHandler: Callable[..., int] | None = None
    BindAdapterHandlerEx: Callable[..., int] | None = None
    UnbindAdapterHandlerEx: Callable[..., int] | None = None
    OpenAdapterCompleteHandlerEx: Callable[..., None] | None = None
    CloseAdapterCompleteHandlerEx: Callable[..., None] | None = None
    NetPnPEventHandler: Callable[..., int] | None = None
    UninstallHandler: Callable[..., None] | None = None
    OidRequestCompleteHandler: Callable[..., None] | None = None
    StatusHandlerEx: Callable[..., None] | None = None
    ReceiveNetBufferListsHandler: Callable[..., None] | None = None
    SendNetBufferListsCompleteHandler: Callable[..., None] | None = None
    DirectOidRequestCompleteHandler: Callable[..., None] | None = None


@dataclass(slots=True)
class NDIS_BIND_PARAMETERS:
    """What BindAdapterHandlerEx learns about the adapter."""

    AdapterName: str
    AdapterDescription: str
    MediaType: int
    MtuSize: int
    MaxXmitLinkSpeed: int
    XmitLinkSpeed: int
    MaxRcvLinkSpeed: int
    RcvLinkSpeed: int
    MediaConnectState: int
    MacAddressLength: int
    CurrentMacAddress: bytes
    PermanentMacAddress: bytes
    IfIndex: int
    SupportedPacketFilters: int
    DefaultOffloadConfiguration: "NDIS_OFFLOAD | None" = None
    LookaheadSize: int = 0
    ProtocolSection: str = ""
    Adapter: Any = None  # the emulation's adapter object (NDIS keeps it behind BindContext)


@dataclass(slots=True)
class NDIS_OPEN_PARAMETERS:
    AdapterName: str = ""
    MediumArray: tuple[int, ...] = (NdisMedium802_3,)
    MediumIndex: int = 0
    FrameTypeArray: tuple[int, ...] = ()


@dataclass(slots=True)
class NET_PNP_EVENT_NOTIFICATION:
    NetEvent: int
    Buffer: Any = None
    BufferLength: int = 0
    PortNumber: int = 0


@dataclass(slots=True)
class NDIS_STATUS_INDICATION:
    SourceHandle: Any
    StatusCode: int
    StatusBuffer: Any = None
    PortNumber: int = 0


@dataclass(slots=True)
class BindContext:
    """NDIS's opaque BindContext: which adapter a bind is for."""

    adapter: Any
    protocol: "NdisProtocol"


class NdisProtocol:
    """NDIS_PROTOCOL_BLOCK: a registered protocol driver."""

    STRUCT_SIZE = 0x200

    def __init__(self, state: NdisState, context: Any, chars: NDIS_PROTOCOL_DRIVER_CHARACTERISTICS) -> None:
        k = state.kernel
        self.ndis_state = state
        self.kernel = k
        self.context = context
        self.characteristics = chars
        self.name = chars.Name
        self.owner_name = chars.Name
        self.address = k.pool.allocate(NonPagedPoolNx, self.STRUCT_SIZE, "NDpb", owner="ndis")
        self.opens: list[NdisOpen] = []
        self.registered = True
        k.register_object(self)

    def __repr__(self) -> str:
        return f"<NdisProtocol {self.name} {self.address:x}>"


class NdisOpen:
    """NDIS_OPEN_BLOCK: one binding of a protocol to an adapter (the NdisBindingHandle)."""

    STRUCT_SIZE = 0x300

    def __init__(self, protocol: NdisProtocol, adapter: "Adapter", binding_context: Any) -> None:
        state = protocol.ndis_state
        k = state.kernel
        self.ndis_state = state
        self.kernel = k
        self.protocol = protocol
        self.adapter = adapter
        self.ProtocolBindingContext = binding_context
        self.owner_name = protocol.name
        self.address = k.pool.allocate(NonPagedPoolNx, self.STRUCT_SIZE, "NDop", owner="ndis")
        self.open = True
        self.nbls_sent = 0
        self.nbls_received = 0
        self.oids = 0
        self.pending_oids: list[Any] = []
        k.register_object(self)

    def __repr__(self) -> str:
        return f"<NdisOpen {self.address:x} {self.protocol.name} -> {self.adapter.name}>"


# --- registration and binding ---------------------------------------------------------------

@kroutine("ndis")
def NdisRegisterProtocolDriver(ProtocolDriverContext: Any,
                               ProtocolCharacteristics: NDIS_PROTOCOL_DRIVER_CHARACTERISTICS) -> tuple[int, Any]:
    """Register a protocol; NDIS then binds it to each Running adapter (one event per bind)."""
    k = current_kernel()
    chars = ProtocolCharacteristics
    if chars.ReceiveNetBufferListsHandler is None or chars.SendNetBufferListsCompleteHandler is None:
        return NDIS_STATUS_FAILURE, None
    state = ndis_state(k)
    protocol = NdisProtocol(state, ProtocolDriverContext, chars)
    state.protocols.append(protocol)
    if chars.BindAdapterHandlerEx is not None:
        for adapter in state.adapters:
            if adapter.state_name == MINIPORT_STATE_RUNNING:
                k.scheduler.call_soon(k, ndisBindProtocolToAdapter, protocol, adapter, label="ndis bind")
    return NDIS_STATUS_SUCCESS, protocol


@kroutine("ndis")
def NdisDeregisterProtocolDriver(NdisProtocolHandle: NdisProtocol) -> None:
    protocol = NdisProtocolHandle
    for open_ in list(protocol.opens):
        _close(open_)
    protocol.registered = False
    state = protocol.ndis_state
    if protocol in state.protocols:
        state.protocols.remove(protocol)
    k = protocol.kernel
    k.unregister_object(protocol)
    k.pool.free(protocol.address, "NDpb")


def schedule_binds(adapter: "Adapter") -> None:
    """An adapter came up: bind every registered protocol that binds on its own."""
    state = adapter.ndis_state
    k = state.kernel
    for protocol in state.protocols:
        if protocol.characteristics.BindAdapterHandlerEx is not None:
            k.scheduler.call_soon(k, ndisBindProtocolToAdapter, protocol, adapter, label="ndis bind")


@kroutine("ndis")
def ndisBindProtocolToAdapter(protocol: NdisProtocol, adapter: "Adapter") -> int:
    if not protocol.registered or adapter.state_name != MINIPORT_STATE_RUNNING:
        return NDIS_STATUS_ADAPTER_NOT_FOUND
    if any(o.protocol is protocol and o.open for o in adapter.opens):
        return NDIS_STATUS_SUCCESS  # already bound
    params = adapter.bind_parameters()
    bind = protocol.characteristics.BindAdapterHandlerEx
    assert bind is not None
    return bind(protocol.context, BindContext(adapter, protocol), params)


@kroutine("ndis")
def NdisOpenAdapterEx(NdisProtocolHandle: NdisProtocol, ProtocolBindingContext: Any,
                      OpenParameters: NDIS_OPEN_PARAMETERS, BindContext: Any) -> tuple[int, NdisOpen | None]:
    """Open the adapter named by BindContext (or OpenParameters.AdapterName); returns the binding handle."""
    protocol = NdisProtocolHandle
    state = protocol.ndis_state
    adapter = getattr(BindContext, "adapter", None)
    if adapter is None and OpenParameters is not None and OpenParameters.AdapterName:
        adapter = state.adapter_by_name(OpenParameters.AdapterName)
    if adapter is None:
        return NDIS_STATUS_ADAPTER_NOT_FOUND, None
    if OpenParameters is not None and NdisMedium802_3 not in OpenParameters.MediumArray:
        return 0xC0010019, None  # NDIS_STATUS_UNSUPPORTED_MEDIA
    open_ = NdisOpen(protocol, adapter, ProtocolBindingContext)
    adapter.opens.append(open_)
    protocol.opens.append(open_)
    state.opens.append(open_)
    return NDIS_STATUS_SUCCESS, open_


@kroutine("ndis")
def NdisCloseAdapterEx(NdisBindingHandle: NdisOpen) -> int:
    _close(NdisBindingHandle)
    return NDIS_STATUS_SUCCESS


def _close(open_: NdisOpen) -> None:
    if not open_.open:
        return
    open_.open = False
    for lst in (open_.adapter.opens, open_.protocol.opens, open_.ndis_state.opens):
        if open_ in lst:
            lst.remove(open_)
    k = open_.kernel
    k.unregister_object(open_)
    k.pool.free(open_.address, "NDop")


# --- the data path -------------------------------------------------------------------------------

@kroutine("ndis")
def NdisSendNetBufferLists(NdisBindingHandle: NdisOpen, NetBufferLists: "NetBufferList", PortNumber: int,
                           SendFlags: int) -> None:
    """Hand a chain of NBLs to the adapter's miniport (or fail them at once when it is not Running)."""
    open_ = NdisBindingHandle
    adapter = open_.adapter
    log = adapter.ndis_state.ownership
    running = adapter.state_name == MINIPORT_STATE_RUNNING and open_.open
    miniport = adapter.owner_name
    record = log.record
    record_sent = log.record_sent
    held = log.held
    count = 0
    nbl = NetBufferLists
    while nbl is not None:
        count += 1
        nbl.SourceHandle = open_
        if running:
            record_sent(nbl, miniport)  # NBL_PROTOCOL_SENT, then NBL_SENT_TO_MINIPORT
            held[nbl.address] = nbl  # log.hold(nbl)
        else:
            record(nbl, NBL_PROTOCOL_SENT, "ndis")
        nbl = nbl.Next
    open_.nbls_sent += count
    k = adapter.kernel
    if not running:
        nbl = NetBufferLists
        while nbl is not None:
            nbl.Status = NDIS_STATUS_PAUSED
            log.record(nbl, NBL_SEND_COMPLETED, open_.owner_name, "paused")
            nbl = nbl.Next
        adapter.counters.send_failures += count
        complete = open_.protocol.characteristics.SendNetBufferListsCompleteHandler
        complete(open_.ProtocolBindingContext, NetBufferLists, SendFlags & NDIS_SEND_FLAGS_DISPATCH_LEVEL)
        return
    adapter.counters.nbls_sent += count
    adapter.outstanding_sends += count
    if k.bus.subscribers:
        k.publish(NblSent, nbl=NetBufferLists.address, count=count, adapter=adapter.name)
    adapter.driver.characteristics.SendNetBufferListsHandler(adapter.MiniportAdapterContext, NetBufferLists,
                                                             PortNumber, SendFlags)


def complete_sends_to_protocols(adapter: "Adapter", NetBufferLists: "NetBufferList", flags: int) -> int:
    """Route completed NBLs back to the opens that sent them; returns how many."""
    log = adapter.ndis_state.ownership
    held = log.held
    groups: dict[int, list[Any]] = {}
    opens: dict[int, NdisOpen] = {}
    first_open = NetBufferLists.SourceHandle
    first: list[Any] = []  # the usual case: every NBL came from one open
    nbl = NetBufferLists
    count = 0
    while nbl is not None:
        nxt = nbl.Next
        count += 1
        address = nbl.address
        if address in held:
            del held[address]  # log.release(nbl)
        open_ = nbl.SourceHandle
        if open_ is first_open:
            first.append(nbl)
        else:
            key = id(open_)
            lst = groups.get(key)
            if lst is None:
                groups[key] = lst = []
                opens[key] = open_
            lst.append(nbl)
        nbl = nxt
    for open_, nbls in ((first_open, first), *((opens[key], nbls) for key, nbls in groups.items())):
        _relink(nbls)
        log.record_all(nbls, NBL_SEND_COMPLETED, open_.owner_name if open_.__class__ is NdisOpen else getattr(open_, "owner_name", "?"))
        handler = open_.protocol.characteristics.SendNetBufferListsCompleteHandler if open_ is not None else None
        if handler is not None:
            handler(open_.ProtocolBindingContext, nbls[0], flags)
    k = adapter.kernel
    if k.bus.subscribers:
        k.publish(NblSendCompleted, nbl=NetBufferLists.address, count=count, adapter=adapter.name)
    return count


_NONE = object()


def _relink(nbls: list[Any]) -> None:
    """Chain a list of NBLs through Next, in order."""
    last = len(nbls) - 1
    for j in range(last):
        nbls[j].Next = nbls[j + 1]
    nbls[last].Next = None


@kroutine("ndis")
def NdisReturnNetBufferLists(NdisBindingHandle: NdisOpen, NetBufferLists: "NetBufferList", ReturnFlags: int) -> None:
    """The protocol is done with indicated NBLs: give each back to its miniport once every open returned it."""
    open_ = NdisBindingHandle
    state = open_.ndis_state
    log = state.ownership
    held = log.held
    record = log.record
    first_adapter: Any = _NONE  # the adapter of the first NBL given back: the usual case has only that one
    first: list[Any] = []
    by_adapter: dict[int, list[Any]] = {}
    adapters: dict[int, Any] = {}
    nbl = NetBufferLists
    while nbl is not None:
        nxt = nbl.Next
        if nbl.address not in held:
            state.kernel.bugcheck(BUGCODE_NDIS_DRIVER, 0x24, nbl.address, open_.address, 0,
                                  detail="NdisReturnNetBufferLists on an NBL the protocol does not hold")
        nbl.indicate_refs -= 1
        if nbl.indicate_refs <= 0:
            del held[nbl.address]  # log.release(nbl)
            record(nbl, NBL_PROTOCOL_RETURNED, "ndis")
            adapter = nbl.SourceHandle
            if first_adapter is _NONE:
                first_adapter = adapter
            if adapter is first_adapter:
                first.append(nbl)
            else:
                key = id(adapter)
                lst = by_adapter.get(key)
                if lst is None:
                    by_adapter[key] = lst = []
                    adapters[key] = adapter
                lst.append(nbl)
        nbl = nxt
    flags = ReturnFlags & NDIS_RETURN_FLAGS_DISPATCH_LEVEL
    if first:
        return_to_miniport(first_adapter, first, flags)
    for key, nbls in by_adapter.items():
        return_to_miniport(adapters[key], nbls, flags)


def return_to_miniport(adapter: "Adapter", nbls: list[Any], flags: int) -> None:
    _relink(nbls)
    adapter.ndis_state.ownership.record_all(nbls, NBL_RETURNED_TO_MINIPORT, adapter.owner_name)
    count = len(nbls)
    adapter.counters.nbls_returned += count
    adapter.outstanding_indications -= count
    k = adapter.kernel
    if k.bus.subscribers:
        k.publish(NblReturned, nbl=nbls[0].address, count=count, adapter=adapter.name)
    adapter.driver.characteristics.ReturnNetBufferListsHandler(adapter.MiniportAdapterContext, nbls[0], flags)


# --- OIDs ----------------------------------------------------------------------------------------

@kroutine("ndis")
def NdisOidRequest(NdisBindingHandle: NdisOpen, OidRequest: "NDIS_OID_REQUEST") -> int:
    """Pass an OID request to the miniport; PENDING means OidRequestCompleteHandler follows."""
    open_ = NdisBindingHandle
    adapter = open_.adapter
    OidRequest.RequestHandle = open_
    open_.oids += 1
    adapter.counters.oids += 1
    if not open_.open or adapter.state_name in ("Halted", "Failed", "Initializing"):
        status = NDIS_STATUS_ADAPTER_NOT_FOUND
    else:
        handler = adapter.driver.characteristics.OidRequestHandler
        status = handler(adapter.MiniportAdapterContext, OidRequest)
        if status == NDIS_STATUS_PENDING:
            open_.pending_oids.append(OidRequest)
            adapter.pending_oids.append(OidRequest)
    if status != NDIS_STATUS_PENDING:
        OidRequest.Status = status
    k = adapter.kernel
    if k.bus.subscribers:
        k.publish(OidRequested, oid=OidRequest.Oid, request_type=OidRequest.RequestType, adapter=adapter.name,
                  status=status)
    return status



