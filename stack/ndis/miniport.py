"""The miniport edge of NDIS: driver registration, adapters, interrupts, completions, indications.

`Adapter` is NDIS's NDIS_MINIPORT_BLOCK for one NIC (the MiniportAdapterHandle
the miniport passes back to NDIS).  NDIS starts an adapter (PnP start) by
calling the driver's MiniportInitializeEx then MiniportRestart, then binds
protocols; it pauses and restarts it through MiniportPause/MiniportRestart.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

from stack.kernel.ke import KDPC, KeInsertQueueDpc, KeRemoveQueueDpc
from stack.kernel.pool import NonPagedPoolNx
from stack.kernel.symbols import current_kernel, kroutine

from .constants import (MINIPORT_STATE_FAILED, MINIPORT_STATE_HALTED, MINIPORT_STATE_INITIALIZING,
                        MINIPORT_STATE_PAUSED, MINIPORT_STATE_PAUSING, MINIPORT_STATE_RESTARTING,
                        MINIPORT_STATE_RUNNING, NDIS_RECEIVE_FLAGS_RESOURCES, NDIS_STATUS_FAILURE,
                        NDIS_STATUS_PENDING, NDIS_STATUS_SUCCESS, MediaConnectStateConnected,
                        MediaConnectStateDisconnected, NdisMedium802_3, NetEventPause, NetEventRestart)
from .events import NblIndicated
from .oid import NDIS_OFFLOAD
from .ownership import NBL_INDICATED, NBL_MINIPORT_SEND_COMPLETED, NBL_RETURNED_TO_MINIPORT
from .protocol import (BUGCODE_NDIS_DRIVER, NDIS_BIND_PARAMETERS, NDIS_STATUS_INDICATION, NET_PNP_EVENT_NOTIFICATION,
                       complete_sends_to_protocols, return_to_miniport, schedule_binds)
from .state import NdisState, ndis_state

# BUGCODE_NDIS_DRIVER Parameter 1 for a received NBL whose SourceHandle is not the
# indicating adapter.  Emulator-defined: Windows documents no subcode for this rule,
# so the value sits well outside the documented 0x01..0x27 range.
EMU_NDIS_BUGCHECK_BAD_RECEIVE_SOURCE_HANDLE = 0xE001

if TYPE_CHECKING:
    from stack.nic.nic import EmulatedNic

    from .nbl import NetBufferList
    from .oid import NDIS_OID_REQUEST


@dataclass(slots=True)
class NDIS_MINIPORT_DRIVER_CHARACTERISTICS:
    MajorNdisVersion: int = 6
    MinorNdisVersion: int = 30
    MajorDriverVersion: int = 1
    MinorDriverVersion: int = 0
    Flags: int = 0
    SetOptionsHandler: Callable[..., int] | None = None
    InitializeHandlerEx: Callable[..., int] | None = None
    HaltHandlerEx: Callable[..., None] | None = None
    UnloadHandler: Callable[..., None] | None = None
    PauseHandler: Callable[..., int] | None = None
    RestartHandler: Callable[..., int] | None = None
    OidRequestHandler: Callable[..., int] | None = None
    SendNetBufferListsHandler: Callable[..., None] | None = None
    ReturnNetBufferListsHandler: Callable[..., None] | None = None
    CancelSendHandler: Callable[..., None] | None = None
    CheckForHangHandlerEx: Callable[..., bool] | None = None
    ResetHandlerEx: Callable[..., int] | None = None
    DevicePnPEventNotifyHandler: Callable[..., None] | None = None
    ShutdownHandlerEx: Callable[..., None] | None = None
    CancelOidRequestHandler: Callable[..., None] | None = None

    HANDLER_NAMES = ("InitializeHandlerEx", "HaltHandlerEx", "UnloadHandler", "PauseHandler", "RestartHandler",
                     "OidRequestHandler", "SendNetBufferListsHandler", "ReturnNetBufferListsHandler",
                     "CancelSendHandler", "CheckForHangHandlerEx", "ResetHandlerEx", "DevicePnPEventNotifyHandler",
                     "ShutdownHandlerEx", "CancelOidRequestHandler")


@dataclass(slots=True)
class NDIS_MINIPORT_INIT_PARAMETERS:
    AllocatedResources: Any  # the emulated NIC this adapter drives (its "resource list")
    IfIndex: int = 0
    NetLuid: int = 0
    PortNumber: int = 0


@dataclass(slots=True)
class NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES:
    MiniportAdapterContext: Any
    AttributeFlags: int = 0
    CheckForHangTimeInSeconds: int = 0
    InterfaceType: int = 0


@dataclass(slots=True)
class NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES:
    MediaType: int = NdisMedium802_3
    MtuSize: int = 1500
    MaxXmitLinkSpeed: int = 0
    XmitLinkSpeed: int = 0
    MaxRcvLinkSpeed: int = 0
    RcvLinkSpeed: int = 0
    MediaConnectState: int = MediaConnectStateConnected
    LookaheadSize: int = 0
    MacAddressLength: int = 6
    PermanentMacAddress: bytes = b""
    CurrentMacAddress: bytes = b""
    SupportedPacketFilters: int = 0
    MaxMulticastListSize: int = 32
    SupportedOidList: tuple[int, ...] = ()


@dataclass(slots=True)
class NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES:
    DefaultOffloadConfiguration: NDIS_OFFLOAD
    HardwareOffloadCapabilities: NDIS_OFFLOAD


@dataclass(slots=True)
class NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS:
    InterruptHandler: Callable[[Any], tuple[bool, bool]] | None = None  # -> (recognized, queue DPC)
    InterruptDpcHandler: Callable[..., None] | None = None
    DisableInterruptHandler: Callable[[Any], None] | None = None
    EnableInterruptHandler: Callable[[Any], None] | None = None


@dataclass(slots=True)
class NDIS_MINIPORT_PAUSE_PARAMETERS:
    PauseReason: int = 0


@dataclass(slots=True)
class NDIS_MINIPORT_RESTART_PARAMETERS:
    PortNumber: int = 0


@dataclass(slots=True)
class AdapterCounters:
    """What !ndiskd.netadapter shows: traffic, drops, interrupts and NBL hand-offs."""

    frames_out: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    bytes_in: int = 0
    drops: Counter = field(default_factory=Counter)  # reason -> frames
    interrupts: int = 0
    dpcs: int = 0
    nbls_sent: int = 0
    nbls_send_completed: int = 0
    nbls_indicated: int = 0
    nbls_returned: int = 0
    send_failures: int = 0
    oids: int = 0
    low_resource_indications: int = 0


class MiniportDriver:
    """NDIS_M_DRIVER_BLOCK: a registered miniport driver."""

    STRUCT_SIZE = 0x200

    def __init__(self, state: NdisState, driver_object: Any, context: Any,
                 chars: NDIS_MINIPORT_DRIVER_CHARACTERISTICS) -> None:
        k = state.kernel
        self.ndis_state = state
        self.kernel = k
        self.driver_object = driver_object
        self.name = driver_object.short_name if driver_object is not None else "miniport"
        self.owner_name = self.name
        self.context = context
        self.characteristics = chars
        self.adapters: list[Adapter] = []
        self.address = k.pool.allocate(NonPagedPoolNx, self.STRUCT_SIZE, "NDmd", owner="ndis")
        k.register_object(self)

    def handlers(self) -> list[tuple[str, Callable[..., Any] | None]]:
        """(handler name, routine) for !ndiskd.minidriver -handlers."""
        c = self.characteristics
        return [(name, getattr(c, name)) for name in c.HANDLER_NAMES]

    def __repr__(self) -> str:
        return f"<MiniportDriver {self.name} {self.address:x}>"


class NdisInterrupt:
    """What NdisMRegisterInterruptEx returns: the ISR/DPC pair bound to the NIC's line."""

    def __init__(self, adapter: "Adapter", context: Any, chars: NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS) -> None:
        k = adapter.kernel
        self.adapter = adapter
        self.context = context
        self.characteristics = chars
        self.address = k.pool.allocate(NonPagedPoolNx, 0x100, "NDin", owner="ndis")
        self.dpc = KDPC(ndisMiniportDpc, self)
        self.dpc.place(k, self.address + 0x40)  # the interrupt block's KDPC, written when read
        self.isr_count = 0
        self.dpc_count = 0
        self.throttle = NDIS_RECEIVE_THROTTLE_PARAMETERS()  # the per-DPC receive quota NDIS hands the miniport


