"""One host's TCP/IP stack: the layers, their pools and counters, and the NDIS edge.

`TcpipStack` is created by the tcpip driver's DriverEntry and lives in
`kernel.extensions["tcpip"]`.  Everything that touches NDIS is in this module
(send NBLs, send completion, receive indication, returning NBLs), so the
layers above speak only in `TxPacket`/`RxFrame`.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import TYPE_CHECKING, Any

from stack.kernel import STATUS_NOT_FOUND, STATUS_PENDING, STATUS_SUCCESS, kroutine
from stack.kernel.mdl import mdl_chain_physical_addresses
from stack.kernel.memory import NO_PHYSICAL_ADDRESS, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE
from stack.ndis import (NDIS_RECEIVE_FLAGS_RESOURCES, NDIS_RETURN_FLAGS_DISPATCH_LEVEL,
                        NDIS_SEND_FLAGS_DISPATCH_LEVEL, TcpIpChecksumNetBufferListInfo,
                        TcpLargeSendNetBufferListInfo, NdisAllocateNetBufferAndNetBufferList, NdisFreeNetBufferList,
                        NdisReturnNetBufferLists, NdisSendNetBufferLists, csum_tx_info, lso_v2_info)
from stack.ndis.constants import (NDIS_STATUS_NAMES, NDIS_STATUS_SUCCESS, NDIS_CSUM_RX_IP_FAILED, NDIS_CSUM_RX_IP_SUCCEEDED, NDIS_CSUM_RX_TCP_SUCCEEDED, NDIS_CSUM_RX_UDP_SUCCEEDED,
                                  TcpRecvSegCoalesceInfo, rsc_coalesced_segments)

from .addr import AF_INET, AF_INET6, AF_UNSPEC, IpAddress
from .counters import ProtocolCounters
from .events import PacketDropped
from .icmp import IcmpLayer
from .ip import (ETH_HEADER, Interface, IpLayer, IppReceiveHeaderBatch, LoopbackInterface, MdlPool, RxFrame, SlotPool,
                 TxPacket)
from .route import RouteTable
from .tcp import TcpConfig
from .tcp_glue import TcpLayer
from .transport import ResolveComplete, Transport
from .udp import UdpLayer
from .wire.ipv4 import IPPROTO_TCP, IPPROTO_UDP

if TYPE_CHECKING:
    from stack.kernel.kernel import Kernel


class TcpipStack:
    def __init__(self, kernel: "Kernel", tcp_config: TcpConfig | None = None) -> None:
        self.kernel = kernel
        self.counters = ProtocolCounters()
        self.routes = RouteTable()
        self.interfaces: list[Interface] = []
        self.loopback = LoopbackInterface(self)  # local delivery, never bound to NDIS
        self.slot_pool = SlotPool()
        self.mdl_pool = MdlPool()
        self.ip = IpLayer(self)
        self.icmp = IcmpLayer(self)
        self.udp = UdpLayer(self)
        self.tcp = TcpLayer(self, tcp_config)
        self.transport = Transport(self)
        self.protocol_handle: Any = None
        self.nbl_pool: Any = None
        # address configuration waiting for its adapter to bind: MAC -> (ipv4, ipv6, gateway4, gateway6)
        self.pending_config: dict[bytes, dict[str, str | None]] = {}

    # -- addresses ---------------------------------------------------------------------------
    def is_local_address(self, address: IpAddress) -> bool:
        """One of our interfaces' addresses, or a loopback address (127.0.0.0/8, ::1)."""
        packed = address.packed
        for iface in self.interfaces:
            if packed == iface.v4 or packed == iface.v6:
                return True
        return address.is_loopback

    def local_addresses(self) -> list[IpAddress]:
        out: list[IpAddress] = []
        for iface in self.interfaces:
            if iface.ipv4 is not None:
                out.append(iface.ipv4.ip)
            if iface.ipv6 is not None:
                out.append(iface.ipv6.ip)
        return out

    def configure(self, iface: Interface, ipv4: str | None, ipv6: str | None,
                  gateway4: str | None = None, gateway6: str | None = None) -> None:
        """Give an interface its addresses; on-link prefixes (and default routes) follow."""
        if ipv4:
            iface.set_ipv4(ipv4)
            self.routes.add(iface.ipv4.network, iface)  # type: ignore[union-attr]
            if gateway4:
                self.routes.add("0.0.0.0/0", iface, IPv4Address(gateway4))
        if ipv6:
            iface.set_ipv6(ipv6)
            self.routes.add(iface.ipv6.network, iface)  # type: ignore[union-attr]
            if gateway6:
                self.routes.add("::/0", iface, IPv6Address(gateway6))
        self.ip.invalidate_paths()

    # -- drops -------------------------------------------------------------------------------
    def drop(self, layer: str, reason: str, detail: str = "") -> None:
        """Count a frame dropped at `layer` for `reason` (and tell the bus)."""
        self.counters.drops[(layer, reason)] += 1
        k = self.kernel
        if k.bus.subscribers:
            k.bus.publish(PacketDropped(host=k.name, depth=len(k.frames), layer=layer, reason=reason, detail=detail))

    # -- names -------------------------------------------------------------------------------
    def resolve(self, name: str, completion: ResolveComplete, family: int) -> int:
        def wanted(addresses: list[IpAddress]) -> list[IpAddress]:
            if family == AF_INET:
                return [a for a in addresses if a.version == 4]
            if family == AF_INET6:
                return [a for a in addresses if a.version == 6]
            return addresses

        try:
            literal = ip_address(name.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            found = wanted([literal])
        else:
            found = wanted(self.transport.hosts.get(name.lower().rstrip("."), []))
        if found:
            completion(STATUS_SUCCESS, found)
            return STATUS_SUCCESS
        resolver = self.transport.resolver
        if literal is None and resolver is not None:
            return resolver(name, family, completion)
        completion(STATUS_NOT_FOUND, [])
        return STATUS_NOT_FOUND

    # ==================================================================================
    # the NDIS edge
    # ==================================================================================
    def ndis_send(self, iface: Interface, packet: TxPacket, raw: bool = False) -> None:
        FlSendPackets(self, iface, packet, raw)

    def _build_and_send_nbl(self, iface: Interface, packet: TxPacket, raw: bool) -> None:
        header = packet.slot.mdl
        header_length = packet.l4_offset + packet.l4_length
        header.byte_count = header_length
        previous = header
        for mdl in packet.payload_mdls:
            previous.next = mdl
            previous = mdl
        previous.next = None
        total = header_length + packet.payload_length
        nbl = NdisAllocateNetBufferAndNetBufferList(iface.nbl_pool, 0, 0, header, 0, total)
        if nbl is None:
            # As a send the miniport refused: the pages are free again and the sender hears
            # so (TCP completes the client's send once its data is acknowledged after a
            # retransmission; a lost datagram is just lost).
            self.drop("ndis", "no_nbl")
            self.release_packet(packet)
            if packet.on_complete is not None:
                packet.on_complete(packet)
            return
        nbl.ProtocolReserved[0] = packet
        if packet.lso_mss and not raw:
            # LSO whether or not checksum offload is on: the NIC computes each segment's checksums.
            nbl.NetBufferListInfo[TcpLargeSendNetBufferListInfo] = lso_v2_info(
                packet.lso_mss, packet.l4_offset, ipv6=packet.path.version == 6)
            self.counters.lso_sends += 1
        elif not raw and packet.checksum_offload:
            path = packet.path
            nbl.NetBufferListInfo[TcpIpChecksumNetBufferListInfo] = csum_tx_info(
                ipv4=path.version == 4, ipv6=path.version == 6, tcp=packet.protocol == IPPROTO_TCP,
                udp=packet.protocol == IPPROTO_UDP, tcp_header_offset=packet.l4_offset)
            self.counters.checksum_offload_sends += 1
        NdisSendNetBufferLists(iface.binding, nbl, 0, NDIS_SEND_FLAGS_DISPATCH_LEVEL
                               if self.kernel.irql >= 2 else 0)

    def send_complete(self, nbls: Any) -> None:
        """ProtocolSendNetBufferListsComplete: the NBLs (and the pages they describe) are ours again."""
        nbl = nbls
        while nbl is not None:
            following = nbl.Next
            nbl.Next = None
            packet: TxPacket | None = nbl.ProtocolReserved[0]
            nbl.ProtocolReserved[0] = None
            if nbl.Status != NDIS_STATUS_SUCCESS:  # the miniport refused it: never silently lost
                self.drop("ndis", "send_failed", NDIS_STATUS_NAMES.get(nbl.Status & 0xFFFFFFFF, hex(nbl.Status)))
            NdisFreeNetBufferList(nbl)
            if packet is not None:
                self.release_packet(packet)
                if packet.on_complete is not None:
                    packet.on_complete(packet)
            nbl = following

    def release_packet(self, packet: TxPacket) -> None:
        slot = packet.slot
        if slot is None:
            return
        packet.slot = None  # type: ignore[assignment]
        self.slot_pool.put(slot)
        pool = self.mdl_pool
        for mdl in packet.payload_mdls:
            pool.put(mdl)
        packet.payload_mdls = []

    def receive_indication(self, iface: Interface, nbls: Any, flags: int) -> None:
        IpFlcReceivePreValidatedPackets(self, iface, nbls, flags)

    def _receive_chain(self, iface: Interface, nbls: Any, flags: int) -> None:
        resources = bool(flags & NDIS_RECEIVE_FLAGS_RESOURCES)
        ip = self.ip
        to_return: list[Any] = []
        nbl = nbls
        while nbl is not None:
            following = nbl.Next
            info = nbl.NetBufferListInfo[TcpIpChecksumNetBufferListInfo] or 0
            ok = bool(info & (NDIS_CSUM_RX_TCP_SUCCEEDED | NDIS_CSUM_RX_UDP_SUCCEEDED)) \
                and not info & NDIS_CSUM_RX_IP_FAILED
            rx = RxFrame(iface, nbl, resources, ok, bool(info & NDIS_CSUM_RX_IP_SUCCEEDED))
            nb = nbl.FirstNetBuffer
            rsc = nbl.NetBufferListInfo[TcpRecvSegCoalesceInfo]
            while nb is not None:
                if rsc:  # an RSC unit: views and physical addresses in one walk of its MDL chain
                    unit = _unit_runs(nb)
                    if unit is not None:
                        views, pas = unit
                        rx.frame_pa = pas[0]
                        rx.tail_pas = tuple(pas[1:])
                        IppReceiveHeaderBatch(ip, rx, views[0], tuple(views[1:]), rsc_coalesced_segments(rsc))
                        nb = nb.Next
                        continue
                else:  # a frame in one receive buffer (the usual case): its view and address at once
                    run = _frame_run(nb)
                    if run is not None:
                        frame, rx.frame_pa = run
                        IppReceiveHeaderBatch(ip, rx, frame)
                        nb = nb.Next
                        continue
                views = nb.views()
                if len(views) == 1:
                    frame = views[0]
                    rx.frame_pa = _frame_physical_address(nb)
                elif nbl.NetBufferListInfo[TcpRecvSegCoalesceInfo]:
                    # An RSC unit: headers in the first buffer, the other segments' payload in the
                    # rest - handed up as scatter-gather, never joined.
                    _unit_physical_addresses(rx, nb, views)
                    ip.receive_coalesced(rx, views, rsc_coalesced_segments(
                        nbl.NetBufferListInfo[TcpRecvSegCoalesceInfo]))
                    nb = nb.Next
                    continue
                else:  # a frame split over buffers: linearize it (a counted copy)
                    joined = b"".join(views)
                    self.kernel.copies.count(len(joined), "rx frame linearize")
                    frame = memoryview(joined)
                    rx.frame_pa = NO_PHYSICAL_ADDRESS
                ip.receive_frame(rx, frame)
                nb = nb.Next
            rx.indicating = False
            if rx.refs == 0:
                to_return.append(nbl)
            nbl = following
        if not resources and to_return:
            # one NdisReturnNetBufferLists for everything of this indication nobody kept
            for before, after in zip(to_return, to_return[1:]):
                before.Next = after
            to_return[-1].Next = None
            NdisReturnNetBufferLists(iface.binding, to_return[0], NDIS_RETURN_FLAGS_DISPATCH_LEVEL
                                     if self.kernel.irql >= 2 else 0)

    def ndis_return(self, iface: Interface, nbl: Any) -> None:
        nbl.Next = None
        NdisReturnNetBufferLists(iface.binding, nbl, NDIS_RETURN_FLAGS_DISPATCH_LEVEL if self.kernel.irql >= 2 else 0)


def _frame_physical_address(nb: Any) -> int:
    """Physical address of a NET_BUFFER's first data byte (its data is one physically contiguous run)."""
    mdl = nb.CurrentMdl
    at = mdl.byte_offset + nb.CurrentMdlOffset
    return (mdl.pfns[at >> PAGE_SHIFT] << PAGE_SHIFT) | (at & PAGE_MASK)


def _frame_run(nb: Any) -> tuple[memoryview, int] | None:
    """A NET_BUFFER's data as nb.views() gives it and its physical address (what
    _frame_physical_address works out), when it is one run inside one page of one MDL with its
    PFN array (a posted frame buffer); None: anything else, which takes the general way."""
    m = nb.CurrentMdl
    length = nb.DataLength
    if m is None or length <= 0:
        return None
    offset = nb.CurrentMdlOffset
    first = m.byte_offset
    at = first + offset
    within = at & PAGE_MASK
    pfns = m.pfns
    count = m.byte_count
    if (offset + length > count or within + length > PAGE_SIZE
            or len(pfns) < (first + count + PAGE_MASK) >> PAGE_SHIFT):
        return None  # runs on into the next MDL or page, or no PFN array to read (Mdl.views says which)
    pfn = pfns[at >> PAGE_SHIFT]
    phys = m.kernel.phys
    start = ((pfn - phys.base_pfn) << PAGE_SHIFT) + within
    return phys.view[start:start + length], (pfn << PAGE_SHIFT) | within


def _unit_runs(nb: Any) -> tuple[list[memoryview], list[int]] | None:
    """An RSC unit's data as nb.views() gives it, with each view's physical address (what
    _unit_physical_addresses works out from them), in one walk of the MDL chain - when every
    receive buffer's part of it lies inside one page (posted frame buffers do) and there are
    two or more.  None: anything else, which takes the general way."""
    m = nb.CurrentMdl
    length = nb.DataLength
    if m is None or m.next is None or length <= 0:
        return None
    phys = m.kernel.phys
    view = phys.view
    base_pa = phys.base_pfn << PAGE_SHIFT  # a run's physical address = its offset in phys.view + base_pa
    offset = nb.CurrentMdlOffset
    # The head buffer (the unit's headers and first payload): the NET_BUFFER may start inside it,
    # or past it.
    while offset >= m.byte_count:
        offset -= m.byte_count
        m = m.next
        if m is None:
            return None
    count = m.byte_count
    take = min(count - offset, length)
    at = m.byte_offset + offset
    within = at & PAGE_MASK
    pfns = m.pfns
    if within + take > PAGE_SIZE or len(pfns) < (m.byte_offset + count + PAGE_MASK) >> PAGE_SHIFT:
        return None  # spans pages, or no PFN array to read (Mdl.views says which)
    start = (pfns[at >> PAGE_SHIFT] << PAGE_SHIFT) + within - base_pa
    bounds = [start, start + take]  # each run's [start, end) in phys.view, flat
    length -= take
    m = m.next
    # The joined buffers: each MDL's data from its first byte, one page's worth at most.  A run
    # inside one page needs that page's PFN (an IndexError: no PFN array, as the check above).
    try:
        while length > 0 and m is not None:
            count = m.byte_count
            if count:
                at = m.byte_offset
                within = at & PAGE_MASK
                if within + count > PAGE_SIZE:
                    return None  # spans pages: the general way
                start = (m.pfns[at >> PAGE_SHIFT] << PAGE_SHIFT) + within - base_pa
                if count > length:
                    count = length
                bounds += (start, start + count)
                length -= count
            m = m.next
    except IndexError:
        return None
    if length > 0 or len(bounds) < 4:
        return None  # runs on past the chain, or one run only
    pairs = iter(bounds)
    return [view[a:b] for a, b in zip(pairs, pairs)], [a + base_pa for a in bounds[::2]]


def _unit_physical_addresses(rx: RxFrame, nb: Any, views: list[memoryview]) -> None:
    """An RSC unit's runs: the head buffer's address and its other receive buffers'."""
    pas = mdl_chain_physical_addresses(nb.CurrentMdl, nb.CurrentMdlOffset, views)
    rx.frame_pa = pas[0]
    rx.tail_pas = tuple(pas[1:])


@kroutine("tcpip")
def FlSendPackets(stack: TcpipStack, iface: Interface, packet: TxPacket, raw: bool) -> None:
    stack._build_and_send_nbl(iface, packet, raw)


@kroutine("tcpip")
def IpFlcReceivePreValidatedPackets(stack: TcpipStack, iface: Interface, nbls: Any, flags: int) -> None:
    stack._receive_chain(iface, nbls, flags)


_ = (ETH_HEADER, STATUS_PENDING, AF_UNSPEC)
