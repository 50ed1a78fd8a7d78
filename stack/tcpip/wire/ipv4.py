"""IPv4 header (RFC 791): options allowed, fragments recognised but not reassembled."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address
from typing import NamedTuple

from stack.wire.checksum import AddressLike, BytesLike, ones_sum
from .errors import BAD_CHECKSUM, BAD_HEADER_LENGTH, BAD_LENGTH, BAD_VERSION, TRUNCATED, WireError

IPV4_HEADER_LEN = 20
IPV4_MAX_HEADER_LEN = 60

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58

FLAG_DF = 0x2  # in the 3-bit flags field
FLAG_MF = 0x1

DEFAULT_TTL = 128  # Windows' default

_FIXED = struct.Struct("!BBHHHBBH4s4s")
_LAYER = "ipv4"


class Ipv4Header(NamedTuple):
    """A frozen record; a NamedTuple because one is built for every packet received and a
    tuple is several times cheaper to make than a frozen dataclass."""

    header_length: int  # bytes (IHL * 4)
    tos: int  # DSCP << 2 | ECN
    total_length: int
    identification: int
    flags: int  # 3 bits: reserved, DF, MF
    fragment_offset: int  # in bytes (wire field * 8)
    ttl: int
    protocol: int
    checksum: int
    src: bytes
    dst: bytes
    options: bytes = b""

    @property
    def src_address(self) -> IPv4Address:
        return IPv4Address(self.src)

    @property
    def dst_address(self) -> IPv4Address:
        return IPv4Address(self.dst)

    @property
    def dont_fragment(self) -> bool:
        return bool(self.flags & FLAG_DF)

    @property
    def more_fragments(self) -> bool:
        return bool(self.flags & FLAG_MF)

    @property
    def is_fragment(self) -> bool:
        """Part of a fragmented datagram (first, middle or last piece)."""
        return self.flags & FLAG_MF != 0 or self.fragment_offset != 0

    @property
    def payload_length(self) -> int:
        return self.total_length - self.header_length


def parse_ipv4(
    buf: BytesLike, *, verify_checksum: bool = True, allow_truncated: bool = False
) -> tuple[Ipv4Header, memoryview]:
    """Parse an IPv4 header; the payload is cut to the total length (dropping Ethernet padding).

    ``allow_truncated`` accepts a datagram shorter than its total length and
    returns what is there: for the copy quoted inside an ICMP error.
    """
    view = memoryview(buf)
    size = len(view)
    if size < IPV4_HEADER_LEN:
        raise WireError(_LAYER, TRUNCATED, f"{size} bytes")
    ver_ihl, tos, total_length, ident, flags_frag, ttl, proto, checksum, src, dst = _FIXED.unpack_from(view, 0)
    if ver_ihl >> 4 != 4:
        raise WireError(_LAYER, BAD_VERSION, f"version {ver_ihl >> 4}")
    header_length = (ver_ihl & 0x0F) * 4
    if header_length < IPV4_HEADER_LEN:
        raise WireError(_LAYER, BAD_HEADER_LENGTH, f"ihl {header_length // 4}")
    if size < header_length:
        raise WireError(_LAYER, TRUNCATED, f"header {header_length} > {size} bytes")
    if total_length < header_length:
        raise WireError(_LAYER, BAD_LENGTH, f"total length {total_length} < header {header_length}")
    if total_length > size:
        if not allow_truncated:
            raise WireError(_LAYER, TRUNCATED, f"total length {total_length} > {size} bytes")
        end = size
    else:
        end = total_length
    if verify_checksum and ones_sum(view[:header_length]) != 0xFFFF:
        raise WireError(_LAYER, BAD_CHECKSUM, f"checksum {checksum:#06x}")
    options = bytes(view[IPV4_HEADER_LEN:header_length]) if header_length > IPV4_HEADER_LEN else b""
    header = Ipv4Header(
        header_length, tos, total_length, ident, flags_frag >> 13, (flags_frag & 0x1FFF) * 8,
        ttl, proto, checksum, src, dst, options,
    )
    return header, view[header_length:end]


def ipv4_header_checksum_ok(buf: BytesLike) -> bool:
    """Check the header checksum of a datagram known to have a sane header length."""
    if len(buf) < IPV4_HEADER_LEN:
        return False
    header_length = (buf[0] & 0x0F) * 4
    return IPV4_HEADER_LEN <= header_length <= len(buf) and ones_sum(memoryview(buf)[:header_length]) == 0xFFFF


def _ip4(address: AddressLike) -> bytes:
    if type(address) is bytes and len(address) == 4:  # the usual case: no conversion
        return address
    raw = address.packed if isinstance(address, IPv4Address) else bytes(address)
    if len(raw) != 4:
        raise ValueError("IPv4 addresses are 4 bytes")
    return raw


def emit_ipv4(
    buf: bytearray | memoryview,
    offset: int,
    *,
    src: AddressLike,
    dst: AddressLike,
    protocol: int,
    payload_length: int,
    ttl: int = DEFAULT_TTL,
    identification: int = 0,
    dont_fragment: bool = False,
    more_fragments: bool = False,
    fragment_offset: int = 0,
    tos: int = 0,
    options: BytesLike = b"",
    large_send: bool = False,
) -> int:
    """Write an IPv4 header with its checksum at ``offset``; returns the offset past it.

    ``options`` must already be padded to a multiple of 4 bytes;
    ``fragment_offset`` is in bytes and must be a multiple of 8.  ``large_send``: an LSOv2
    send longer than the length field holds gets Total Length 0 (the NIC cuts it).
    """
    if len(options) % 4 or len(options) > IPV4_MAX_HEADER_LEN - IPV4_HEADER_LEN:
        raise ValueError("IPv4 options must be padded to 4 bytes and at most 40 bytes")
    if fragment_offset % 8 or not 0 <= fragment_offset <= 0x1FFF * 8:
        raise ValueError("fragment offset must be a multiple of 8 below 65536")
    header_length = IPV4_HEADER_LEN + len(options)
    total_length = header_length + payload_length
    if total_length > 0xFFFF:
        if not large_send:
            raise ValueError(f"IPv4 datagram too long: {total_length}")
        total_length = 0
    flags = (FLAG_DF if dont_fragment else 0) | (FLAG_MF if more_fragments else 0)
    ver_ihl_tos = (0x40 | (header_length // 4)) << 8 | tos
    identification &= 0xFFFF
    flags_fragment = (flags << 13) | (fragment_offset // 8)
    src_raw = _ip4(src)
    dst_raw = _ip4(dst)
    # The checksum straight from the field values: a sum of 16-bit words is congruent to the
    # words' big-endian concatenation modulo 0xFFFF (see checksum.py), so each address counts
    # as one integer.  The version nibble makes the header non-zero, so a residue of 0 is the
    # ones'-complement sum 0xFFFF and the field 0.
    residue = (ver_ihl_tos + total_length + identification + flags_fragment + (ttl << 8 | protocol)
               + int.from_bytes(src_raw, "big") + int.from_bytes(dst_raw, "big")
               + (int.from_bytes(options, "big") if options else 0)) % 0xFFFF
    checksum = 0xFFFF - residue if residue else 0
    _FIXED.pack_into(buf, offset, ver_ihl_tos >> 8, tos, total_length, identification, flags_fragment, ttl, protocol,
                     checksum, src_raw, dst_raw)
    if options:
        buf[offset + IPV4_HEADER_LEN : offset + header_length] = options
    return offset + header_length


def ipv4_address_sum(src: bytes, dst: bytes) -> int:
    """The two addresses' share of an IPv4 header checksum (emit_ipv4_own's `address_sum`): a
    route's addresses do not change, so its sender works this out once."""
    return int.from_bytes(src, "big") + int.from_bytes(dst, "big")