class NDIS_RECEIVE_THROTTLE_PARAMETERS:
    """MaxNblsToIndicate: how many NBLs one MiniportInterruptDPC call may indicate (NDIS 6.20)."""

    NDIS_INDICATE_ALL_NBLS = 0xFFFFFFFF

    def __init__(self, MaxNblsToIndicate: int = NDIS_INDICATE_ALL_NBLS) -> None:
        self.MaxNblsToIndicate = MaxNblsToIndicate
        self.MoreNblsPending = False


class Adapter:
    """NDIS_MINIPORT_BLOCK for one NIC: state, attributes, bindings and counters."""

    STRUCT_SIZE = 0x1000

    def __init__(self, state: NdisState, nic: "EmulatedNic", driver_name: str, index: int) -> None:
        k = state.kernel
        self.ndis_state = state
        self.kernel = k
        self.nic = nic
        self.index = index
        self.if_index = 10 + index
        self.driver_name = driver_name
        self.driver: MiniportDriver | None = None
        self.owner_name = driver_name
        self.description = "WSKDBG Virtual Ethernet Adapter" + (f" #{index}" if index > 1 else "")
        self.ifname = "Ethernet" + (f" {index}" if index > 1 else "")
        self.name = self.description
        self.state_name = MINIPORT_STATE_HALTED
        self.MiniportAdapterContext: Any = None
        self.registration: NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES | None = None
        self.general: NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES | None = None
        self.offload: NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES | None = None
        self.opens: list[Any] = []
        self.interrupt: NdisInterrupt | None = None
        self.counters = AdapterCounters()
        self.outstanding_sends = 0  # NBLs given to the miniport, not yet completed
        self.outstanding_indications = 0  # NBLs indicated, not yet returned
        self.pending_oids: list[Any] = []
        self.init_status: int | None = None
        self.address = k.pool.allocate(NonPagedPoolNx, self.STRUCT_SIZE, "NDma", owner="ndis")
        k.register_object(self)

    # -- what !ndiskd.netadapter shows -----------------------------------------------
    @property
    def mac(self) -> bytes:
        return self.nic.mac

    @property
    def mtu(self) -> int:
        return self.nic.mtu

    @property
    def link_speed_bps(self) -> int:
        return self.nic.link_speed_bps

    @property
    def media_connected(self) -> bool:
        return self.nic.media_connected

    @property
    def running(self) -> bool:
        return self.state_name == MINIPORT_STATE_RUNNING

    @property
    def nbls_pending(self) -> int:
        return self.outstanding_sends + self.outstanding_indications

    def bind_parameters(self) -> NDIS_BIND_PARAMETERS:
        g = self.general or NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES()
        return NDIS_BIND_PARAMETERS(
            AdapterName=self.name, AdapterDescription=self.description, MediaType=g.MediaType, MtuSize=g.MtuSize,
            MaxXmitLinkSpeed=g.MaxXmitLinkSpeed, XmitLinkSpeed=g.XmitLinkSpeed, MaxRcvLinkSpeed=g.MaxRcvLinkSpeed,
            RcvLinkSpeed=g.RcvLinkSpeed,
            MediaConnectState=MediaConnectStateConnected if self.media_connected else MediaConnectStateDisconnected,
            MacAddressLength=6, CurrentMacAddress=self.nic.mac, PermanentMacAddress=self.nic.permanent_mac,
            IfIndex=self.if_index, SupportedPacketFilters=g.SupportedPacketFilters,
            DefaultOffloadConfiguration=self.offload.DefaultOffloadConfiguration if self.offload else None,
            LookaheadSize=g.LookaheadSize, Adapter=self)

    def __repr__(self) -> str:
        return f"<Adapter {self.name} {self.address:x} {self.state_name}>"


