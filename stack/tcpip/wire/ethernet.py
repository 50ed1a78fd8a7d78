"""Ethernet II frames (no 802.1Q tags) and MAC address helpers."""

from __future__ import annotations

import struct
from typing import NamedTuple

from stack.wire.checksum import BytesLike
from .errors import TRUNCATED, WireError

ETHERNET_HEADER_LEN = 14
ETHERNET_MIN_FRAME = 60  # without FCS; shorter frames are padded on send
ETHERNET_MTU = 1500

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD

BROADCAST_MAC = b"\xff\xff\xff\xff\xff\xff"
ZERO_MAC = bytes(6)

_HEADER = struct.Struct("!6s6sH")
ETHERNET_HEADER = _HEADER  # dst, src, ethertype: for a receive path that unpacks in place


class EthernetHeader(NamedTuple):
    """A frozen record (a NamedTuple: one is built per packet, and a tuple is cheaper to make)."""

    dst: bytes
    src: bytes
    ethertype: int

    @property
    def is_broadcast(self) -> bool:
        return self.dst == BROADCAST_MAC

    @property
    def is_multicast(self) -> bool:
        """Group bit set (broadcast included)."""
        return bool(self.dst[0] & 1)


def format_mac(mac: BytesLike, sep: str = "-") -> str:
    """``18-03-73-c1-e8-72`` (the WinDbg !ndiskd spelling); pass ``sep=":"`` for tcpdump's."""
    return sep.join(f"{b:02x}" for b in bytes(mac))


def mac_from_str(text: str) -> bytes:
    """Parse ``18-03-73-c1-e8-72``, ``18:03:73:C1:E8:72`` or ``180373c1e872``."""
    cleaned = text.strip()
    parts = cleaned.replace(":", "-").split("-") if ("-" in cleaned or ":" in cleaned) else None
    if parts is None:
        if len(cleaned) != 12:
            raise ValueError(f"not a MAC address: {text!r}")
        parts = [cleaned[i : i + 2] for i in range(0, 12, 2)]
    if len(parts) != 6 or any(not (1 <= len(p) <= 2) for p in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"not a MAC address: {text!r}") from None


def parse_ethernet(buf: BytesLike) -> tuple[EthernetHeader, memoryview]:
    """Split a frame into its header and payload (which may include trailing padding)."""
    view = memoryview(buf)
    if len(view) < ETHERNET_HEADER_LEN:
        raise WireError("ethernet", TRUNCATED, f"{len(view)} bytes")
    dst, src, ethertype = _HEADER.unpack_from(view, 0)
    return EthernetHeader(dst, src, ethertype), view[ETHERNET_HEADER_LEN:]


def emit_ethernet(buf: bytearray | memoryview, offset: int, *, dst: BytesLike, src: BytesLike, ethertype: int) -> int:
    """Write a 14-byte header at ``offset``; returns the offset just past it."""
    if len(dst) != 6 or len(src) != 6:
        raise ValueError("MAC addresses are 6 bytes")
    _HEADER.pack_into(buf, offset, bytes(dst), bytes(src), ethertype)
    return offset + ETHERNET_HEADER_LEN


def build_ethernet(dst: BytesLike, src: BytesLike, ethertype: int, payload: BytesLike = b"", *, pad: bool = False) -> bytes:
    """A whole frame as bytes; ``pad`` zero-fills up to the 60-byte minimum."""
    out = bytearray(ETHERNET_HEADER_LEN + len(payload))
    emit_ethernet(out, 0, dst=dst, src=src, ethertype=ethertype)
    out[ETHERNET_HEADER_LEN:] = payload
    if pad and len(out) < ETHERNET_MIN_FRAME:
        out.extend(bytes(ETHERNET_MIN_FRAME - len(out)))
    return bytes(out)