def emit_ipv4_own(buf: bytearray | memoryview, offset: int, src: bytes, dst: bytes, address_sum: int,
                  protocol: int, payload_length: int, ttl: int, identification: int) -> int:
    """emit_ipv4 for the header this host's TCP puts on every segment - no options, DF set, not a
    fragment, at most 64 KB - from what its route already knows: the same bytes, without the
    checks and conversions emit_ipv4 makes for any caller.  `address_sum` is
    ipv4_address_sum(src, dst).  Returns the offset past the header."""
    total_length = IPV4_HEADER_LEN + payload_length
    identification &= 0xFFFF
    # emit_ipv4's residue with version/IHL 0x45, TOS 0 and flags DF (0x4000), as one sum
    residue = (0x8500 + total_length + identification + (ttl << 8 | protocol) + address_sum) % 0xFFFF
    _FIXED.pack_into(buf, offset, 0x45, 0, total_length, identification, FLAG_DF << 13, ttl, protocol,
                     0xFFFF - residue if residue else 0, src, dst)
    return offset + IPV4_HEADER_LEN


def build_ipv4(src: AddressLike, dst: AddressLike, protocol: int, payload: BytesLike = b"", **fields) -> bytes:
    """A whole datagram as bytes; ``fields`` are emit_ipv4's keyword options."""
    header_length = IPV4_HEADER_LEN + len(fields.get("options", b""))
    out = bytearray(header_length + len(payload))
    emit_ipv4(out, 0, src=src, dst=dst, protocol=protocol, payload_length=len(payload), **fields)
    out[header_length:] = payload
    return bytes(out)
