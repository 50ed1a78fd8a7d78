"""netvmini: the miniport driver for the emulated NIC (after the WDK's virtual miniport sample).

Unlike the WDK sample (which has no hardware) this one drives `EmulatedNic`:
it posts receive buffers (pool memory described by MDLs, each with its own
NBL allocated once at initialize time), turns each NET_BUFFER into a
transmit descriptor whose scatter-gather list is the NB's MDL pages, and
drains completions in its interrupt DPC - completing sends with
NdisMSendNetBufferListsComplete and indicating receives with
NdisMIndicateReceiveNetBufferLists.  When few receive buffers are left it
indicates with NDIS_RECEIVE_FLAGS_RESOURCES and takes the NBLs straight back.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from stack.kernel.io import DriverImage
from stack.kernel.symbols import kroutine
from stack.nic.nic import (DROP_LINK_DOWN, DROP_TX_MALFORMED, DROP_TX_OVERSIZE, EmulatedNic,
                           INT_RX, INT_TX)
from stack.nic.offload import TX_CSUM_IP, TX_CSUM_TCP, TX_CSUM_UDP

from .constants import (NDIS_CSUM_TX_IP_HEADER, NDIS_CSUM_TX_IS_IPV4, NDIS_CSUM_TX_IS_IPV6, NDIS_CSUM_TX_TCP,
                        NDIS_CSUM_TX_UDP, NDIS_PACKET_TYPE_ALL_LOCAL, NDIS_PACKET_TYPE_ALL_MULTICAST,
                        NDIS_PACKET_TYPE_BROADCAST, NDIS_PACKET_TYPE_DIRECTED, NDIS_PACKET_TYPE_MULTICAST,
                        NDIS_PACKET_TYPE_PROMISCUOUS, NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL, NDIS_RECEIVE_FLAGS_RESOURCES,
                        NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL, NDIS_STATUS_BUFFER_TOO_SHORT, NDIS_STATUS_FAILURE,
                        NDIS_STATUS_INVALID_DATA, NDIS_STATUS_INVALID_LENGTH, NDIS_STATUS_INVALID_OID,
                        NDIS_STATUS_NOT_SUPPORTED, NDIS_STATUS_PAUSED, NDIS_STATUS_PENDING, NDIS_STATUS_RESOURCES,
                        NDIS_STATUS_SEND_ABORTED, NDIS_STATUS_SUCCESS, NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG,
                        OID_802_3_CURRENT_ADDRESS, OID_802_3_MAXIMUM_LIST_SIZE, OID_802_3_MULTICAST_LIST,
                        OID_802_3_PERMANENT_ADDRESS, OID_GEN_CURRENT_LOOKAHEAD, OID_GEN_CURRENT_PACKET_FILTER,
                        OID_GEN_HARDWARE_STATUS, OID_GEN_INTERRUPT_MODERATION, OID_GEN_LINK_SPEED,
                        OID_GEN_MAXIMUM_FRAME_SIZE,
                        OID_GEN_MAXIMUM_LOOKAHEAD, OID_GEN_MAXIMUM_TOTAL_SIZE, OID_GEN_MEDIA_CONNECT_STATUS,
                        OID_GEN_MEDIA_IN_USE, OID_GEN_MEDIA_SUPPORTED, OID_GEN_RCV_ERROR, OID_GEN_RCV_NO_BUFFER,
                        OID_GEN_RCV_OK, OID_GEN_STATISTICS, OID_GEN_SUPPORTED_LIST, OID_GEN_VENDOR_DESCRIPTION,
                        OID_GEN_VENDOR_ID, OID_GEN_XMIT_ERROR, OID_GEN_XMIT_OK, OID_TCP_OFFLOAD_CURRENT_CONFIG,
                        OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES, OID_TCP_OFFLOAD_PARAMETERS, NdisMedium802_3,
                        NdisRequestMethod, NdisRequestSetInformation, NetBufferListCancelId,
                        TcpIpChecksumNetBufferListInfo, TcpLargeSendNetBufferListInfo, TcpRecvSegCoalesceInfo,
                        RscTcpTimestampDelta, NDIS_CSUM_RX_TCP_VALUE_INVALID, rsc_info, lso_mss,
                        lso_tcp_header_offset, lso_type, lso_v2_complete_info, NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE)
from .interrupt_moderation import query_interrupt_moderation, set_interrupt_moderation
from .miniport import (NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES, NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES,
                       NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES, NDIS_MINIPORT_DRIVER_CHARACTERISTICS,
                       NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS, Adapter, NdisMDeregisterInterruptEx,
                       NdisMDeregisterMiniportDriver, NdisMIndicateReceiveNetBufferLists, NdisMIndicateStatusEx,
                       NdisMPauseComplete, NdisMRegisterInterruptEx, NdisMRegisterMiniportDriver,
                       NdisMSendNetBufferListsComplete, NdisMSetMiniportAttributes)
from .nbl import (NET_BUFFER_LIST_POOL_PARAMETERS, NdisAllocateMdl, NdisAllocateMemoryWithTagPriority,
                  NdisAllocateNetBufferAndNetBufferList, NdisAllocateNetBufferListPool, NdisFreeMdl, NdisFreeMemory,
                  NdisFreeNetBufferList, NdisFreeNetBufferListPool, _undo_retreats, build_sg_list)
from .oid import (NDIS_CHECKSUM_V4, NDIS_CHECKSUM_V6, NDIS_LSOV2_IPV4, NDIS_LSOV2_IPV6, NDIS_OFFLOAD,
                  NDIS_OFFLOAD_PARAMETERS, NDIS_OFFLOAD_PARAMETERS_LSOV2_DISABLED,
                  NDIS_OFFLOAD_PARAMETERS_LSOV2_ENABLED, NDIS_OFFLOAD_PARAMETERS_NO_CHANGE,
                  NDIS_OFFLOAD_PARAMETERS_RSC_DISABLED, NDIS_OFFLOAD_PARAMETERS_RSC_ENABLED, NDIS_RSC_ENABLED,
                  NDIS_TCP_RECV_SEG_COALESCE_OFFLOAD,
                  NDIS_OFFLOAD_PARAMETERS_RX_ENABLED_TX_DISABLED, NDIS_OFFLOAD_PARAMETERS_TX_ENABLED_RX_DISABLED,
                  NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED, NDIS_OFFLOAD_SUPPORTED,
                  NDIS_OID_REQUEST, NDIS_STATISTICS_INFO, NDIS_TCP_IP_CHECKSUM_OFFLOAD,
                  NDIS_TCP_LARGE_SEND_OFFLOAD_V2)
from .protocol import NDIS_STATUS_INDICATION

TAG_ADAPTER = "NVMa"
TAG_RX_BUFFER = "NVMb"
TAG_RX_POOL = "NVMr"
NIC_VENDOR_ID = 0x00FFFFFF
NIC_VENDOR_DESCRIPTION = b"WSKDBG Virtual Ethernet Adapter\0"
SUPPORTED_FILTERS = (NDIS_PACKET_TYPE_DIRECTED | NDIS_PACKET_TYPE_MULTICAST | NDIS_PACKET_TYPE_ALL_MULTICAST
                     | NDIS_PACKET_TYPE_BROADCAST | NDIS_PACKET_TYPE_PROMISCUOUS | NDIS_PACKET_TYPE_ALL_LOCAL)
LOW_RX_FRACTION = 8  # fewer than ring/8 posted buffers left: indicate with NDIS_RECEIVE_FLAGS_RESOURCES

SUPPORTED_OIDS = (
    OID_GEN_SUPPORTED_LIST, OID_GEN_HARDWARE_STATUS, OID_GEN_MEDIA_SUPPORTED, OID_GEN_MEDIA_IN_USE,
    OID_GEN_MAXIMUM_LOOKAHEAD, OID_GEN_MAXIMUM_FRAME_SIZE, OID_GEN_LINK_SPEED, OID_GEN_VENDOR_ID,
    OID_GEN_VENDOR_DESCRIPTION, OID_GEN_CURRENT_PACKET_FILTER, OID_GEN_CURRENT_LOOKAHEAD, OID_GEN_MAXIMUM_TOTAL_SIZE,
    OID_GEN_MEDIA_CONNECT_STATUS, OID_GEN_XMIT_OK, OID_GEN_RCV_OK, OID_GEN_XMIT_ERROR, OID_GEN_RCV_ERROR,
    OID_GEN_RCV_NO_BUFFER, OID_GEN_STATISTICS, OID_802_3_PERMANENT_ADDRESS, OID_802_3_CURRENT_ADDRESS,
    OID_802_3_MULTICAST_LIST, OID_802_3_MAXIMUM_LIST_SIZE, OID_TCP_OFFLOAD_CURRENT_CONFIG,
    OID_TCP_OFFLOAD_PARAMETERS, OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES, OID_GEN_INTERRUPT_MODERATION,
)

# MP_ADAPTER states
MP_RUNNING = "Running"
MP_PAUSING = "Pausing"
MP_PAUSED = "Paused"


class MpRcb:
    """Receive control block: one posted buffer with the NBL that describes it."""

    __slots__ = ("nbl", "mdl", "va", "size", "sg", "chained")

    def __init__(self, nbl: Any, mdl: Any, va: int, size: int, sg: list[tuple[int, int, int]]) -> None:
        self.nbl = nbl
        self.mdl = mdl
        self.va = va
        self.size = size
        self.sg = sg
        # RSC: the other receive buffers whose MDLs this NBL's chain runs through (payload of joined segments)
        self.chained: list[MpRcb] = []


class MpAdapter:
    """MP_ADAPTER: netvmini's per-adapter context (at a pool address)."""

    POOL_SIZE = 0x300

    def __init__(self, address: int, handle: Adapter, nic: EmulatedNic) -> None:
        self.address = address
        self.adapter_handle = handle
        self.nic = nic
        self.state = MP_PAUSED
        self.packet_filter = NDIS_PACKET_TYPE_DIRECTED | NDIS_PACKET_TYPE_ALL_MULTICAST | NDIS_PACKET_TYPE_BROADCAST
        self.lookahead = nic.mtu
        self.multicast_list: list[bytes] = []
        self.rx_pool: Any = None
        self.rcbs: list[MpRcb] = []
        self.interrupt: Any = None
        self.tx_wait: deque[tuple[Any, Any, list[tuple[int, int, int]], int, int, int]] = deque()
        self.sends_outstanding = 0  # NBLs accepted and not yet completed
        self.rx_outstanding = 0  # NBLs indicated and not yet returned
        self.pause_pending = False
        self.counters = handle.counters
        self.moderation_kept: tuple[int, str | int] | None = None  # what OID_GEN_INTERRUPT_MODERATION disabled