# --- driver registration ------------------------------------------------------------------

@kroutine("ndis")
def NdisMRegisterMiniportDriver(DriverObject: Any, RegistryPath: str, MiniportDriverContext: Any,
                                MiniportDriverCharacteristics: NDIS_MINIPORT_DRIVER_CHARACTERISTICS
                                ) -> tuple[int, MiniportDriver | None]:
    """Register a miniport driver; NDIS then starts each adapter waiting for it."""
    k = current_kernel()
    chars = MiniportDriverCharacteristics
    required = (chars.InitializeHandlerEx, chars.HaltHandlerEx, chars.PauseHandler, chars.RestartHandler,
                chars.OidRequestHandler, chars.SendNetBufferListsHandler, chars.ReturnNetBufferListsHandler)
    if any(h is None for h in required):
        return NDIS_STATUS_FAILURE, None
    state = ndis_state(k)
    driver = MiniportDriver(state, DriverObject, MiniportDriverContext, chars)
    state.miniport_drivers.append(driver)
    for adapter in state.adapters:
        if adapter.driver is None and adapter.driver_name.lower() == driver.name.lower():
            start_adapter(adapter)
    return NDIS_STATUS_SUCCESS, driver


@kroutine("ndis")
def NdisMDeregisterMiniportDriver(NdisMiniportDriverHandle: MiniportDriver) -> None:
    """Halt every adapter of the driver, then forget it."""
    driver = NdisMiniportDriverHandle
    for adapter in list(driver.adapters):
        ndisHaltMiniport(adapter)
    state = driver.ndis_state
    if driver in state.miniport_drivers:
        state.miniport_drivers.remove(driver)
    k = driver.kernel
    k.unregister_object(driver)
    k.pool.free(driver.address, "NDmd")


