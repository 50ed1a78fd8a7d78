"""IPv6 fixed header (RFC 8200), skipping the common extension headers."""

from __future__ import annotations

import struct
from typing import NamedTuple
from ipaddress import IPv6Address

from stack.wire.checksum import AddressLike, BytesLike
from .errors import BAD_VERSION, TRUNCATED, WireError

IPV6_HEADER_LEN = 40

IPPROTO_HOPOPTS = 0
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_AH = 51
IPPROTO_NONE = 59
IPPROTO_DSTOPTS = 60

DEFAULT_HOP_LIMIT = 128  # Windows' default

_FIXED = struct.Struct("!IHBB16s16s")
_LAYER = "ipv6"
_GENERIC_EXTENSIONS = frozenset((IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS))


class Ipv6Header(NamedTuple):
    """A frozen record (a NamedTuple: one is built per packet, and a tuple is cheaper to make)."""

    traffic_class: int
    flow_label: int
    payload_length: int
    next_header: int  # as in the fixed header
    hop_limit: int
    src: bytes
    dst: bytes
    protocol: int  # upper-layer protocol after any skipped extension headers
    extension_headers: tuple[int, ...] = ()
    fragment_offset: int = 0  # bytes, from a Fragment header
    more_fragments: bool = False
    fragment_id: int | None = None
    fragment_header_at: int | None = None  # offset of the Fragment header in the packet

    @property
    def src_address(self) -> IPv6Address:
        return IPv6Address(self.src)

    @property
    def dst_address(self) -> IPv6Address:
        return IPv6Address(self.dst)

    @property
    def is_fragment(self) -> bool:
        """A real fragment; an atomic fragment (offset 0, no M flag) is not."""
        return self.more_fragments or self.fragment_offset != 0


def parse_ipv6(buf: BytesLike, *, skip_extension_headers: bool = True) -> tuple[Ipv6Header, memoryview]:
    """Parse the fixed header and cut the payload to the payload length.

    With ``skip_extension_headers`` the Hop-by-Hop, Routing, Destination
    Options, Fragment and AH headers are stepped over and the returned view
    starts at the upper-layer header named by ``protocol``.
    """
    view = memoryview(buf)
    size = len(view)
    if size < IPV6_HEADER_LEN:
        raise WireError(_LAYER, TRUNCATED, f"{size} bytes")
    first, payload_length, next_header, hop_limit, src, dst = _FIXED.unpack_from(view, 0)
    if first >> 28 != 6:
        raise WireError(_LAYER, BAD_VERSION, f"version {first >> 28}")
    end = IPV6_HEADER_LEN + payload_length
    if end > size:
        raise WireError(_LAYER, TRUNCATED, f"payload length {payload_length} > {size - IPV6_HEADER_LEN} bytes")
    protocol = next_header
    offset = IPV6_HEADER_LEN
    extensions: list[int] = []
    fragment_offset = 0
    more_fragments = False
    fragment_id: int | None = None
    fragment_header_at: int | None = None
    if skip_extension_headers:
        while protocol in _GENERIC_EXTENSIONS or protocol == IPPROTO_FRAGMENT or protocol == IPPROTO_AH:
            if end - offset < 8:
                raise WireError(_LAYER, TRUNCATED, f"extension header {protocol}")
            following = view[offset]
            if protocol == IPPROTO_FRAGMENT:
                length = 8
                fragment_header_at = offset
                frag_field, fragment_id = struct.unpack_from("!HI", view, offset + 2)
                fragment_offset = frag_field & 0xFFF8
                more_fragments = bool(frag_field & 1)
            elif protocol == IPPROTO_AH:
                length = (view[offset + 1] + 2) * 4
            else:
                length = (view[offset + 1] + 1) * 8
            if offset + length > end:
                raise WireError(_LAYER, TRUNCATED, f"extension header {protocol}")
            extensions.append(protocol)
            offset += length
            protocol = following
            if fragment_offset:
                break  # a later fragment: what follows is data, not another header
    header = Ipv6Header(
        (first >> 20) & 0xFF, first & 0xFFFFF, payload_length, next_header, hop_limit, src, dst,
        protocol, tuple(extensions), fragment_offset, more_fragments, fragment_id, fragment_header_at,
    )
    return header, view[offset:end]


def _ip6(address: AddressLike) -> bytes:
    raw = address.packed if isinstance(address, IPv6Address) else bytes(address)
    if len(raw) != 16:
        raise ValueError("IPv6 addresses are 16 bytes")
    return raw


def emit_ipv6(
    buf: bytearray | memoryview,
    offset: int,
    *,
    src: AddressLike,
    dst: AddressLike,
    next_header: int,
    payload_length: int,
    hop_limit: int = DEFAULT_HOP_LIMIT,
    traffic_class: int = 0,
    flow_label: int = 0,
) -> int:
    """Write the 40-byte fixed header at ``offset``; returns the offset past it."""
    if not 0 <= payload_length <= 0xFFFF:
        raise ValueError(f"IPv6 payload too long: {payload_length}")
    first = (6 << 28) | ((traffic_class & 0xFF) << 20) | (flow_label & 0xFFFFF)
    _FIXED.pack_into(buf, offset, first, payload_length, next_header, hop_limit, _ip6(src), _ip6(dst))
    return offset + IPV6_HEADER_LEN


def build_ipv6(src: AddressLike, dst: AddressLike, next_header: int, payload: BytesLike = b"", **fields) -> bytes:
    """A whole packet as bytes; ``fields`` are emit_ipv6's keyword options."""
    out = bytearray(IPV6_HEADER_LEN + len(payload))
    emit_ipv6(out, 0, src=src, dst=dst, next_header=next_header, payload_length=len(payload), **fields)
    out[IPV6_HEADER_LEN:] = payload
    return bytes(out)


def solicited_node_multicast(address: AddressLike) -> bytes:
    """ff02::1:ffXX:XXXX for the low 24 bits of ``address`` (RFC 4291 2.7.1)."""
    raw = _ip6(address)
    return b"\xff\x02" + bytes(9) + b"\x01\xff" + raw[13:]


def multicast_mac_v6(address: AddressLike) -> bytes:
    """33-33-XX-XX-XX-XX for an IPv6 multicast group (RFC 2464 7)."""
    return b"\x33\x33" + _ip6(address)[12:]