# --- DriverEntry / unload --------------------------------------------------------------------

@kroutine("netvmini")
def DriverEntry(DriverObject: Any, RegistryPath: str) -> int:
    chars = NDIS_MINIPORT_DRIVER_CHARACTERISTICS(
        InitializeHandlerEx=MPInitializeEx, HaltHandlerEx=MPHaltEx, UnloadHandler=DriverUnload,
        PauseHandler=MPPause, RestartHandler=MPRestart, OidRequestHandler=MPOidRequest,
        SendNetBufferListsHandler=MPSendNetBufferLists, ReturnNetBufferListsHandler=MPReturnNetBufferLists,
        CancelSendHandler=MPCancelSend, ShutdownHandlerEx=MPShutdownEx)
    status, handle = NdisMRegisterMiniportDriver(DriverObject, RegistryPath, None, chars)
    if status == NDIS_STATUS_SUCCESS:
        DriverObject.extension["NdisMiniportDriverHandle"] = handle
        DriverObject.driver_unload = DriverUnload
    return status


@kroutine("netvmini")
def DriverUnload(DriverObject: Any) -> None:
    handle = DriverObject.extension.pop("NdisMiniportDriverHandle", None)
    if handle is not None:
        NdisMDeregisterMiniportDriver(handle)


NETVMINI_IMAGE = DriverImage(name="netvmini", module="netvmini", driver_entry=DriverEntry, image="netvmini.sys",
                             size=0x20000, pool_tags=(TAG_ADAPTER, TAG_RX_BUFFER, TAG_RX_POOL),
                             description="Virtual miniport for the emulated NIC")