def start_adapter(adapter: Adapter) -> None:
    """Queue the PnP start of an adapter whose driver is registered (its own event)."""
    k = adapter.kernel
    k.scheduler.call_soon(k, ndisPnPStartAdapter, adapter, label="ndis pnp start")


@kroutine("ndis")
def ndisPnPStartAdapter(adapter: Adapter) -> int:
    state = adapter.ndis_state
    driver = state.miniport_driver(adapter.driver_name)
    if driver is None or adapter.state_name != MINIPORT_STATE_HALTED:
        return NDIS_STATUS_FAILURE
    adapter.driver = driver
    adapter.owner_name = driver.name
    driver.adapters.append(adapter)
    adapter.state_name = MINIPORT_STATE_INITIALIZING
    params = NDIS_MINIPORT_INIT_PARAMETERS(AllocatedResources=adapter.nic, IfIndex=adapter.if_index)
    init = driver.characteristics.InitializeHandlerEx
    assert init is not None
    status = init(adapter, driver.context, params)
    adapter.init_status = status
    if status != NDIS_STATUS_SUCCESS or adapter.MiniportAdapterContext is None:
        adapter.state_name = MINIPORT_STATE_FAILED
        driver.adapters.remove(adapter)
        return status if status != NDIS_STATUS_SUCCESS else NDIS_STATUS_FAILURE
    adapter.state_name = MINIPORT_STATE_PAUSED
    return ndisRestartMiniport(adapter)


@kroutine("ndis")
def ndisRestartMiniport(adapter: Adapter) -> int:
    if adapter.state_name != MINIPORT_STATE_PAUSED:
        return NDIS_STATUS_FAILURE
    adapter.state_name = MINIPORT_STATE_RESTARTING
    restart = adapter.driver.characteristics.RestartHandler
    status = restart(adapter.MiniportAdapterContext, NDIS_MINIPORT_RESTART_PARAMETERS())
    if status == NDIS_STATUS_PENDING:
        return status
    _restart_done(adapter, status)
    return status


def _restart_done(adapter: Adapter, status: int) -> None:
    if status != NDIS_STATUS_SUCCESS:
        adapter.state_name = MINIPORT_STATE_PAUSED
        return
    adapter.state_name = MINIPORT_STATE_RUNNING
    _notify_opens(adapter, NetEventRestart)
    schedule_binds(adapter)


@kroutine("ndis")
def NdisMRestartComplete(MiniportAdapterHandle: Adapter, Status: int) -> None:
    if MiniportAdapterHandle.state_name == MINIPORT_STATE_RESTARTING:
        _restart_done(MiniportAdapterHandle, Status)


