"""What the NIC's offload engines do to frames: checksums and large send (LSO v2).

Pure functions over bytes, used by `EmulatedNic` at transmit and receive
time.  The checksum engine ignores whatever the transport left in a checksum
field (zero or a pseudo-header seed) and computes the full value itself.
Receive validation reports bits with the same positions as NDIS's
NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO Receive view, so the miniport can
pass them straight up.
"""

from __future__ import annotations

import struct

from .passthrough import LargeSend, OffloadError
from stack.wire.checksum import (internet_checksum, ones_sum, pseudo_header_sum_v4, pseudo_header_sum_v6,
                                       transport_checksum)

ETH_HEADER_LEN = 14
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = 0x8100
PROTO_TCP = 6
PROTO_UDP = 17
TCP_FIN = 0x01
TCP_PSH = 0x08
TCP_CWR = 0x80

# Transmit requests (descriptor bits)
TX_CSUM_IP = 0x1
TX_CSUM_TCP = 0x2
TX_CSUM_UDP = 0x4

# Receive results (same bit positions as the NDIS Receive checksum view)
RX_TCP_FAILED = 1 << 0
RX_UDP_FAILED = 1 << 1
RX_IP_FAILED = 1 << 2
RX_TCP_SUCCEEDED = 1 << 3
RX_UDP_SUCCEEDED = 1 << 4
RX_IP_SUCCEEDED = 1 << 5

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