# --- initialize / halt ---------------------------------------------------------------------------

@kroutine("netvmini")
def MPInitializeEx(MiniportAdapterHandle: Adapter, MiniportDriverContext: Any, MiniportInitParameters: Any) -> int:
    handle = MiniportAdapterHandle
    nic: EmulatedNic = MiniportInitParameters.AllocatedResources
    va = NdisAllocateMemoryWithTagPriority(handle, MpAdapter.POOL_SIZE, TAG_ADAPTER)
    if not va:
        return NDIS_STATUS_RESOURCES
    ctx = MpAdapter(va, handle, nic)
    handle.kernel.addr_objects[va] = ctx
    NdisMSetMiniportAttributes(handle, NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES(MiniportAdapterContext=ctx))
    speed = nic.link_speed_bps
    NdisMSetMiniportAttributes(handle, NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES(
        MediaType=NdisMedium802_3, MtuSize=nic.mtu, MaxXmitLinkSpeed=speed, XmitLinkSpeed=speed,
        MaxRcvLinkSpeed=speed, RcvLinkSpeed=speed, LookaheadSize=nic.mtu, PermanentMacAddress=nic.permanent_mac,
        CurrentMacAddress=nic.mac, SupportedPacketFilters=SUPPORTED_FILTERS, SupportedOidList=SUPPORTED_OIDS))
    NdisMSetMiniportAttributes(handle, NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES(
        DefaultOffloadConfiguration=_current_offload(nic), HardwareOffloadCapabilities=_hardware_offload(nic)))
    nic.receive_filter = ctx.packet_filter
    ctx.rx_pool = NdisAllocateNetBufferListPool(handle, NET_BUFFER_LIST_POOL_PARAMETERS(
        fAllocateNetBuffer=True, PoolTag=TAG_RX_POOL))
    size = nic.max_frame_size
    for _ in range(nic.rx_ring_size):
        buf = NdisAllocateMemoryWithTagPriority(handle, size, TAG_RX_BUFFER)
        if not buf:
            return NDIS_STATUS_RESOURCES
        mdl = NdisAllocateMdl(handle, buf, size)
        nbl = NdisAllocateNetBufferAndNetBufferList(ctx.rx_pool, 0, 0, mdl, 0, size) if mdl is not None else None
        if nbl is None:  # MPHaltEx is not called after a failed initialize: give this one back here
            if mdl is not None:
                NdisFreeMdl(mdl)
            NdisFreeMemory(buf, size, 0, kernel=handle.kernel)
            return NDIS_STATUS_RESOURCES
        rcb = MpRcb(nbl, mdl, buf, size, build_sg_list(nbl.FirstNetBuffer))
        nbl.MiniportReserved[0] = rcb
        ctx.rcbs.append(rcb)
        nic.post_rx_buffer(rcb.sg, rcb)
    status, ctx.interrupt = NdisMRegisterInterruptEx(handle, ctx, NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS(
        InterruptHandler=MPInterrupt, InterruptDpcHandler=MPInterruptDPC))
    if status != NDIS_STATUS_SUCCESS:
        return status
    nic.enable_interrupts()
    return NDIS_STATUS_SUCCESS


@kroutine("netvmini")
def MPHaltEx(MiniportAdapterContext: MpAdapter, HaltAction: int) -> None:
    """Free everything MPInitializeEx allocated (the verifier checks on unload)."""
    ctx = MiniportAdapterContext
    nic = ctx.nic
    if ctx.interrupt is not None:
        NdisMDeregisterInterruptEx(ctx.interrupt)
        ctx.interrupt = None
    nic.reclaim_rx_buffers()
    nic.take_rx_completions()
    k = ctx.adapter_handle.kernel
    for rcb in ctx.rcbs:
        NdisFreeNetBufferList(rcb.nbl)
        NdisFreeMdl(rcb.mdl)
        NdisFreeMemory(rcb.va, rcb.size, 0, kernel=k)
    ctx.rcbs.clear()
    if ctx.rx_pool is not None:
        NdisFreeNetBufferListPool(ctx.rx_pool)
        ctx.rx_pool = None
    k.addr_objects.pop(ctx.address, None)
    NdisFreeMemory(ctx.address, MpAdapter.POOL_SIZE, 0, kernel=k)