@kroutine("ndis")
def ndisPauseMiniport(adapter: Adapter) -> int:
    if adapter.state_name != MINIPORT_STATE_RUNNING:
        return NDIS_STATUS_FAILURE
    adapter.state_name = MINIPORT_STATE_PAUSING
    _notify_opens(adapter, NetEventPause)
    pause = adapter.driver.characteristics.PauseHandler
    status = pause(adapter.MiniportAdapterContext, NDIS_MINIPORT_PAUSE_PARAMETERS())
    if status != NDIS_STATUS_PENDING:
        adapter.state_name = MINIPORT_STATE_PAUSED
    return status


@kroutine("ndis")
def NdisMPauseComplete(MiniportAdapterHandle: Adapter) -> None:
    if MiniportAdapterHandle.state_name == MINIPORT_STATE_PAUSING:
        MiniportAdapterHandle.state_name = MINIPORT_STATE_PAUSED


def ndis_pause_adapter(adapter: Adapter):
    """Have NDIS pause the adapter (as PnP or a filter change does); runs as its own event."""
    k = adapter.kernel
    return k.scheduler.call_soon(k, ndisPauseMiniport, adapter, label="ndis pause")


def ndis_restart_adapter(adapter: Adapter):
    """Have NDIS restart a Paused adapter; runs as its own event."""
    k = adapter.kernel
    return k.scheduler.call_soon(k, ndisRestartMiniport, adapter, label="ndis restart")


@kroutine("ndis")
def ndisHaltMiniport(adapter: Adapter) -> None:
    """Pause (if needed) and halt an adapter: the miniport frees everything it allocated."""
    driver = adapter.driver
    if driver is None or adapter.state_name in (MINIPORT_STATE_HALTED, MINIPORT_STATE_FAILED):
        return
    if adapter.state_name == MINIPORT_STATE_RUNNING:
        ndisPauseMiniport(adapter)
    for open_ in list(adapter.opens):
        unbind = open_.protocol.characteristics.UnbindAdapterHandlerEx
        if unbind is not None:
            unbind(None, open_.ProtocolBindingContext)
        from .protocol import _close
        _close(open_)
    driver.characteristics.HaltHandlerEx(adapter.MiniportAdapterContext, 0)
    adapter.state_name = MINIPORT_STATE_HALTED
    adapter.MiniportAdapterContext = None
    if adapter in driver.adapters:
        driver.adapters.remove(adapter)
    adapter.driver = None


def _notify_opens(adapter: Adapter, event: int) -> None:
    for open_ in list(adapter.opens):
        handler = open_.protocol.characteristics.NetPnPEventHandler
        if handler is not None:
            handler(open_.ProtocolBindingContext, NET_PNP_EVENT_NOTIFICATION(NetEvent=event))


# --- attributes and interrupts ----------------------------------------------------------------

@kroutine("ndis")
def NdisMSetMiniportAttributes(MiniportAdapterHandle: Adapter, MiniportAttributes: Any) -> int:
    adapter = MiniportAdapterHandle
    if isinstance(MiniportAttributes, NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES):
        adapter.registration = MiniportAttributes
        adapter.MiniportAdapterContext = MiniportAttributes.MiniportAdapterContext
    elif isinstance(MiniportAttributes, NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES):
        adapter.general = MiniportAttributes
    elif isinstance(MiniportAttributes, NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES):
        adapter.offload = MiniportAttributes
    else:
        return 0xC000000D  # NDIS_STATUS_INVALID_PARAMETER
    return NDIS_STATUS_SUCCESS


@kroutine("ndis")
def NdisMRegisterInterruptEx(MiniportAdapterHandle: Adapter, MiniportInterruptContext: Any,
                             MiniportInterruptCharacteristics: NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS
                             ) -> tuple[int, NdisInterrupt | None]:
    """Connect the miniport's ISR and DPC to its NIC's interrupt line."""
    adapter = MiniportAdapterHandle
    chars = MiniportInterruptCharacteristics
    if chars.InterruptHandler is None or chars.InterruptDpcHandler is None:
        return NDIS_STATUS_FAILURE, None
    interrupt = NdisInterrupt(adapter, MiniportInterruptContext, chars)
    adapter.interrupt = interrupt
    adapter.nic.connect_interrupt(partial(ndisMiniportIsr, interrupt))
    return NDIS_STATUS_SUCCESS, interrupt


