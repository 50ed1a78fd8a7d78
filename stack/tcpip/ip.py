"""The network layer: interfaces over NDIS bindings, IPv4/IPv6 send and receive, ARP and ND.

Send: a transport asks for a `TxPacket` (a header slot in nonpaged pool with its
own MDL), writes its L4 header into it, chains payload MDLs behind it, and calls
`IpLayer.send_packet`, which writes the IP header, resolves the next hop's MAC
(queueing while ARP/ND runs), writes the Ethernet header and hands one
NET_BUFFER_LIST to NDIS.  When NDIS completes the NBL the slot and the partial
MDLs go back to their pools and the transport hears about it.

Receive: NDIS indicates NBL chains; each frame is parsed in place (memoryviews
over the NIC's receive pages) and dispatched to ARP, ICMP, UDP or TCP.  Frames
that do not parse are dropped and counted under (layer, reason).  An NBL goes
back to the miniport when the indication is over, unless a transport holds it
(zero-copy data not yet taken by its client).

Fragments (either way) are fragment.py's: a UDP or ICMP datagram bigger than the
interface MTU leaves as fragments, and incoming fragments are reassembled and come
back through `_receive_v4`/`_receive_v6` as one datagram.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_address
from typing import TYPE_CHECKING, Any, Callable

from stack.kernel import DISPATCH_LEVEL, STATUS_HOST_UNREACHABLE, STATUS_SUCCESS, kroutine
from stack.kernel.ex import ExAllocatePoolWithTag, ExFreePoolWithTag
from stack.kernel.mdl import IoAllocateMdl, IoBuildPartialMdl, IoFreeMdl, Mdl, MmBuildMdlForNonPagedPool
from stack.kernel.memory import NO_PHYSICAL_ADDRESS
from stack.kernel.pool import NonPagedPoolNx
from stack.kernel.symbols import Frame

from .addr import AF_INET, AF_INET6, IpAddress
from .events import DatagramReceived, DatagramSent
from .neighbor import REACHABLE, NeighborCache, PendingPacket
from .wire import (ARP_REPLY, ARP_REQUEST, BROADCAST_MAC, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6,
                   ICMPV6_NEIGHBOR_ADVERTISEMENT, ICMPV6_NEIGHBOR_SOLICITATION, WireError, emit_arp, emit_ethernet,
                   emit_ipv4, emit_ipv6, multicast_mac_v6, parse_arp, parse_ethernet, parse_ipv4, parse_ipv6,
                   solicited_node_multicast)
from .wire.ethernet import ETHERNET_HEADER, ETHERNET_HEADER_LEN
from .wire.ipv4 import (FLAG_MF, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, emit_ipv4_own,
                        ipv4_address_sum)

if TYPE_CHECKING:
    from .stack import TcpipStack

ETH_HEADER = 14
SLOT_SIZE = 2048  # header slot: big enough for any header, and whole small packets
SLOT_TAG = "IpHd"
MDL_POOL_PAGES = 17  # a partial MDL for up to 64 KiB at any page offset
ALL_NODES_V6 = bytes.fromhex("ff020000000000000000000000000001")
IPV4_BROADCAST = b"\xff\xff\xff\xff"
LOOPBACK_MTU = 65535
LOOPBACK_COPY_REASON = "loopback buffer"
PAYLOAD_TAG = "IpDg"  # pool buffers for UDP/ICMP data too big for a header slot
LSO_V2_IP_LENGTH_LIMIT = 0xFFFF  # the largest send an IP length field holds


# --- pools --------------------------------------------------------------------------------

@dataclass(slots=True)
class HeaderSlot:
    va: int
    mdl: Mdl
    view: memoryview  # SLOT_SIZE bytes of the slot, zero copy


class SlotPool:
    """Header slots in nonpaged pool (two per page), each with a built MDL; grows by pages."""

    def __init__(self, initial_pages: int = 64) -> None:
        self.free: list[HeaderSlot] = []
        self.total = 0
        self.grow(initial_pages)

    def grow(self, pages: int) -> bool:
        """Add up to `pages` pages of slots; False when nonpaged pool gave out first."""
        from stack.kernel import current_kernel
        k = current_kernel()
        for _ in range(pages):
            va = ExAllocatePoolWithTag(NonPagedPoolNx, 4096, SLOT_TAG)
            if not va:
                return False
            mdls = [IoAllocateMdl(va + half * SLOT_SIZE, SLOT_SIZE) for half in range(2)]
            if None in mdls:
                for mdl in mdls:
                    if mdl is not None:
                        IoFreeMdl(mdl)
                ExFreePoolWithTag(va, SLOT_TAG)
                return False
            for half, mdl in enumerate(mdls):
                slot_va = va + half * SLOT_SIZE
                MmBuildMdlForNonPagedPool(mdl)
                self.free.append(HeaderSlot(slot_va, mdl, k.mem.views(slot_va, SLOT_SIZE)[0]))
                self.total += 1
        return True

    def get(self) -> HeaderSlot | None:
        """A free slot, growing the pool when it is empty; None when pool is short (the caller
        drops the packet and counts it, as tcpip does when it cannot get a header buffer)."""
        if not self.free:
            self.grow(16)
            if not self.free:
                return None
        return self.free.pop()

    def put(self, slot: HeaderSlot) -> None:
        slot.mdl.byte_count = SLOT_SIZE
        slot.mdl.next = None
        self.free.append(slot)


class MdlPool:
    """MDL headers for IoBuildPartialMdl, allocated up front so a send does not allocate."""

    def __init__(self, initial: int = 512) -> None:
        self.free: list[Mdl] = []
        self.total = 0
        self.grow(initial)

    def grow(self, count: int) -> bool:
        for _ in range(count):
            mdl = IoAllocateMdl(0, MDL_POOL_PAGES * 4096 - 4095)
            if mdl is None:
                return False
            self.free.append(mdl)
            self.total += 1
        return True

    def reserve(self, count: int) -> bool:
        """At least `count` MDLs free, so a send that then takes them cannot fail half way."""
        if len(self.free) < count:
            self.grow(max(128, count - len(self.free)))
        return len(self.free) >= count

    def get(self) -> Mdl:
        """A free MDL.  Callers that cannot stop half way `reserve` first."""
        if not self.free:
            self.grow(128)
        return self.free.pop()

    def put(self, mdl: Mdl) -> None:
        mdl.next = None
        self.free.append(mdl)


# --- packets ------------------------------------------------------------------------------

@dataclass(slots=True)
class Path:
    """How to reach one destination: interface, source address, next hop (cached per pair)."""

    interface: "Interface"
    version: int
    src: bytes
    dst: bytes
    next_hop: bytes
    src_address: IpAddress
    dst_address: IpAddress
    address_sum: int = 0  # IPv4: the addresses' share of every header checksum (wire.ipv4.ipv4_address_sum)

    def __post_init__(self) -> None:
        if self.version == 4:
            self.address_sum = ipv4_address_sum(self.src, self.dst)


@dataclass(slots=True)
class TxPacket:
    path: Path
    protocol: int
    slot: HeaderSlot
    buf: memoryview
    l4_offset: int
    l4_length: int = 0  # bytes of L4 header (and inline payload) written into the slot
    payload_mdls: list[Mdl] = field(default_factory=list)  # partial MDLs chained after the slot
    payload_length: int = 0
    lso_mss: int = 0
    checksum_offload: bool = False
    requests: list[Any] = field(default_factory=list)
    owner: Any = None
    on_complete: Callable[["TxPacket"], None] | None = None
    on_failed: Callable[[int], None] | None = None
    status: int = STATUS_SUCCESS
    fragments_left: int = 0  # sent as fragments: those not yet completed
    buffer: tuple[int, Mdl] | None = None  # a pool buffer holding L4 data too big for the slot (va, MDL)


class RxFrame:
    """One received NBL while the transport looks at it; `hold()` keeps it past the indication.

    A looped-back datagram arrives as an RxFrame with no NBL: its bytes are the loopback
    buffer (a `bytes` copy), which `is_copy` recognizes, so nothing is ever held or returned.

    Where the bytes live, so the transport can hand its clients physical runs rather than
    Python buffers: `frame_pa` is the physical address of the current NET_BUFFER's first byte
    (set by the NDIS receive path; NO_PHYSICAL_ADDRESS when the frame is a copy), `tail_pas`
    those of an RSC unit's other receive buffers, and `l4_pa` that of the transport header IP
    hands up (IP sets it from frame_pa and the header lengths it parsed)."""

    __slots__ = ("interface", "nbl", "refs", "indicating", "resources", "l4_checksum_ok", "ip_checksum_ok",
                 "copied_from", "frame_pa", "tail_pas", "l4_pa")

    def __init__(self, interface: "Interface", nbl: Any, resources: bool, l4_checksum_ok: bool,
                 ip_checksum_ok: bool = False) -> None:
        self.interface = interface
        self.nbl = nbl
        self.refs = 0
        self.indicating = True
        self.resources = resources
        self.l4_checksum_ok = l4_checksum_ok
        self.ip_checksum_ok = ip_checksum_ok  # the NIC verified the IPv4 header checksum
        self.copied_from: Any = None
        self.frame_pa = NO_PHYSICAL_ADDRESS
        self.tail_pas: tuple[int, ...] = ()
        self.l4_pa = NO_PHYSICAL_ADDRESS

    def can_hold(self, layer: Any) -> bool:
        iface = self.interface
        return not self.resources and iface.nbls_held < iface.hold_limit

    def is_copy(self, view: memoryview) -> bool:
        return isinstance(view.obj, bytes)

    def hold(self) -> None:
        if self.refs == 0:
            self.interface.nbls_held += 1
        self.refs += 1

    def release(self) -> None:
        self.refs -= 1
        if self.refs == 0:
            self.interface.nbls_held -= 1
            if not self.indicating:
                self.interface.return_nbl(self.nbl)


# --- interfaces -----------------------------------------------------------------------------

class Interface:
    """One NDIS binding with its addresses, neighbour caches, offloads and pools."""

    def __init__(self, stack: "TcpipStack", name: str, mac: bytes, mtu: int) -> None:
        self.stack = stack
        self.name = name
        self.mac = mac
        self.mtu = mtu
        self.ipv4: IPv4Interface | None = None
        self.ipv6: IPv6Interface | None = None
        self.v4: bytes = b""
        self.v6: bytes = b""
        self.v6_solicited: bytes = b""
        self.index = 0
        self.binding: Any = None  # the NDIS binding handle (NdisOpen)
        self.nbl_pool: Any = None
        # Offloads the adapter offers (filled from the binding) and whether we use them.
        self.tx_csum_v4 = False
        self.tx_csum_v6 = False
        self.rx_csum = False
        self.lso_v4_max = 0  # max offload size; 0 = no LSO
        self.lso_v6_max = 0
        self.use_offloads = True
        self.use_lso = True
        self.hold_limit = 4096  # NBLs held for untaken data; the miniport's RESOURCES flag is the real limit
        self.nbls_held = 0
        self.is_loopback = False
        k = stack.kernel
        self.arp = NeighborCache(k, AF_INET, self._arp_solicit)
        self.nd = NeighborCache(k, AF_INET6, self._nd_solicit)

    # -- configuration ------------------------------------------------------------------
    def set_ipv4(self, address: str) -> None:
        self.ipv4 = IPv4Interface(address)
        self.v4 = self.ipv4.ip.packed

    def set_ipv6(self, address: str) -> None:
        self.ipv6 = IPv6Interface(address)
        self.v6 = self.ipv6.ip.packed
        self.v6_solicited = solicited_node_multicast(self.v6)

    def tcp_checksum_offload(self, version: int) -> bool:
        return self.use_offloads and (self.tx_csum_v4 if version == 4 else self.tx_csum_v6)

    def lso_enabled(self, version: int) -> bool:
        return self.use_offloads and self.use_lso and bool(self.lso_v4_max if version == 4 else self.lso_v6_max)

    def lso_max_payload(self, path: Path, window_scaled: bool = False) -> int:
        """Payload bytes one LSO send may carry.

        Up to 64 KB the IP length field holds the whole send.  An adapter whose LSOv2 MaxOffLoadSize
        is larger takes sends up to that many bytes of user data, on a connection with window scaling
        (nothing else has a window that holds one): the transport writes IP length 0 and the
        miniport reads the length from the NET_BUFFER (MS Learn, "Offloading the Segmentation of
        Large TCP Packets")."""
        limit = self.lso_v4_max if path.version == 4 else self.lso_v6_max
        if window_scaled and limit > LSO_V2_IP_LENGTH_LIMIT:
            return limit
        return max(0, min(limit, LSO_V2_IP_LENGTH_LIMIT) - 20 - 60 - (20 if path.version == 4 else 0))

    # -- NDIS hand-offs ---------------------------------------------------------------------
    def return_nbl(self, nbl: Any) -> None:
        self.stack.ndis_return(self, nbl)

    # -- neighbour solicitation ------------------------------------------------------------------
    def _arp_solicit(self, target: bytes, unicast_mac: bytes | None) -> None:
        ip = self.stack.ip
        ip.send_arp(self, ARP_REQUEST, unicast_mac or BROADCAST_MAC, bytes(6), target)

    def _nd_solicit(self, target: bytes, unicast_mac: bytes | None) -> None:
        self.stack.icmp.send_neighbor_solicitation(self, target, unicast_mac)

    def __repr__(self) -> str:
        return f"<Interface {self.name} {self.ipv4} {self.ipv6}>"


class LoopbackInterface(Interface):
    """Windows' "Loopback Pseudo-Interface 1": datagrams to the host's own addresses (and to
    127.0.0.0/8 and ::1) turn around inside tcpip and never reach NDIS.

    Checksums are "offloaded" (nothing checks them on the way back) and there is no LSO."""

    def __init__(self, stack: "TcpipStack") -> None:
        super().__init__(stack, "Loopback Pseudo-Interface 1", bytes(6), LOOPBACK_MTU)
        self.is_loopback = True
        self.tx_csum_v4 = self.tx_csum_v6 = self.rx_csum = True
        self.set_ipv4("127.0.0.1/8")
        self.set_ipv6("::1/128")

    def return_nbl(self, nbl: Any) -> None:
        """Looped-back frames have no NBL to give back."""


# --- the IP layer --------------------------------------------------------------------------------

class IpLayer:
    def __init__(self, stack: "TcpipStack") -> None:
        self.stack = stack
        self.kernel = stack.kernel
        self.counters = stack.counters
        self._paths: dict[tuple[bytes, bytes | None], Path | None] = {}
        self._ident = 0
        self.default_ttl = 128
        # Imported here, not at the top: its routines must be cataloged after every other
        # tcpip routine (see fragment.py), and by now the tcpip driver module is loaded.
        from .fragment import IpFragmentation
        self.fragmentation = IpFragmentation(self)

    # -- routing -----------------------------------------------------------------------
    def route(self, destination: IpAddress, source: IpAddress | None = None) -> Path | None:
        """The path to `destination` (from `source` when given), or None without a route."""
        key = (destination.packed, source.packed if source is not None else None)
        path = self._paths.get(key)
        if path is not None:
            return path
        if self.stack.is_local_address(destination):  # ours, or 127.0.0.0/8 and ::1
            path = self._local_path(destination, source)
            if path is not None:
                self._paths[key] = path
            return path
        route = self.stack.routes.lookup(destination)
        if route is None:
            return None
        iface: Interface = route.interface
        if destination.version == 4:
            if iface.ipv4 is None:
                return None
            src_address: IpAddress = iface.ipv4.ip
        else:
            if iface.ipv6 is None:
                return None
            src_address = iface.ipv6.ip
        if source is not None and not source.is_unspecified:
            if source.version != destination.version or not self.stack.is_local_address(source):
                return None
            src_address = source
        next_hop = route.gateway.packed if route.gateway is not None else destination.packed
        path = Path(iface, destination.version, src_address.packed, destination.packed, next_hop,
                    src_address, destination)
        self._paths[key] = path
        return path

    def _local_path(self, destination: IpAddress, source: IpAddress | None) -> Path | None:
        """A path to one of our own addresses: through the loopback interface, from that address."""
        src_address = destination
        if source is not None and not source.is_unspecified:
            if source.version != destination.version or not self.stack.is_local_address(source):
                return None
            src_address = source
        return Path(self.stack.loopback, destination.version, src_address.packed, destination.packed,
                    destination.packed, src_address, destination)

    def invalidate_paths(self) -> None:
        self._paths.clear()

    # -- send ------------------------------------------------------------------------------
    def new_packet(self, path: Path, protocol: int) -> TxPacket | None:
        """A packet with a header slot; None (dropped and counted) when there is no pool for one."""
        slot = self.stack.slot_pool.get()
        if slot is None:
            self.stack.drop("ip", "no_memory")
            return None
        l4_offset = ETH_HEADER + (20 if path.version == 4 else 40)
        return TxPacket(path, protocol, slot, slot.view, l4_offset)

    def send_packet(self, packet: TxPacket) -> None:
        if packet.buffer is not None:
            _free_buffer_when_done(packet)
        IppSendDatagramsCommon(self, packet)

    def allocate_payload(self, packet: TxPacket, length: int) -> list[memoryview] | None:
        """L4 data too big for the header slot: a nonpaged-pool buffer of `length` bytes chained
        behind the slot (by a partial MDL, like any payload).  Returns zero-copy views for the
        caller to fill (None when pool is exhausted); the buffer is freed when the send completes."""
        va = ExAllocatePoolWithTag(NonPagedPoolNx, length, PAYLOAD_TAG)
        if not va:
            return None
        mdl = IoAllocateMdl(va, length)
        if mdl is None:
            ExFreePoolWithTag(va, PAYLOAD_TAG)
            return None
        if not self.stack.mdl_pool.reserve(1):
            IoFreeMdl(mdl)
            ExFreePoolWithTag(va, PAYLOAD_TAG)
            return None
        MmBuildMdlForNonPagedPool(mdl)
        packet.buffer = (va, mdl)
        partial = self.stack.mdl_pool.get()
        IoBuildPartialMdl(mdl, partial, va, length)
        packet.payload_mdls.append(partial)
        packet.payload_length += length
        return mdl.views()

    def _write_ip_header(self, packet: TxPacket) -> None:
        path = packet.path
        length = packet.l4_length + packet.payload_length
        # An LSOv2 send past 64 KB: IP length 0, the miniport takes it from the NET_BUFFER.
        big = packet.lso_mss and length + (20 if path.version == 4 else 0) > LSO_V2_IP_LENGTH_LIMIT
        if path.version == 4:
            self._ident = ident = (self._ident + 1) & 0xFFFF
            if big:
                emit_ipv4(packet.buf, ETH_HEADER, src=path.src, dst=path.dst, protocol=packet.protocol,
                          payload_length=length, ttl=self.default_ttl, identification=ident,
                          dont_fragment=True, large_send=True)
            else:  # the same header, from what the path already knows
                emit_ipv4_own(packet.buf, ETH_HEADER, path.src, path.dst, path.address_sum, packet.protocol,
                              length, self.default_ttl, ident)
            self.counters.ipv4_sent += 1
        else:
            emit_ipv6(packet.buf, ETH_HEADER, src=path.src, dst=path.dst, next_header=packet.protocol,
                      payload_length=0 if big else length, hop_limit=255 if packet.protocol == IPPROTO_ICMPV6 and
                      path.dst[0] == 0xFF else self.default_ttl)
            self.counters.ipv6_sent += 1

    def resolve_and_send(self, packet: TxPacket) -> None:
        path = packet.path
        iface = path.interface
        if iface.is_loopback:
            self.loop_back(packet)
            return
        dst = path.dst
        if path.version == 6 and dst[0] == 0xFF:
            self.frame_out(packet, multicast_mac_v6(dst), ETHERTYPE_IPV6)
            return
        if path.version == 4 and dst == IPV4_BROADCAST:
            self.frame_out(packet, BROADCAST_MAC, ETHERTYPE_IPV4)
            return
        cache = iface.arp if path.version == 4 else iface.nd
        ethertype = ETHERTYPE_IPV4 if path.version == 4 else ETHERTYPE_IPV6
        entry = cache.entries.get(path.next_hop)
        if entry is not None and entry.state == REACHABLE and entry.mac is not None \
                and self.kernel.scheduler.now_ns - entry.confirmed_ns <= cache.reachable_ns:
            self.frame_out(packet, entry.mac, ethertype)
            return
        cache.resolve(path.next_hop, PendingPacket(lambda mac: self.frame_out(packet, mac, ethertype),
                                                   lambda status: self.packet_failed(packet, status),
                                                   packet.l4_offset + packet.l4_length + packet.payload_length))

    def frame_out(self, packet: TxPacket, dst_mac: bytes, ethertype: int) -> None:
        iface = packet.path.interface
        emit_ethernet(packet.buf, 0, dst=dst_mac, src=iface.mac, ethertype=ethertype)
        self.counters.frames_sent += 1
        k = self.kernel
        if k.bus.subscribers:
            k.bus.publish(DatagramSent(host=k.name, depth=len(k.frames),
                                       summary=_describe(packet.path, packet.protocol),
                                       length=packet.l4_length + packet.payload_length))
        self.stack.ndis_send(iface, packet)

    def loop_back(self, packet: TxPacket) -> None:
        """Local delivery: copy the datagram once into a loopback buffer (counted), then deliver
        it to our own receive path as a scheduler event of its own, as if it had arrived.

        The send completes in that event, before the receive, the way an NBL would come back."""
        end = packet.l4_offset + packet.l4_length
        parts: list[Any] = [packet.buf[ETH_HEADER:end]]
        for mdl in packet.payload_mdls:
            parts.extend(mdl.views())
        datagram = b"".join(parts)
        k = self.kernel
        k.copies.count(len(datagram), LOOPBACK_COPY_REASON)
        counters = self.counters
        counters.loopback_sent += 1
        counters.loopback_bytes += len(datagram)
        if k.bus.subscribers:
            k.bus.publish(DatagramSent(host=k.name, depth=len(k.frames),
                                       summary=_describe(packet.path, packet.protocol) + " (loopback)",
                                       length=packet.l4_length + packet.payload_length))
        k.scheduler.call_soon(k, self._loopback_event, packet, datagram, label="tcpip loopback")

    def _loopback_event(self, packet: TxPacket, datagram: bytes) -> None:
        k = self.kernel
        k.irql = DISPATCH_LEVEL
        k.frames.append(Frame("nt!KiIdleLoop"))
        k.frames.append(Frame("nt!KiRetireDpcList"))
        stack = self.stack
        stack.release_packet(packet)
        if packet.on_complete is not None:
            packet.on_complete(packet)
        iface = stack.loopback
        rx = RxFrame(iface, None, False, True)
        IppLoopbackReceive(self, rx, memoryview(datagram))

    def _receive_loopback(self, rx: RxFrame, datagram: memoryview) -> None:
        self.counters.loopback_received += 1
        if datagram[0] >> 4 == 4:
            self._receive_v4(rx, rx.interface, datagram)
        else:
            self._receive_v6(rx, rx.interface, datagram, rx.interface.mac)

    def packet_failed(self, packet: TxPacket, status: int) -> None:
        """Neighbour resolution failed (or the queue overflowed): the packet never left."""
        self.stack.drop("neighbor", "unresolved" if status == STATUS_HOST_UNREACHABLE else "queue_full")
        packet.status = status
        self.stack.release_packet(packet)
        if packet.on_failed is not None:
            packet.on_failed(status)

    def send_arp(self, iface: Interface, operation: int, dst_mac: bytes, target_mac: bytes,
                 target_ip: bytes) -> None:
        if iface.ipv4 is None:
            return
        slot = self.stack.slot_pool.get()
        if slot is None:
            self.stack.drop("arp", "no_memory")
            return
        path = Path(iface, 4, iface.v4, target_ip, target_ip, iface.ipv4.ip, IPv4Address(target_ip))
        packet = TxPacket(path, 0, slot, slot.view, ETH_HEADER)
        emit_arp(packet.buf, ETH_HEADER, operation=operation, sender_mac=iface.mac, sender_ip=iface.v4,
                 target_mac=target_mac, target_ip=target_ip)
        packet.l4_length = 28 + 18  # pad to the 60-byte minimum frame
        packet.buf[ETH_HEADER + 28:ETH_HEADER + 46] = bytes(18)
        if operation == ARP_REQUEST:
            self.counters.arp_requests_sent += 1
        else:
            self.counters.arp_replies_sent += 1
        emit_ethernet(packet.buf, 0, dst=dst_mac, src=iface.mac, ethertype=ETHERTYPE_ARP)
        self.counters.frames_sent += 1
        self.stack.ndis_send(iface, packet, raw=True)

    # -- receive -------------------------------------------------------------------------------
    def receive_frame(self, rx: RxFrame, frame: memoryview) -> None:
        IppReceiveHeaderBatch(self, rx, frame)

    def _receive(self, rx: RxFrame, frame: memoryview) -> None:
        stack = self.stack
        iface = rx.interface
        self.counters.frames_received += 1
        if len(frame) >= ETHERNET_HEADER_LEN:  # parse_ethernet, unpacked in place (frame is a memoryview)
            dst_mac, _, ethertype = ETHERNET_HEADER.unpack_from(frame, 0)
            payload = frame[ETHERNET_HEADER_LEN:]
        else:
            try:
                parse_ethernet(frame)  # raises: a runt
            except WireError as err:
                stack.drop(err.layer, err.reason, err.detail)
            return
        if dst_mac != iface.mac and not dst_mac[0] & 1:
            stack.drop("ethernet", "not_our_mac")
            return
        if ethertype == ETHERTYPE_IPV4:
            self._receive_v4(rx, iface, payload)
        elif ethertype == ETHERTYPE_IPV6:
            self._receive_v6(rx, iface, payload, dst_mac)
        elif ethertype == ETHERTYPE_ARP:
            self._receive_arp(iface, payload)
        else:
            stack.drop("ethernet", "unsupported_ethertype")

    def _receive_v4(self, rx: RxFrame, iface: Interface, data: memoryview) -> None:
        stack = self.stack
        try:
            header, payload = parse_ipv4(data, verify_checksum=not rx.ip_checksum_ok)
        except WireError as err:
            stack.drop(err.layer, err.reason, err.detail)
            return
        self.counters.ipv4_received += 1
        dst = header.dst
        for_us = dst == iface.v4 or iface.is_loopback
        if not for_us and dst != IPV4_BROADCAST:
            if iface.ipv4 is None or dst != iface.ipv4.network.broadcast_address.packed:
                stack.drop("ipv4", "not_for_us")
                return
        if header.flags & FLAG_MF or header.fragment_offset:  # header.is_fragment, without the property
            self.fragmentation.receive_v4(rx, iface, header, payload, data, for_us)
            return
        k = self.kernel
        if k.bus.subscribers:
            k.bus.publish(DatagramReceived(host=k.name, depth=len(k.frames),
                                           summary=f"{ip_address(header.src)} > {ip_address(dst)} "
                                                   f"proto {header.protocol}", length=len(payload)))
        protocol = header.protocol
        rx.l4_pa = rx.frame_pa + ETH_HEADER + header.header_length
        if protocol == IPPROTO_TCP:
            if not for_us:
                stack.drop("tcp", "broadcast")
                return
            stack.tcp.receive_segment(rx, header.src, dst, payload)
        elif protocol == IPPROTO_UDP:
            stack.udp.receive(rx, iface, header.src, dst, payload, data)
        elif protocol == IPPROTO_ICMP:
            stack.icmp.receive_v4(rx, iface, header, payload, data)
        else:
            stack.drop("ipv4", "unknown_protocol")
            if for_us:
                stack.icmp.send_protocol_unreachable(iface, header, data)

    def _receive_v6(self, rx: RxFrame, iface: Interface, data: memoryview, dst_mac: bytes) -> None:
        stack = self.stack
        try:
            header, payload = parse_ipv6(data)
        except WireError as err:
            stack.drop(err.layer, err.reason, err.detail)
            return
        self.counters.ipv6_received += 1
        dst = header.dst
        multicast = dst[0] == 0xFF
        if dst != iface.v6 and not (multicast and (dst == iface.v6_solicited or dst == ALL_NODES_V6)) \
                and not iface.is_loopback:
            stack.drop("ipv6", "not_for_us")
            return
        if header.is_fragment:  # an atomic fragment (offset 0, M clear) is not one: it goes on below
            self.fragmentation.receive_v6(rx, iface, header, data, not multicast or iface.is_loopback)
            return
        k = self.kernel
        if k.bus.subscribers:
            k.bus.publish(DatagramReceived(host=k.name, depth=len(k.frames),
                                           summary=f"{ip_address(header.src)} > {ip_address(dst)} "
                                                   f"next {header.protocol}", length=len(payload)))
        protocol = header.protocol
        # (the payload ends where the payload length says; extension headers stepped over come before it)
        rx.l4_pa = rx.frame_pa + ETH_HEADER + 40 + header.payload_length - len(payload)
        if protocol == IPPROTO_TCP:
            if multicast:
                stack.drop("tcp", "multicast")
                return
            stack.tcp.receive_segment(rx, header.src, dst, payload)
        elif protocol == IPPROTO_UDP:
            stack.udp.receive(rx, iface, header.src, dst, payload, data)
        elif protocol == IPPROTO_ICMPV6:
            stack.icmp.receive_v6(rx, iface, header, payload, data)
        else:
            stack.drop("ipv6", "unknown_protocol")

    def receive_coalesced(self, rx: RxFrame, views: list[memoryview], segments: int) -> None:
        """An RSC unit: one TCP segment whose payload runs on past ``views[0]`` into the other views."""
        IppReceiveHeaderBatch(self, rx, views[0], tuple(views[1:]), segments)

    def _receive_unit(self, rx: RxFrame, frame: memoryview, tail: tuple[memoryview, ...], segments: int) -> None:
        stack = self.stack
        iface = rx.interface
        self.counters.frames_received += 1
        tail_length = sum(map(len, tail))
        try:
            if len(frame) < ETHERNET_HEADER_LEN:
                parse_ethernet(frame)  # raises: a runt
            dst_mac, _, ethertype = ETHERNET_HEADER.unpack_from(frame, 0)  # parse_ethernet, in place
            data = frame[ETHERNET_HEADER_LEN:]
            if dst_mac != iface.mac:
                stack.drop("ethernet", "not_our_mac")
                return
            if ethertype == ETHERTYPE_IPV4:
                header, payload = parse_ipv4(data, verify_checksum=not rx.ip_checksum_ok, allow_truncated=True)
                self.counters.ipv4_received += 1
                src, dst, protocol = header.src, header.dst, header.protocol
                whole = header.total_length - header.header_length == len(payload) + tail_length
                for_us = dst == iface.v4 or iface.is_loopback
                rx.l4_pa = rx.frame_pa + ETH_HEADER + header.header_length
            elif ethertype == ETHERTYPE_IPV6 and len(data) >= 40 and data[0] >> 4 == 6:
                self.counters.ipv6_received += 1
                payload_length = (data[4] << 8) | data[5]
                protocol, src, dst, payload = data[6], bytes(data[8:24]), bytes(data[24:40]), data[40:]
                whole = payload_length == len(payload) + tail_length
                for_us = dst == iface.v6 or iface.is_loopback
                rx.l4_pa = rx.frame_pa + ETH_HEADER + 40
            else:
                stack.drop("ethernet", "rsc_not_ip")
                return
        except WireError as err:
            stack.drop(err.layer, err.reason, err.detail)
            return
        # A unit the NIC built wrongly is the NIC's bug, but it must not reach TCP.
        if not whole or protocol != IPPROTO_TCP:
            stack.drop("ip", "rsc_malformed_unit")
            return
        if not for_us:
            stack.drop("ip", "not_for_us")
            return
        stack.tcp.receive_segment(rx, src, dst, payload, tail, segments)

    def _receive_arp(self, iface: Interface, data: memoryview) -> None:
        stack = self.stack
        try:
            arp = parse_arp(data)
        except WireError as err:
            stack.drop(err.layer, err.reason, err.detail)
            return
        self.counters.arp_received += 1
        if iface.ipv4 is None:
            return
        sender = arp.sender_ip
        if sender == iface.v4 or arp.sender_mac[0] & 1 or sender == bytes(4):
            stack.drop("arp", "bogus_sender")
            return
        for_us = arp.target_ip == iface.v4
        # RFC 826: update an existing entry always; add one only when the packet is for us.
        iface.arp.confirm(sender, arp.sender_mac, solicited=True, create=for_us)
        if for_us and arp.operation == ARP_REQUEST:
            self.send_arp(iface, ARP_REPLY, arp.sender_mac, arp.sender_mac, sender)

    # -- neighbour discovery (called by ICMPv6) ---------------------------------------------------
    def neighbor_message(self, iface: Interface, icmp_type: int, src: bytes, message: Any) -> None:
        if icmp_type == ICMPV6_NEIGHBOR_SOLICITATION:
            if message.target != iface.v6:
                return
            if message.source_link_addr is not None and src != bytes(16):
                iface.nd.confirm(src, message.source_link_addr, solicited=False)
            self.stack.icmp.send_neighbor_advertisement(iface, src, message.source_link_addr)
        elif icmp_type == ICMPV6_NEIGHBOR_ADVERTISEMENT:
            mac = message.target_link_addr
            if mac is None:
                mac = iface.nd.lookup(message.target)
                if mac is None:
                    return
            iface.nd.confirm(message.target, mac, solicited=message.solicited, override=message.override,
                             create=False)


# --- hand-off routines ---------------------------------------------------------------------------

@kroutine("tcpip")
def IppSendDatagramsCommon(ip: IpLayer, packet: TxPacket) -> None:
    # UDP and ICMP datagrams bigger than the link are fragmented; TCP sizes its segments by
    # the MSS (an LSO send is cut by the NIC) and keeps DF.
    if packet.protocol != IPPROTO_TCP:
        path = packet.path
        if packet.l4_length + packet.payload_length > path.interface.mtu - (20 if path.version == 4 else 40):
            ip.fragmentation.send(packet)
            return
    ip._write_ip_header(packet)
    ip.resolve_and_send(packet)


def _free_buffer_when_done(packet: TxPacket) -> None:
    """Free the packet's pool buffer once its send is over, whichever way it ends."""
    complete, failed = packet.on_complete, packet.on_failed

    def free() -> None:
        buffer, packet.buffer = packet.buffer, None
        if buffer is not None:
            va, mdl = buffer
            IoFreeMdl(mdl)
            ExFreePoolWithTag(va, PAYLOAD_TAG)

    def on_complete(p: TxPacket) -> None:
        free()
        if complete is not None:
            complete(p)

    def on_failed(status: int) -> None:
        free()
        if failed is not None:
            failed(status)

    packet.on_complete = on_complete
    packet.on_failed = on_failed


@kroutine("tcpip")
def IppReceiveHeaderBatch(ip: IpLayer, rx: RxFrame, frame: memoryview, tail: tuple[memoryview, ...] = (),
                          segments: int = 1) -> None:
    if tail:
        ip._receive_unit(rx, frame, tail, segments)
    else:
        ip._receive(rx, frame)


@kroutine("tcpip")
def IppLoopbackReceive(ip: IpLayer, rx: RxFrame, datagram: memoryview) -> None:
    """A datagram this host sent to itself, arriving without NDIS (the loopback DPC)."""
    ip._receive_loopback(rx, datagram)


def _describe(path: Path, protocol: int) -> str:
    names = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_ICMP: "icmp", IPPROTO_ICMPV6: "icmp6"}
    return f"{path.src_address} > {path.dst_address} {names.get(protocol, protocol)}"


_ = (AF_INET6, IPv6Address)
