"""ICMPv6 (RFC 4443) echo and destination unreachable, and Neighbor Discovery
solicitations/advertisements (RFC 4861) with link-layer address options."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from stack.wire.checksum import (
    AddressLike,
    BytesLike,
    Payload,
    as_chunks,
    chunks_length,
    pseudo_header_sum_v6,
    transport_checksum,
    transport_checksum_ok,
)
from .errors import BAD_CHECKSUM, BAD_OPTION, TRUNCATED, UNSUPPORTED, WireError
from .ipv4 import IPPROTO_ICMPV6

ICMPV6_HEADER_LEN = 8

ICMPV6_DEST_UNREACHABLE = 1
ICMPV6_PACKET_TOO_BIG = 2
ICMPV6_TIME_EXCEEDED = 3
ICMPV6_PARAMETER_PROBLEM = 4
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129
ICMPV6_ROUTER_SOLICITATION = 133
ICMPV6_ROUTER_ADVERTISEMENT = 134
ICMPV6_NEIGHBOR_SOLICITATION = 135
ICMPV6_NEIGHBOR_ADVERTISEMENT = 136

# Destination-unreachable codes.
ICMPV6_NO_ROUTE = 0
ICMPV6_ADMIN_PROHIBITED = 1
ICMPV6_ADDRESS_UNREACHABLE = 3
ICMPV6_PORT_UNREACHABLE = 4

# Neighbor Advertisement flags (top bits of the rest-of-header word).
NA_FLAG_ROUTER = 0x80000000
NA_FLAG_SOLICITED = 0x40000000
NA_FLAG_OVERRIDE = 0x20000000

ND_OPT_SOURCE_LINK_ADDR = 1
ND_OPT_TARGET_LINK_ADDR = 2

ND_HOP_LIMIT = 255  # RFC 4861 requires it on send and checks it on receive
IPV6_MIN_MTU = 1280

_HEADER = struct.Struct("!BBHI")
_LAYER = "icmpv6"


@dataclass(frozen=True, slots=True)
class Icmpv6Header:
    icmp_type: int
    code: int
    checksum: int
    rest_of_header: int  # second 32-bit word: echo id/seq, NA flags, MTU, pointer

    @property
    def identifier(self) -> int:
        return self.rest_of_header >> 16

    @property
    def sequence(self) -> int:
        return self.rest_of_header & 0xFFFF

    @property
    def is_error(self) -> bool:
        return self.icmp_type < 128


@dataclass(frozen=True, slots=True)
class NeighborSolicitation:
    target: bytes  # 16-byte IPv6 address
    source_link_addr: bytes | None  # MAC from the Source Link-Layer Address option


@dataclass(frozen=True, slots=True)
class NeighborAdvertisement:
    target: bytes
    router: bool
    solicited: bool
    override: bool
    target_link_addr: bytes | None  # MAC from the Target Link-Layer Address option


def parse_icmpv6(
    buf: BytesLike,
    src: AddressLike | None = None,
    dst: AddressLike | None = None,
    *,
    verify_checksum: bool = True,
) -> tuple[Icmpv6Header, memoryview]:
    """Parse the 8-byte header; the checksum is verified when both addresses are given."""
    view = memoryview(buf)
    if len(view) < ICMPV6_HEADER_LEN:
        raise WireError(_LAYER, TRUNCATED, f"{len(view)} bytes")
    icmp_type, code, checksum, rest = _HEADER.unpack_from(view, 0)
    if verify_checksum and src is not None and dst is not None:
        pseudo = pseudo_header_sum_v6(src, dst, IPPROTO_ICMPV6, len(view))
        if not transport_checksum_ok(pseudo, (view,)):
            raise WireError(_LAYER, BAD_CHECKSUM, f"checksum {checksum:#06x}")
    return Icmpv6Header(icmp_type, code, checksum, rest), view[ICMPV6_HEADER_LEN:]


def _link_addr_option(body: memoryview, wanted: int) -> bytes | None:
    """Walk ND options (type, length in 8-octet units); unknown ones are skipped."""
    found: bytes | None = None
    offset = 0
    while offset < len(body):
        if len(body) - offset < 2:
            raise WireError(_LAYER, BAD_OPTION, "option header cut short")
        opt_type, opt_units = body[offset], body[offset + 1]
        if opt_units == 0:
            raise WireError(_LAYER, BAD_OPTION, "zero-length option")
        end = offset + opt_units * 8
        if end > len(body):
            raise WireError(_LAYER, BAD_OPTION, f"option {opt_type} overruns the message")
        if opt_type == wanted and found is None:
            found = bytes(body[offset + 2 : offset + 8])  # Ethernet: 6 bytes after type/len
        offset = end
    return found


def parse_neighbor_message(header: Icmpv6Header, body: BytesLike) -> NeighborSolicitation | NeighborAdvertisement:
    """Decode NS/NA from parse_icmpv6's results (``body`` starts at the target address)."""
    view = memoryview(body)
    if header.icmp_type not in (ICMPV6_NEIGHBOR_SOLICITATION, ICMPV6_NEIGHBOR_ADVERTISEMENT):
        raise WireError(_LAYER, UNSUPPORTED, f"type {header.icmp_type} is not NS/NA")
    if len(view) < 16:
        raise WireError(_LAYER, TRUNCATED, "no target address")
    target = bytes(view[:16])
    if header.icmp_type == ICMPV6_NEIGHBOR_SOLICITATION:
        return NeighborSolicitation(target, _link_addr_option(view[16:], ND_OPT_SOURCE_LINK_ADDR))
    flags = header.rest_of_header
    return NeighborAdvertisement(
        target,
        bool(flags & NA_FLAG_ROUTER),
        bool(flags & NA_FLAG_SOLICITED),
        bool(flags & NA_FLAG_OVERRIDE),
        _link_addr_option(view[16:], ND_OPT_TARGET_LINK_ADDR),
    )