def _l3(frame: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(ethertype, offset of the network header), skipping one VLAN tag."""
    if len(frame) < ETH_HEADER_LEN:
        raise OffloadError("frame shorter than an Ethernet header")
    ethertype = _U16.unpack_from(frame, 12)[0]
    offset = ETH_HEADER_LEN
    if ethertype == ETHERTYPE_VLAN:
        if len(frame) < ETH_HEADER_LEN + 4:
            raise OffloadError("truncated VLAN tag")
        ethertype = _U16.unpack_from(frame, 16)[0]
        offset += 4
    return ethertype, offset


def fill_checksums(frame: bytearray, flags: int) -> None:
    """Compute the checksums `flags` asks for (TX_CSUM_*) in place."""
    ethertype, ip = _l3(frame)
    n = len(frame)
    if ethertype == ETHERTYPE_IPV4:
        if n < ip + 20:
            raise OffloadError("truncated IPv4 header")
        ihl = (frame[ip] & 0x0F) * 4
        total = _U16.unpack_from(frame, ip + 2)[0]
        if ihl < 20 or n < ip + ihl or total < ihl or ip + total > n:
            raise OffloadError("bad IPv4 lengths")
        if flags & TX_CSUM_IP:
            frame[ip + 10:ip + 12] = b"\0\0"
            _U16.pack_into(frame, ip + 10, internet_checksum(memoryview(frame)[ip:ip + ihl]))
        if flags & (TX_CSUM_TCP | TX_CSUM_UDP):
            l4 = ip + ihl
            length = total - ihl
            pseudo = pseudo_header_sum_v4(frame[ip + 12:ip + 16], frame[ip + 16:ip + 20], frame[ip + 9], length)
            _fill_l4(frame, l4, length, pseudo, frame[ip + 9], flags)
    elif ethertype == ETHERTYPE_IPV6:
        if n < ip + 40:
            raise OffloadError("truncated IPv6 header")
        length = _U16.unpack_from(frame, ip + 4)[0]
        if ip + 40 + length > n:
            raise OffloadError("bad IPv6 payload length")
        if flags & (TX_CSUM_TCP | TX_CSUM_UDP):
            proto = frame[ip + 6]
            pseudo = pseudo_header_sum_v6(frame[ip + 8:ip + 24], frame[ip + 24:ip + 40], proto, length)
            _fill_l4(frame, ip + 40, length, pseudo, proto, flags)
    else:
        raise OffloadError(f"ethertype {ethertype:#06x} has no checksums to offload")


def _fill_l4(frame: bytearray, l4: int, length: int, pseudo: int, proto: int, flags: int) -> None:
    view = memoryview(frame)
    if proto == PROTO_TCP and flags & TX_CSUM_TCP:
        if length < 20:
            raise OffloadError("truncated TCP header")
        frame[l4 + 16:l4 + 18] = b"\0\0"
        _U16.pack_into(frame, l4 + 16, transport_checksum(pseudo, (view[l4:l4 + length],)))
    elif proto == PROTO_UDP and flags & TX_CSUM_UDP:
        if length < 8:
            raise OffloadError("truncated UDP header")
        frame[l4 + 6:l4 + 8] = b"\0\0"
        value = transport_checksum(pseudo, (view[l4:l4 + length],))
        _U16.pack_into(frame, l4 + 6, value or 0xFFFF)  # 0 means "no checksum" in UDP


def segment_lso(frame: bytes | bytearray | memoryview, mss: int, tcp_header_offset: int = 0) -> list[bytes]:
    """Cut one large TCP segment into MSS-sized frames (LSO v2).

    Headers are replicated; IPv4 total length, identification and header
    checksum (or the IPv6 payload length), TCP sequence number, flags (FIN
    and PSH on the last frame only, CWR on the first only) and checksum are
    fixed per frame.  `tcp_header_offset` (from the frame start) is found
    from the IP header when 0.  (The rules live in passthrough.LargeSend,
    which can also build one segment at a time.)
    """
    return LargeSend(bytes(frame), mss, tcp_header_offset).frames()


def validate_rx_checksums(frame: bytes | bytearray | memoryview) -> int:
    """RX_* bits for the IPv4 header and TCP/UDP checksums of a received frame.

    Returns 0 for what the engine does not check (ARP, fragments, extension
    headers, truncated or malformed packets).
    """
    n = len(frame)
    # Fast path (every received frame comes here): untagged IPv4, unfragmented TCP or UDP.
    if n >= 34 and frame[12] == 0x08 and frame[13] == 0x00 and frame[14] >> 4 == 4:
        ihl = (frame[14] & 0x0F) * 4
        total = (frame[16] << 8) | frame[17]
        proto = frame[23]
        if (ihl >= 20 and total >= ihl and 14 + total <= n and not (frame[20] & 0x3F or frame[21])
                and (proto == PROTO_TCP or proto == PROTO_UDP)):
            view = memoryview(frame)
            header = int.from_bytes(view[14:14 + ihl], "big")  # ones_sum == 0xFFFF, in one step
            result = RX_IP_SUCCEEDED if header and not header % 0xFFFF else RX_IP_FAILED
            length = total - ihl
            value = int.from_bytes(view[26:34], "big")  # source and destination address
            value = (value >> 32) + (value & 0xFFFFFFFF) + proto + length
            pseudo = value % 0xFFFF or (0xFFFF if value else 0)  # pseudo_header_sum_v4
            return result | _check_l4(view[14 + ihl:14 + total], proto, pseudo, udp_zero_ok=True)
    return _validate_rx_checksums_any(frame)


def _validate_rx_checksums_any(frame: bytes | bytearray | memoryview) -> int:
    """validate_rx_checksums for every kind of frame (VLAN tags, IPv6, fragments, malformed)."""
    try:
        ethertype, ip = _l3(frame)
    except OffloadError:
        return 0
    n = len(frame)
    view = memoryview(frame)
    if ethertype == ETHERTYPE_IPV4:
        if n < ip + 20 or frame[ip] >> 4 != 4:
            return 0
        ihl = (frame[ip] & 0x0F) * 4
        total = _U16.unpack_from(frame, ip + 2)[0]
        if ihl < 20 or total < ihl or ip + total > n:
            return 0
        result = RX_IP_SUCCEEDED if ones_sum(view[ip:ip + ihl]) == 0xFFFF else RX_IP_FAILED
        if _U16.unpack_from(frame, ip + 6)[0] & 0x3FFF:  # MF or a fragment offset
            return result
        proto = frame[ip + 9]
        length = total - ihl
        if proto not in (PROTO_TCP, PROTO_UDP):
            return result
        pseudo = pseudo_header_sum_v4(view[ip + 12:ip + 16], view[ip + 16:ip + 20], proto, length)
        return result | _check_l4(view[ip + ihl:ip + total], proto, pseudo, udp_zero_ok=True)
    if ethertype == ETHERTYPE_IPV6:
        if n < ip + 40 or frame[ip] >> 4 != 6:
            return 0
        length = _U16.unpack_from(frame, ip + 4)[0]
        proto = frame[ip + 6]
        if ip + 40 + length > n or proto not in (PROTO_TCP, PROTO_UDP):
            return 0
        pseudo = pseudo_header_sum_v6(view[ip + 8:ip + 24], view[ip + 24:ip + 40], proto, length)
        return _check_l4(view[ip + 40:ip + 40 + length], proto, pseudo, udp_zero_ok=False)
    return 0


def _sum_ok(pseudo: int, segment: memoryview) -> bool:
    """transport_checksum_ok(pseudo, (segment,)) for one chunk, in one step (runs for every frame)."""
    value = int.from_bytes(segment, "big")
    acc = ((value << 8) if len(segment) & 1 else value) % 0xFFFF
    total = pseudo + (0xFFFF if (acc == 0 and value) else acc)
    return (total & 0xFFFF) + (total >> 16) == 0xFFFF


def _check_l4(segment: memoryview, proto: int, pseudo: int, udp_zero_ok: bool) -> int:
    if proto == PROTO_TCP:
        if len(segment) < 20:
            return RX_TCP_FAILED
        return RX_TCP_SUCCEEDED if _sum_ok(pseudo, segment) else RX_TCP_FAILED
    if len(segment) < 8:
        return RX_UDP_FAILED
    if udp_zero_ok and segment[6] == 0 and segment[7] == 0:
        return 0  # IPv4 UDP without a checksum: nothing to validate
    return RX_UDP_SUCCEEDED if _sum_ok(pseudo, segment) else RX_UDP_FAILED