@kroutine("netvmini")
def MPShutdownEx(MiniportAdapterContext: MpAdapter, ShutdownAction: int) -> None:
    MiniportAdapterContext.nic.disable_interrupts()


# --- pause / restart -------------------------------------------------------------------------------

@kroutine("netvmini")
def MPPause(MiniportAdapterContext: MpAdapter, MiniportPauseParameters: Any) -> int:
    """Stop sending and indicating; pend until every send is completed and every NBL returned."""
    ctx = MiniportAdapterContext
    ctx.state = MP_PAUSING
    _fail_waiting_sends(ctx, NDIS_STATUS_PAUSED)
    if ctx.sends_outstanding == 0 and ctx.rx_outstanding == 0:
        ctx.state = MP_PAUSED
        return NDIS_STATUS_SUCCESS
    ctx.pause_pending = True
    return NDIS_STATUS_PENDING


@kroutine("netvmini")
def MPRestart(MiniportAdapterContext: MpAdapter, MiniportRestartParameters: Any) -> int:
    ctx = MiniportAdapterContext
    ctx.state = MP_RUNNING
    ctx.pause_pending = False
    return NDIS_STATUS_SUCCESS


def _check_pause_done(ctx: MpAdapter) -> None:
    if ctx.pause_pending and ctx.sends_outstanding == 0 and ctx.rx_outstanding == 0:
        ctx.pause_pending = False
        ctx.state = MP_PAUSED
        NdisMPauseComplete(ctx.adapter_handle)


# --- send ------------------------------------------------------------------------------------------

@kroutine("netvmini")
def MPSendNetBufferLists(MiniportAdapterContext: MpAdapter, NetBufferLists: Any, PortNumber: int,
                         SendFlags: int) -> None:
    """Turn each NET_BUFFER into a transmit descriptor over its MDL pages, then ring the doorbell."""
    ctx = MiniportAdapterContext
    nic = ctx.nic
    failed_head = failed_tail = None
    max_frame = nic.max_frame_size
    nbl = NetBufferLists
    while nbl is not None:
        nxt = nbl.Next
        nbl.Next = None
        status = NDIS_STATUS_SUCCESS
        info = nbl.NetBufferListInfo
        csum_info = info[TcpIpChecksumNetBufferListInfo]
        lso_info = info[TcpLargeSendNetBufferListInfo]
        mss = 0
        lso_offset = 0
        if ctx.state != MP_RUNNING:
            status = NDIS_STATUS_PAUSED
        elif lso_info:
            mss = lso_mss(lso_info)
            lso_offset = lso_tcp_header_offset(lso_info)
            if lso_type(lso_info) != NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE or not nic.offloads.lso or mss == 0:
                status = NDIS_STATUS_INVALID_DATA
        csum = 0
        if csum_info and status == NDIS_STATUS_SUCCESS and nic.offloads.tx_checksum and (
                csum_info & (NDIS_CSUM_TX_IS_IPV4 | NDIS_CSUM_TX_IS_IPV6)):
            if csum_info & NDIS_CSUM_TX_IP_HEADER:
                csum |= TX_CSUM_IP
            if csum_info & NDIS_CSUM_TX_TCP:
                csum |= TX_CSUM_TCP
            if csum_info & NDIS_CSUM_TX_UDP:
                csum |= TX_CSUM_UDP
        count = 0
        if status == NDIS_STATUS_SUCCESS:
            limit = nic.lso_frame_limit if mss else max_frame
            nb = nbl.FirstNetBuffer
            while nb is not None:
                count += 1
                if nb.DataLength > limit or nb.DataLength == 0:
                    status = NDIS_STATUS_INVALID_LENGTH
                    break
                nb = nb.Next
            if count == 0:
                status = NDIS_STATUS_INVALID_LENGTH
        if status != NDIS_STATUS_SUCCESS:
            nbl.Status = status
            ctx.counters.send_failures += 1
            if failed_tail is None:
                failed_head = nbl
            else:
                failed_tail.Next = nbl
            failed_tail = nbl
            nbl = nxt
            continue
        nbl.Status = NDIS_STATUS_SUCCESS
        nbl.MiniportReserved[0] = count  # NBs still on the hardware
        ctx.sends_outstanding += 1
        nb = nbl.FirstNetBuffer
        wait = ctx.tx_wait
        while nb is not None:
            sg = build_sg_list(nb)
            if wait or not nic.post_tx(sg, (nbl, nb), csum=csum, lso_mss=mss, lso_tcp_header_offset=lso_offset):
                wait.append((nbl, nb, sg, csum, mss, lso_offset))
            nb = nb.Next
        nbl = nxt
    nic.ring_doorbell()
    if failed_head is not None:
        ctx.sends_outstanding += _chain_len(failed_head)  # completed below, like any other
        _complete_sends(ctx, failed_head, SendFlags & 1)


def _chain_len(nbl: Any) -> int:
    n = 0
    while nbl is not None:
        n += 1
        nbl = nbl.Next
    return n