def emit_icmpv6(
    buf: bytearray | memoryview,
    offset: int,
    *,
    src: AddressLike,
    dst: AddressLike,
    icmp_type: int,
    code: int = 0,
    rest_of_header: int = 0,
    payload: Payload = (),
) -> int:
    """Write the 8-byte header, checksummed with the pseudo-header over ``payload`` (not copied)."""
    chunks = as_chunks(payload)
    _HEADER.pack_into(buf, offset, icmp_type, code, 0, rest_of_header)
    header = memoryview(buf)[offset : offset + ICMPV6_HEADER_LEN]
    pseudo = pseudo_header_sum_v6(src, dst, IPPROTO_ICMPV6, ICMPV6_HEADER_LEN + chunks_length(chunks))
    struct.pack_into("!H", buf, offset + 2, transport_checksum(pseudo, (header, *chunks)))
    return offset + ICMPV6_HEADER_LEN


def build_icmpv6(
    src: AddressLike, dst: AddressLike, icmp_type: int, code: int = 0, rest_of_header: int = 0, payload: BytesLike = b""
) -> bytes:
    out = bytearray(ICMPV6_HEADER_LEN + len(payload))
    out[ICMPV6_HEADER_LEN:] = payload
    emit_icmpv6(out, 0, src=src, dst=dst, icmp_type=icmp_type, code=code, rest_of_header=rest_of_header,
                payload=payload)
    return bytes(out)


def build_icmpv6_echo_request(src: AddressLike, dst: AddressLike, identifier: int, sequence: int,
                              data: BytesLike = b"") -> bytes:
    return build_icmpv6(src, dst, ICMPV6_ECHO_REQUEST, 0, (identifier & 0xFFFF) << 16 | (sequence & 0xFFFF), data)


def build_icmpv6_echo_reply(src: AddressLike, dst: AddressLike, identifier: int, sequence: int,
                            data: BytesLike = b"") -> bytes:
    return build_icmpv6(src, dst, ICMPV6_ECHO_REPLY, 0, (identifier & 0xFFFF) << 16 | (sequence & 0xFFFF), data)


def build_icmpv6_dest_unreachable(src: AddressLike, dst: AddressLike, code: int, original_packet: BytesLike) -> bytes:
    """Quotes as much of ``original_packet`` as fits in the 1280-byte minimum MTU."""
    room = IPV6_MIN_MTU - 40 - ICMPV6_HEADER_LEN
    return build_icmpv6(src, dst, ICMPV6_DEST_UNREACHABLE, code, 0, bytes(memoryview(original_packet)[:room]))


def _link_option(option_type: int, mac: BytesLike) -> bytes:
    if len(mac) != 6:
        raise ValueError("link-layer address must be a 6-byte MAC")
    return bytes((option_type, 1)) + bytes(mac)


def _ip6(address: AddressLike) -> bytes:
    raw = address if isinstance(address, (bytes, bytearray, memoryview)) else address.packed
    if len(raw) != 16:
        raise ValueError("IPv6 addresses are 16 bytes")
    return bytes(raw)


def build_neighbor_solicitation(
    src: AddressLike, dst: AddressLike, target: AddressLike, source_mac: BytesLike | None = None
) -> bytes:
    """NS for ``target``; omit ``source_mac`` when ``src`` is :: (duplicate address detection)."""
    body = _ip6(target) + (_link_option(ND_OPT_SOURCE_LINK_ADDR, source_mac) if source_mac is not None else b"")
    return build_icmpv6(src, dst, ICMPV6_NEIGHBOR_SOLICITATION, 0, 0, body)


def build_neighbor_advertisement(
    src: AddressLike,
    dst: AddressLike,
    target: AddressLike,
    target_mac: BytesLike | None,
    *,
    router: bool = False,
    solicited: bool = True,
    override: bool = True,
) -> bytes:
    flags = (NA_FLAG_ROUTER if router else 0) | (NA_FLAG_SOLICITED if solicited else 0) | (
        NA_FLAG_OVERRIDE if override else 0)
    body = _ip6(target) + (_link_option(ND_OPT_TARGET_LINK_ADDR, target_mac) if target_mac is not None else b"")
    return build_icmpv6(src, dst, ICMPV6_NEIGHBOR_ADVERTISEMENT, 0, flags, body)
