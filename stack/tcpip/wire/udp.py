"""UDP (RFC 768) with the IPv4/IPv6 pseudo-header checksum."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from stack.wire.checksum import (
    AddressLike,
    BytesLike,
    Payload,
    as_chunks,
    chunks_length,
    pseudo_header_sum,
    transport_checksum,
    transport_checksum_ok,
)
from .errors import BAD_CHECKSUM, BAD_LENGTH, TRUNCATED, WireError
from .ipv4 import IPPROTO_UDP

UDP_HEADER_LEN = 8

_HEADER = struct.Struct("!HHHH")
_LAYER = "udp"


@dataclass(frozen=True, slots=True)
class UdpHeader:
    src_port: int
    dst_port: int
    length: int  # header + payload, from the length field
    checksum: int  # 0 over IPv4 means "not computed"


def parse_udp(
    buf: BytesLike,
    src: AddressLike | None = None,
    dst: AddressLike | None = None,
    *,
    verify_checksum: bool = True,
) -> tuple[UdpHeader, memoryview]:
    """Parse a datagram, cutting the payload to the length field.

    The checksum is verified when both IP addresses are given (4 or 16 bytes
    pick the pseudo-header); a zero checksum is accepted over IPv4 only.
    """
    view = memoryview(buf)
    size = len(view)
    if size < UDP_HEADER_LEN:
        raise WireError(_LAYER, TRUNCATED, f"{size} bytes")
    src_port, dst_port, length, checksum = _HEADER.unpack_from(view, 0)
    if length < UDP_HEADER_LEN:
        raise WireError(_LAYER, BAD_LENGTH, f"length field {length}")
    if length > size:
        raise WireError(_LAYER, TRUNCATED, f"length field {length} > {size} bytes")
    datagram = view[:length] if length != size else view
    if verify_checksum and src is not None and dst is not None:
        is_v4 = len(src if isinstance(src, (bytes, bytearray, memoryview)) else src.packed) == 4
        if checksum == 0:
            if not is_v4:
                raise WireError(_LAYER, BAD_CHECKSUM, "zero checksum over IPv6")
        elif not transport_checksum_ok(pseudo_header_sum(src, dst, IPPROTO_UDP, length), (datagram,)):
            raise WireError(_LAYER, BAD_CHECKSUM, f"checksum {checksum:#06x}")
    return UdpHeader(src_port, dst_port, length, checksum), datagram[UDP_HEADER_LEN:]


def emit_udp(
    buf: bytearray | memoryview,
    offset: int,
    *,
    src_port: int,
    dst_port: int,
    payload: Payload = (),
    src: AddressLike | None = None,
    dst: AddressLike | None = None,
) -> int:
    """Write the 8-byte header; ``payload`` (one buffer or chunks) is only read, never copied.

    With both addresses the checksum is computed over pseudo-header, header and
    payload; without them the field is left 0 (for checksum offload to fill).
    """
    chunks = as_chunks(payload)
    length = UDP_HEADER_LEN + chunks_length(chunks)
    if length > 0xFFFF:
        raise ValueError(f"UDP datagram too long: {length}")
    _HEADER.pack_into(buf, offset, src_port, dst_port, length, 0)
    if src is not None and dst is not None:
        header = memoryview(buf)[offset : offset + UDP_HEADER_LEN]
        checksum = transport_checksum(pseudo_header_sum(src, dst, IPPROTO_UDP, length), (header, *chunks))
        struct.pack_into("!H", buf, offset + 6, checksum or 0xFFFF)  # 0 would mean "none"
    return offset + UDP_HEADER_LEN


def build_udp(src: AddressLike, dst: AddressLike, src_port: int, dst_port: int, payload: BytesLike = b"") -> bytes:
    """A whole datagram (header + payload) with its checksum, for tests and tools."""
    out = bytearray(UDP_HEADER_LEN + len(payload))
    out[UDP_HEADER_LEN:] = payload
    emit_udp(out, 0, src_port=src_port, dst_port=dst_port, payload=payload, src=src, dst=dst)
    return bytes(out)