def _complete_sends(ctx: MpAdapter, head: Any, flags: int) -> None:
    ctx.sends_outstanding -= _chain_len(head)
    NdisMSendNetBufferListsComplete(ctx.adapter_handle, head, flags)
    if ctx.pause_pending:
        _check_pause_done(ctx)


def _fail_waiting_sends(ctx: MpAdapter, status: int) -> None:
    """Complete NBLs still waiting for ring space (pause, cancel)."""
    if not ctx.tx_wait:
        return
    done: list[Any] = []
    for nbl, _nb, _sg, _csum, _mss, _off in ctx.tx_wait:
        nbl.Status = status
        nbl.MiniportReserved[0] -= 1
        if nbl.MiniportReserved[0] == 0:
            done.append(nbl)
    ctx.tx_wait.clear()
    _complete_list(ctx, done)


def _complete_list(ctx: MpAdapter, done: list[Any]) -> None:
    if not done:
        return
    for i, n in enumerate(done):
        n.Next = done[i + 1] if i + 1 < len(done) else None
    _complete_sends(ctx, done[0], NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL)


@kroutine("netvmini")
def MPCancelSend(MiniportAdapterContext: MpAdapter, CancelId: Any) -> None:
    """Complete waiting NBLs whose cancel ID matches with NDIS_STATUS_SEND_ABORTED."""
    ctx = MiniportAdapterContext
    keep: deque = deque()
    done: list[Any] = []
    for entry in ctx.tx_wait:
        nbl = entry[0]
        if nbl.NetBufferListInfo[NetBufferListCancelId] == CancelId:
            nbl.Status = NDIS_STATUS_SEND_ABORTED
            nbl.MiniportReserved[0] -= 1
            if nbl.MiniportReserved[0] == 0:
                done.append(nbl)
        else:
            keep.append(entry)
    ctx.tx_wait = keep
    _complete_list(ctx, done)


# --- interrupt ---------------------------------------------------------------------------------------

@kroutine("netvmini")
def MPInterrupt(MiniportInterruptContext: MpAdapter) -> tuple[bool, bool]:
    """ISR at DIRQL: acknowledge, mask the NIC (moderation) and ask for the DPC."""
    ctx = MiniportInterruptContext
    nic = ctx.nic
    cause = nic.read_interrupt_cause()
    if not cause & (INT_RX | INT_TX):
        return False, False
    nic.disable_interrupts()
    return True, True


@kroutine("netvmini")
def MPInterruptDPC(MiniportInterruptContext: MpAdapter, MiniportDpcContext: Any, ReceiveThrottleParameters: Any,
                   NdisReserved2: Any) -> None:
    """Drain the completions (receives up to NDIS's quota), refill the ring, unmask."""
    ctx = MiniportInterruptContext
    nic = ctx.nic
    quota = ReceiveThrottleParameters.MaxNblsToIndicate if ReceiveThrottleParameters is not None else None
    _drain_tx(ctx)
    _drain_rx(ctx, None if quota is None or quota >= 0xFFFFFFFF else quota)
    nic.enable_interrupts()
    if nic.rx_pending_completions:  # over the quota: the rest waits on the ring for the next interrupt
        ReceiveThrottleParameters.MoreNblsPending = True
        nic.request_interrupt(INT_RX)


def _drain_tx(ctx: MpAdapter) -> None:
    nic = ctx.nic
    c = ctx.counters
    done: list[Any] = []
    for comp in nic.take_tx_completions():
        nbl, _nb = comp.cookie
        if comp.status == "ok":
            c.frames_out += comp.frames
            c.bytes_out += comp.length
        else:
            c.drops[comp.status] += 1
            if comp.status in (DROP_TX_OVERSIZE, DROP_TX_MALFORMED):
                nbl.Status = NDIS_STATUS_INVALID_LENGTH if comp.status == DROP_TX_OVERSIZE else NDIS_STATUS_FAILURE
            elif comp.status == DROP_LINK_DOWN:
                c.frames_out += comp.frames
        left = nbl.MiniportReserved[0] - 1
        nbl.MiniportReserved[0] = left
        if left == 0:
            if nbl.NetBufferListInfo[TcpLargeSendNetBufferListInfo]:
                nbl.NetBufferListInfo[TcpLargeSendNetBufferListInfo] = lso_v2_complete_info()
            done.append(nbl)
    wait = ctx.tx_wait
    if wait:
        while wait and nic.tx_free > 0:
            nbl, nb, sg, csum, mss, off = wait.popleft()
            nic.post_tx(sg, (nbl, nb), csum=csum, lso_mss=mss, lso_tcp_header_offset=off)
        nic.ring_doorbell()
    if done:  # (most interrupts of a request/response exchange complete no send)
        _complete_list(ctx, done)


