"""ICMPv4 (RFC 792): echo request/reply and destination unreachable."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from stack.wire.checksum import BytesLike, Payload, as_chunks, ones_sum, transport_checksum
from .errors import BAD_CHECKSUM, TRUNCATED, WireError
from .ipv4 import IPPROTO_TCP, IPPROTO_UDP, Ipv4Header, parse_ipv4

ICMP_HEADER_LEN = 8

ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACHABLE = 3
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11

# Destination-unreachable codes.
ICMP_NET_UNREACHABLE = 0
ICMP_HOST_UNREACHABLE = 1
ICMP_PROTOCOL_UNREACHABLE = 2
ICMP_PORT_UNREACHABLE = 3
ICMP_FRAGMENTATION_NEEDED = 4

_HEADER = struct.Struct("!BBHI")
_LAYER = "icmp"


@dataclass(frozen=True, slots=True)
class IcmpHeader:
    icmp_type: int
    code: int
    checksum: int
    rest_of_header: int  # the second 32-bit word, meaning depends on the type

    @property
    def identifier(self) -> int:
        """Echo identifier."""
        return self.rest_of_header >> 16

    @property
    def sequence(self) -> int:
        """Echo sequence number."""
        return self.rest_of_header & 0xFFFF

    @property
    def next_hop_mtu(self) -> int:
        """For fragmentation-needed (RFC 1191)."""
        return self.rest_of_header & 0xFFFF

    @property
    def is_error(self) -> bool:
        return self.icmp_type in (ICMP_DEST_UNREACHABLE, ICMP_TIME_EXCEEDED)


@dataclass(frozen=True, slots=True)
class IcmpQuote:
    """The start of the datagram an ICMP error is about."""

    ip: Ipv4Header
    src_port: int | None  # for TCP/UDP when the first 4 bytes are present
    dst_port: int | None
    transport: memoryview  # the quoted bytes after the IP header


def parse_icmp(buf: BytesLike, *, verify_checksum: bool = True) -> tuple[IcmpHeader, memoryview]:
    """Parse the 8-byte header; the payload is echo data or the quoted datagram."""
    view = memoryview(buf)
    if len(view) < ICMP_HEADER_LEN:
        raise WireError(_LAYER, TRUNCATED, f"{len(view)} bytes")
    icmp_type, code, checksum, rest = _HEADER.unpack_from(view, 0)
    if verify_checksum and ones_sum(view) != 0xFFFF:
        raise WireError(_LAYER, BAD_CHECKSUM, f"checksum {checksum:#06x}")
    return IcmpHeader(icmp_type, code, checksum, rest), view[ICMP_HEADER_LEN:]


def parse_icmp_quote(payload: BytesLike) -> IcmpQuote:
    """Parse the datagram quoted by an ICMP error (it is usually cut short)."""
    ip, transport = parse_ipv4(payload, verify_checksum=False, allow_truncated=True)
    src_port = dst_port = None
    if ip.protocol in (IPPROTO_TCP, IPPROTO_UDP) and len(transport) >= 4 and ip.fragment_offset == 0:
        src_port, dst_port = struct.unpack_from("!HH", transport, 0)
    return IcmpQuote(ip, src_port, dst_port, transport)


def emit_icmp(
    buf: bytearray | memoryview,
    offset: int,
    *,
    icmp_type: int,
    code: int = 0,
    rest_of_header: int = 0,
    payload: Payload = (),
) -> int:
    """Write the 8-byte header, checksummed over itself and ``payload`` (not copied).

    Returns the offset past the header; the caller places the payload after it.
    """
    _HEADER.pack_into(buf, offset, icmp_type, code, 0, rest_of_header)
    header = memoryview(buf)[offset : offset + ICMP_HEADER_LEN]
    checksum = transport_checksum(0, (header, *as_chunks(payload)))
    struct.pack_into("!H", buf, offset + 2, checksum)
    return offset + ICMP_HEADER_LEN


def build_icmp(icmp_type: int, code: int = 0, rest_of_header: int = 0, payload: BytesLike = b"") -> bytes:
    out = bytearray(ICMP_HEADER_LEN + len(payload))
    out[ICMP_HEADER_LEN:] = payload
    emit_icmp(out, 0, icmp_type=icmp_type, code=code, rest_of_header=rest_of_header, payload=payload)
    return bytes(out)


def build_icmp_echo_request(identifier: int, sequence: int, data: BytesLike = b"") -> bytes:
    return build_icmp(ICMP_ECHO_REQUEST, 0, (identifier & 0xFFFF) << 16 | (sequence & 0xFFFF), data)


def build_icmp_echo_reply(identifier: int, sequence: int, data: BytesLike = b"") -> bytes:
    return build_icmp(ICMP_ECHO_REPLY, 0, (identifier & 0xFFFF) << 16 | (sequence & 0xFFFF), data)


def icmp_quote_length(original_datagram: BytesLike) -> int:
    """How much of a datagram an error quotes: its IP header plus 8 bytes (RFC 792)."""
    if len(original_datagram) < 1:
        return 0
    header_length = max((original_datagram[0] & 0x0F) * 4, 20)
    return min(len(original_datagram), header_length + 8)


def build_icmp_dest_unreachable(
    code: int, original_datagram: BytesLike, *, next_hop_mtu: int = 0, quote_length: int | None = None
) -> bytes:
    """Destination unreachable (e.g. ``ICMP_PORT_UNREACHABLE``) quoting ``original_datagram``."""
    if quote_length is None:
        quote_length = icmp_quote_length(original_datagram)
    quote = bytes(memoryview(original_datagram)[:quote_length])
    return build_icmp(ICMP_DEST_UNREACHABLE, code, next_hop_mtu & 0xFFFF, quote)