@kroutine("ndis")
def NdisMDeregisterInterruptEx(NdisInterruptHandle: NdisInterrupt) -> None:
    interrupt = NdisInterruptHandle
    adapter = interrupt.adapter
    adapter.nic.connect_interrupt(None)
    KeRemoveQueueDpc(interrupt.dpc)
    interrupt.dpc.unplace()
    adapter.interrupt = None
    adapter.kernel.pool.free(interrupt.address, "NDin")


@kroutine("ndis")
def ndisMiniportIsr(Interrupt: NdisInterrupt) -> bool:
    """NDIS's ISR wrapper (at DIRQL): ask the miniport, queue its DPC if it wants one."""
    Interrupt.isr_count += 1
    recognized, queue_dpc = Interrupt.characteristics.InterruptHandler(Interrupt.context)
    if recognized:
        Interrupt.adapter.counters.interrupts += 1
    if queue_dpc:
        KeInsertQueueDpc(Interrupt.dpc, None, None)
    return recognized


@kroutine("ndis")
def ndisMiniportDpc(Dpc: KDPC, DeferredContext: NdisInterrupt, SystemArgument1: Any, SystemArgument2: Any) -> None:
    interrupt = DeferredContext
    interrupt.dpc_count += 1
    interrupt.adapter.counters.dpcs += 1
    interrupt.throttle.MoreNblsPending = False
    interrupt.characteristics.InterruptDpcHandler(interrupt.context, None, interrupt.throttle, None)


# --- completions and indications ----------------------------------------------------------------

def _relink(nbls: list[Any]) -> None:
    """Chain a list of NBLs through Next, in order."""
    last = len(nbls) - 1
    for j in range(last):
        nbls[j].Next = nbls[j + 1]
    nbls[last].Next = None


@kroutine("ndis")
def NdisMSendNetBufferListsComplete(MiniportAdapterHandle: Adapter, NetBufferLists: "NetBufferList",
                                    SendCompleteFlags: int) -> None:
    """The miniport is done with sent NBLs: NDIS gives each back to the protocol that sent it."""
    adapter = MiniportAdapterHandle
    if NetBufferLists is None:
        return
    nbls = []
    nbl = NetBufferLists
    while nbl is not None:
        nbls.append(nbl)
        nbl = nbl.Next
    adapter.ndis_state.ownership.record_all(nbls, NBL_MINIPORT_SEND_COMPLETED, "ndis")
    count = len(nbls)
    adapter.counters.nbls_send_completed += count
    adapter.outstanding_sends -= count
    complete_sends_to_protocols(adapter, NetBufferLists, SendCompleteFlags)