def _drain_rx(ctx: MpAdapter, limit: int | None = None) -> None:
    nic = ctx.nic
    completions = nic.take_rx_completions(limit)
    if not completions:
        return
    c = ctx.counters
    if ctx.state != MP_RUNNING:
        c.drops["paused"] += len(completions)
        for comp in completions:
            nic.post_rx_buffer(comp.cookie.sg, comp.cookie)
            if comp.rsc is not None:
                for rcb, _length in comp.rsc.extra:
                    nic.post_rx_buffer(rcb.sg, rcb)
        return
    low = nic.rx_posted < max(1, nic.rx_ring_size // LOW_RX_FRACTION)
    adapter_handle = ctx.adapter_handle
    head = prev = None
    for comp in completions:
        rcb = comp.cookie
        nbl = rcb.nbl
        # NDIS requires SourceHandle = MiniportAdapterHandle on every indicated NBL.
        nbl.SourceHandle = adapter_handle
        nb = nbl.FirstNetBuffer
        unit = comp.rsc
        if unit is not None and unit.segments > 1:
            _chain_coalesced(rcb, comp.length, unit)
            nb.DataLength = comp.length + unit.extra_bytes
            nbl.NetBufferListInfo[TcpIpChecksumNetBufferListInfo] = comp.checksum | NDIS_CSUM_RX_TCP_VALUE_INVALID
            c.frames_in += unit.segments - 1
            c.bytes_in += unit.extra_bytes
        else:
            nb.DataLength = comp.length
            info = nbl.NetBufferListInfo
            info[TcpIpChecksumNetBufferListInfo] = comp.checksum
            if info[TcpRecvSegCoalesceInfo]:  # this NBL carried a coalesced unit last time
                info[TcpRecvSegCoalesceInfo] = info[RscTcpTimestampDelta] = 0
        nbl.Status = NDIS_STATUS_SUCCESS
        nbl.Next = None
        if prev is None:
            head = nbl
        else:
            prev.Next = nbl
        prev = nbl
        c.frames_in += 1
        c.bytes_in += comp.length
    flags = NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL | (NDIS_RECEIVE_FLAGS_RESOURCES if low else 0)
    if not low:
        ctx.rx_outstanding += len(completions)
    NdisMIndicateReceiveNetBufferLists(ctx.adapter_handle, head, 0, len(completions), flags)
    if low:  # the NBLs are ours again: repost at once
        for comp in completions:
            _repost(ctx, comp.cookie)


def _chain_coalesced(rcb: MpRcb, first_length: int, unit: Any) -> None:
    """Describe an RSC unit as one NET_BUFFER: the first buffer's MDL, then each joined buffer's."""
    nbl = rcb.nbl
    mdl = rcb.mdl
    mdl.byte_count = first_length  # the chain continues right after the first segment
    chained = rcb.chained
    for other, length in unit.extra:
        nxt = other.mdl
        nxt.byte_count = length
        mdl.next = nxt
        mdl = nxt
        chained.append(other)
    info = nbl.NetBufferListInfo
    info[TcpRecvSegCoalesceInfo] = rsc_info(unit.segments, unit.dup_acks)
    info[RscTcpTimestampDelta] = unit.timestamp_delta


def _repost(ctx: MpAdapter, rcb: MpRcb) -> None:
    nb = rcb.nbl.FirstNetBuffer
    if nb._retreats:
        _undo_retreats(nb)
    if rcb.chained:  # an RSC unit comes back: give every buffer of its chain back to the ring
        rcb.mdl.byte_count = rcb.size
        rcb.mdl.next = None
        chained, rcb.chained = rcb.chained, []
        batch = []
        for other in chained:
            mdl = other.mdl
            mdl.byte_count = other.size
            mdl.next = None
            batch.append((other.sg, other.size, other))
        batch.append((rcb.sg, rcb.size, rcb))  # the unit's first buffer goes back last, as before
        nb.set_data(rcb.mdl, 0, rcb.size)
        rcb.nbl.Next = None
        ctx.nic.post_rx_buffers(batch)
        return
    nb.set_data(rcb.mdl, 0, rcb.size)
    rcb.nbl.Next = None
    ctx.nic.post_rx_buffer(rcb.sg, rcb)


@kroutine("netvmini")
def MPReturnNetBufferLists(MiniportAdapterContext: MpAdapter, NetBufferLists: Any, ReturnFlags: int) -> None:
    """The protocols are done with indicated NBLs: put their buffers back on the receive ring."""
    ctx = MiniportAdapterContext
    nbl = NetBufferLists
    while nbl is not None:
        nxt = nbl.Next
        _repost(ctx, nbl.MiniportReserved[0])
        ctx.rx_outstanding -= 1
        nbl = nxt
    if ctx.pause_pending:
        _check_pause_done(ctx)


# --- OIDs ------------------------------------------------------------------------------------------

def _ulong(v: int) -> bytes:
    return (v & 0xFFFFFFFF).to_bytes(4, "little")


def _ulong64(v: int) -> bytes:
    return (v & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")


def _current_offload(nic: EmulatedNic) -> NDIS_OFFLOAD:
    o = nic.offloads
    tx = NDIS_OFFLOAD_SUPPORTED if o.tx_checksum else 0
    rx = NDIS_OFFLOAD_SUPPORTED if o.rx_checksum else 0
    lso_size = o.lso_max_size if o.lso else 0
    lso_min = o.lso_min_segments if o.lso else 0
    return NDIS_OFFLOAD(
        Checksum=NDIS_TCP_IP_CHECKSUM_OFFLOAD(
            IPv4Transmit=NDIS_CHECKSUM_V4(TcpChecksum=tx, UdpChecksum=tx, IpChecksum=tx),
            IPv4Receive=NDIS_CHECKSUM_V4(TcpChecksum=rx, UdpChecksum=rx, IpChecksum=rx),
            IPv6Transmit=NDIS_CHECKSUM_V6(TcpChecksum=tx, UdpChecksum=tx),
            IPv6Receive=NDIS_CHECKSUM_V6(TcpChecksum=rx, UdpChecksum=rx)),
        LsoV2=NDIS_TCP_LARGE_SEND_OFFLOAD_V2(
            IPv4=NDIS_LSOV2_IPV4(MaxOffLoadSize=lso_size, MinSegmentCount=lso_min),
            IPv6=NDIS_LSOV2_IPV6(MaxOffLoadSize=lso_size, MinSegmentCount=lso_min)),
        Rsc=NDIS_TCP_RECV_SEG_COALESCE_OFFLOAD(IPv4=NDIS_RSC_ENABLED(o.rsc), IPv6=NDIS_RSC_ENABLED(o.rsc)))


def _hardware_offload(nic: EmulatedNic) -> NDIS_OFFLOAD:
    s = NDIS_OFFLOAD_SUPPORTED
    size = nic.offloads.lso_max_size
    return NDIS_OFFLOAD(
        Checksum=NDIS_TCP_IP_CHECKSUM_OFFLOAD(
            IPv4Transmit=NDIS_CHECKSUM_V4(TcpChecksum=s, UdpChecksum=s, IpChecksum=s),
            IPv4Receive=NDIS_CHECKSUM_V4(TcpChecksum=s, UdpChecksum=s, IpChecksum=s),
            IPv6Transmit=NDIS_CHECKSUM_V6(TcpChecksum=s, UdpChecksum=s),
            IPv6Receive=NDIS_CHECKSUM_V6(TcpChecksum=s, UdpChecksum=s)),
        LsoV2=NDIS_TCP_LARGE_SEND_OFFLOAD_V2(IPv4=NDIS_LSOV2_IPV4(MaxOffLoadSize=size, MinSegmentCount=2),
                                             IPv6=NDIS_LSOV2_IPV6(MaxOffLoadSize=size, MinSegmentCount=2)),
        Rsc=NDIS_TCP_RECV_SEG_COALESCE_OFFLOAD(IPv4=NDIS_RSC_ENABLED(True), IPv6=NDIS_RSC_ENABLED(True)))


def _statistics(ctx: MpAdapter) -> NDIS_STATISTICS_INFO:
    c = ctx.counters
    nic = ctx.nic
    return NDIS_STATISTICS_INFO(
        SupportedStatistics=0x3FFFFF, ifInDiscards=sum(nic.counters.drops.values()) + c.drops["paused"],
        ifInErrors=nic.counters.drops["runt"] + nic.counters.drops["oversize"], ifHCInOctets=c.bytes_in,
        ifHCInUcastPkts=c.frames_in, ifHCOutOctets=c.bytes_out, ifHCOutUcastPkts=c.frames_out,
        ifOutErrors=c.send_failures, ifOutDiscards=sum(v for k, v in c.drops.items() if k.startswith("tx_")))


def _query(ctx: MpAdapter, oid: int) -> bytes | object | None:
    nic = ctx.nic
    c = ctx.counters
    if oid == OID_GEN_CURRENT_PACKET_FILTER:
        return _ulong(ctx.packet_filter)
    if oid == OID_802_3_CURRENT_ADDRESS:
        return nic.mac
    if oid == OID_802_3_PERMANENT_ADDRESS:
        return nic.permanent_mac
    if oid == OID_GEN_LINK_SPEED:
        return _ulong(nic.link_speed_bps // 100)  # in units of 100 bps
    if oid == OID_GEN_MAXIMUM_FRAME_SIZE:
        return _ulong(nic.mtu)
    if oid == OID_GEN_MAXIMUM_TOTAL_SIZE:
        return _ulong(nic.max_frame_size)
    if oid in (OID_GEN_MAXIMUM_LOOKAHEAD, OID_GEN_CURRENT_LOOKAHEAD):
        return _ulong(ctx.lookahead)
    if oid == OID_GEN_MEDIA_CONNECT_STATUS:
        return _ulong(0 if nic.media_connected else 1)  # NdisMediaStateConnected / Disconnected
    if oid in (OID_GEN_MEDIA_SUPPORTED, OID_GEN_MEDIA_IN_USE):
        return _ulong(NdisMedium802_3)
    if oid == OID_GEN_HARDWARE_STATUS:
        return _ulong(0)
    if oid == OID_GEN_VENDOR_ID:
        return _ulong(NIC_VENDOR_ID)
    if oid == OID_GEN_VENDOR_DESCRIPTION:
        return NIC_VENDOR_DESCRIPTION
    if oid == OID_GEN_SUPPORTED_LIST:
        return b"".join(_ulong(o) for o in SUPPORTED_OIDS)
    if oid == OID_802_3_MAXIMUM_LIST_SIZE:
        return _ulong(32)
    if oid == OID_802_3_MULTICAST_LIST:
        return b"".join(ctx.multicast_list)
    if oid == OID_GEN_XMIT_OK:
        return _ulong64(c.frames_out)
    if oid == OID_GEN_RCV_OK:
        return _ulong64(c.frames_in)
    if oid == OID_GEN_XMIT_ERROR:
        return _ulong64(c.send_failures)
    if oid == OID_GEN_RCV_ERROR:
        return _ulong64(nic.counters.drops["runt"] + nic.counters.drops["oversize"])
    if oid == OID_GEN_RCV_NO_BUFFER:
        return _ulong64(nic.counters.drops["no_rx_buffer"])
    if oid == OID_GEN_STATISTICS:
        return _statistics(ctx)
    if oid == OID_TCP_OFFLOAD_CURRENT_CONFIG:
        return _current_offload(nic)
    if oid == OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES:
        return _hardware_offload(nic)
    if oid == OID_GEN_INTERRUPT_MODERATION:
        return query_interrupt_moderation(nic)
    return None


def _set(ctx: MpAdapter, request: NDIS_OID_REQUEST) -> int:
    oid = request.Oid
    data = request.InformationBuffer
    nic = ctx.nic
    if oid == OID_GEN_CURRENT_PACKET_FILTER:
        raw = bytes(data or b"")
        if len(raw) < 4:
            request.BytesNeeded = 4
            return NDIS_STATUS_INVALID_LENGTH
        value = int.from_bytes(raw[:4], "little")
        if value & ~SUPPORTED_FILTERS:
            return NDIS_STATUS_NOT_SUPPORTED
        ctx.packet_filter = value
        nic.receive_filter = value
        request.BytesRead = 4
        return NDIS_STATUS_SUCCESS
    if oid == OID_GEN_CURRENT_LOOKAHEAD:
        raw = bytes(data or b"")
        if len(raw) < 4:
            request.BytesNeeded = 4
            return NDIS_STATUS_INVALID_LENGTH
        ctx.lookahead = min(int.from_bytes(raw[:4], "little"), nic.mtu)
        request.BytesRead = 4
        return NDIS_STATUS_SUCCESS
    if oid == OID_802_3_MULTICAST_LIST:
        raw = bytes(data or b"")
        if len(raw) % 6:
            return NDIS_STATUS_INVALID_LENGTH
        if len(raw) // 6 > 32:
            return 0xC0010009  # NDIS_STATUS_MULTICAST_FULL
        ctx.multicast_list = [raw[i:i + 6] for i in range(0, len(raw), 6)]
        request.BytesRead = len(raw)
        return NDIS_STATUS_SUCCESS
    if oid == OID_TCP_OFFLOAD_PARAMETERS:
        if not isinstance(data, NDIS_OFFLOAD_PARAMETERS):
            return NDIS_STATUS_INVALID_DATA
        _apply_offload_parameters(nic, data)
        ctx.adapter_handle.offload = NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES(
            DefaultOffloadConfiguration=_current_offload(nic), HardwareOffloadCapabilities=_hardware_offload(nic))
        NdisMIndicateStatusEx(ctx.adapter_handle, NDIS_STATUS_INDICATION(
            SourceHandle=ctx.adapter_handle, StatusCode=NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG,
            StatusBuffer=_current_offload(nic)))
        return NDIS_STATUS_SUCCESS
    if oid == OID_GEN_INTERRUPT_MODERATION:
        return set_interrupt_moderation(ctx, request)
    if oid in SUPPORTED_OIDS:
        return NDIS_STATUS_NOT_SUPPORTED  # a query-only OID
    return NDIS_STATUS_INVALID_OID


def _apply_offload_parameters(nic: EmulatedNic, p: NDIS_OFFLOAD_PARAMETERS) -> None:
    o = nic.offloads
    for value in (p.IPv4Checksum, p.TCPIPv4Checksum, p.UDPIPv4Checksum, p.TCPIPv6Checksum, p.UDPIPv6Checksum):
        if value == NDIS_OFFLOAD_PARAMETERS_NO_CHANGE:
            continue
        o.tx_checksum = value in (NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED, NDIS_OFFLOAD_PARAMETERS_TX_ENABLED_RX_DISABLED)
        o.rx_checksum = value in (NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED, NDIS_OFFLOAD_PARAMETERS_RX_ENABLED_TX_DISABLED)
    for value in (p.LsoV2IPv4, p.LsoV2IPv6):
        if value == NDIS_OFFLOAD_PARAMETERS_LSOV2_ENABLED:
            o.lso = True
        elif value == NDIS_OFFLOAD_PARAMETERS_LSOV2_DISABLED:
            o.lso = False
    for value in (p.RscIPv4, p.RscIPv6):  # one engine serves both versions here
        if value == NDIS_OFFLOAD_PARAMETERS_RSC_ENABLED:
            o.rsc = True
        elif value == NDIS_OFFLOAD_PARAMETERS_RSC_DISABLED:
            o.rsc = False


@kroutine("netvmini")
def MPOidRequest(MiniportAdapterContext: MpAdapter, NdisOidRequest: NDIS_OID_REQUEST) -> int:
    ctx = MiniportAdapterContext
    request = NdisOidRequest
    if request.RequestType == NdisRequestMethod:
        return NDIS_STATUS_NOT_SUPPORTED
    if request.RequestType == NdisRequestSetInformation:
        return _set(ctx, request)
    result = _query(ctx, request.Oid)
    if result is None:
        return NDIS_STATUS_INVALID_OID if request.Oid not in SUPPORTED_OIDS else NDIS_STATUS_NOT_SUPPORTED
    if isinstance(result, (bytes, bytearray)):
        needed = len(result)
        if request.InformationBufferLength and request.InformationBufferLength < needed:
            request.BytesNeeded = needed
            return NDIS_STATUS_BUFFER_TOO_SHORT
        buf = request.InformationBuffer
        if isinstance(buf, (bytearray, memoryview)) and len(buf) >= needed:
            buf[:needed] = result
        else:
            request.InformationBuffer = bytes(result)
        request.BytesWritten = needed
    else:
        request.InformationBuffer = result
        request.BytesWritten = 1
    return NDIS_STATUS_SUCCESS