@kroutine("ndis")
def NdisMIndicateReceiveNetBufferLists(MiniportAdapterHandle: Adapter, NetBufferLists: "NetBufferList",
                                       PortNumber: int, NumberOfNetBufferLists: int, ReceiveFlags: int) -> None:
    """Indicate received NBLs to every bound protocol.

    With NDIS_RECEIVE_FLAGS_RESOURCES the miniport owns the NBLs again as
    soon as this returns (the protocols had to copy); otherwise each NBL
    stays with the protocols until all of them return it.
    """
    adapter = MiniportAdapterHandle
    if NetBufferLists is None:
        return
    state = adapter.ndis_state
    log = state.ownership
    k = adapter.kernel
    nbls: list[Any] = []
    nbl = NetBufferLists
    while nbl is not None:
        # The miniport must set SourceHandle = MiniportAdapterHandle; NDIS routes the
        # protocols' NdisReturnNetBufferLists back by it, so it is checked, not patched.
        if nbl.SourceHandle is not adapter:
            k.bugcheck(BUGCODE_NDIS_DRIVER, EMU_NDIS_BUGCHECK_BAD_RECEIVE_SOURCE_HANDLE, adapter.address,
                       nbl.address, _handle_address(nbl.SourceHandle),
                       detail="emulator-defined check: a received NET_BUFFER_LIST's SourceHandle is not the "
                              "MiniportAdapterHandle that indicated it")
        nbls.append(nbl)
        nbl = nbl.Next
    if len(nbls) != NumberOfNetBufferLists:
        k.bugcheck(BUGCODE_NDIS_DRIVER, 0x25, adapter.address, NumberOfNetBufferLists, len(nbls),
                   detail="NumberOfNetBufferLists does not match the chain")
    count = len(nbls)
    if k.cpu_model is not None:  # k.charge(), without the call when no processor spends time
        k.charge("ndis_indicate", count)
    resources = bool(ReceiveFlags & NDIS_RECEIVE_FLAGS_RESOURCES)
    opens = [o for o in adapter.opens if o.open]
    counters = adapter.counters
    counters.nbls_indicated += count
    if resources:
        counters.low_resource_indications += 1
    if k.bus.subscribers:
        k.publish(NblIndicated, nbl=NetBufferLists.address, count=count, adapter=adapter.name,
                  flags=ReceiveFlags)
    if not opens or adapter.state_name != MINIPORT_STATE_RUNNING:
        counters.drops["no_binding" if not opens else "not_running"] += count
        if not resources:
            adapter.outstanding_indications += count
            return_to_miniport(adapter, nbls, ReceiveFlags & 1)
        return
    if not resources:
        held = log.held
        refs = len(opens)
        for n in nbls:
            n.indicate_refs = refs
            held[n.address] = n  # log.hold(n)
        adapter.outstanding_indications += count
    for i, open_ in enumerate(opens):
        log.record_all(nbls, NBL_INDICATED, open_.owner_name)
        if i:  # an earlier protocol may have broken the chain up; hand the next one the whole chain again
            _relink(nbls)
        open_.nbls_received += count
        open_.protocol.characteristics.ReceiveNetBufferListsHandler(
            open_.ProtocolBindingContext, nbls[0], PortNumber, count, ReceiveFlags)
    if resources:
        _relink(nbls)
        log.record_all(nbls, NBL_RETURNED_TO_MINIPORT, adapter.owner_name, "resources")


def _handle_address(handle: Any) -> int:
    """The address a handle object lives at (0 for None or a handle without one)."""
    return getattr(handle, "address", 0) or 0


@kroutine("ndis")
def NdisMIndicateStatusEx(MiniportAdapterHandle: Adapter, StatusIndication: NDIS_STATUS_INDICATION) -> None:
    for open_ in list(MiniportAdapterHandle.opens):
        handler = open_.protocol.characteristics.StatusHandlerEx
        if handler is not None:
            handler(open_.ProtocolBindingContext, StatusIndication)


@kroutine("ndis")
def NdisMOidRequestComplete(MiniportAdapterHandle: Adapter, OidRequest: "NDIS_OID_REQUEST", Status: int) -> None:
    adapter = MiniportAdapterHandle
    OidRequest.Status = Status
    if OidRequest in adapter.pending_oids:
        adapter.pending_oids.remove(OidRequest)
    open_ = OidRequest.RequestHandle
    if open_ is not None:
        if OidRequest in open_.pending_oids:
            open_.pending_oids.remove(OidRequest)
        handler = open_.protocol.characteristics.OidRequestCompleteHandler
        if handler is not None:
            handler(open_.ProtocolBindingContext, OidRequest, Status)


__all__ = [
    "NDIS_MINIPORT_DRIVER_CHARACTERISTICS", "NDIS_MINIPORT_INIT_PARAMETERS",
    "NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES",
    "NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES", "NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES",
    "NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS", "NDIS_MINIPORT_PAUSE_PARAMETERS", "NDIS_MINIPORT_RESTART_PARAMETERS",
    "AdapterCounters", "MiniportDriver", "NdisInterrupt", "Adapter", "NdisMRegisterMiniportDriver",
    "NdisMDeregisterMiniportDriver", "NdisMRestartComplete", "NdisMPauseComplete", "ndis_pause_adapter",
    "ndis_restart_adapter", "NdisMSetMiniportAttributes", "NdisMRegisterInterruptEx", "NdisMDeregisterInterruptEx",
    "NdisMSendNetBufferListsComplete", "NdisMIndicateReceiveNetBufferLists", "NdisMIndicateStatusEx",
    "NdisMOidRequestComplete", "start_adapter",
]
