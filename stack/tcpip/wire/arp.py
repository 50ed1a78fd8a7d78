"""ARP for Ethernet and IPv4 (RFC 826). Other hardware/protocol pairs are unsupported."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from stack.wire.checksum import AddressLike, BytesLike
from .errors import TRUNCATED, UNSUPPORTED, WireError

ARP_LEN = 28
ARP_REQUEST = 1
ARP_REPLY = 2
ARP_HTYPE_ETHERNET = 1
ARP_PTYPE_IPV4 = 0x0800

_PACKET = struct.Struct("!HHBBH6s4s6s4s")


@dataclass(frozen=True, slots=True)
class ArpPacket:
    operation: int
    sender_mac: bytes
    sender_ip: bytes
    target_mac: bytes
    target_ip: bytes

    @property
    def sender_address(self) -> IPv4Address:
        return IPv4Address(self.sender_ip)

    @property
    def target_address(self) -> IPv4Address:
        return IPv4Address(self.target_ip)

    @property
    def is_request(self) -> bool:
        return self.operation == ARP_REQUEST

    @property
    def is_reply(self) -> bool:
        return self.operation == ARP_REPLY


def parse_arp(buf: BytesLike) -> ArpPacket:
    """Parse an ARP packet; bytes after the 28 (Ethernet padding) are ignored."""
    if len(buf) < 8:
        raise WireError("arp", TRUNCATED, f"{len(buf)} bytes")
    htype, ptype, hlen, plen = struct.unpack_from("!HHBB", buf, 0)
    if htype != ARP_HTYPE_ETHERNET or ptype != ARP_PTYPE_IPV4 or hlen != 6 or plen != 4:
        raise WireError("arp", UNSUPPORTED, f"htype {htype} ptype {ptype:#06x} hlen {hlen} plen {plen}")
    if len(buf) < ARP_LEN:
        raise WireError("arp", TRUNCATED, f"{len(buf)} bytes")
    _, _, _, _, operation, smac, sip, tmac, tip = _PACKET.unpack_from(buf, 0)
    return ArpPacket(operation, smac, sip, tmac, tip)


def _ip4(address: AddressLike) -> bytes:
    raw = address.packed if isinstance(address, IPv4Address) else bytes(address)
    if len(raw) != 4:
        raise ValueError("ARP carries IPv4 addresses (4 bytes)")
    return raw


def emit_arp(
    buf: bytearray | memoryview,
    offset: int,
    *,
    operation: int,
    sender_mac: BytesLike,
    sender_ip: AddressLike,
    target_mac: BytesLike,
    target_ip: AddressLike,
) -> int:
    """Write a 28-byte ARP packet at ``offset``; returns the offset past it."""
    if len(sender_mac) != 6 or len(target_mac) != 6:
        raise ValueError("MAC addresses are 6 bytes")
    _PACKET.pack_into(
        buf, offset, ARP_HTYPE_ETHERNET, ARP_PTYPE_IPV4, 6, 4, operation,
        bytes(sender_mac), _ip4(sender_ip), bytes(target_mac), _ip4(target_ip),
    )
    return offset + ARP_LEN


def build_arp(
    operation: int, sender_mac: BytesLike, sender_ip: AddressLike, target_mac: BytesLike, target_ip: AddressLike
) -> bytes:
    out = bytearray(ARP_LEN)
    emit_arp(out, 0, operation=operation, sender_mac=sender_mac, sender_ip=sender_ip,
             target_mac=target_mac, target_ip=target_ip)
    return bytes(out)


def build_arp_request(sender_mac: BytesLike, sender_ip: AddressLike, target_ip: AddressLike) -> bytes:
    """Who-has ``target_ip``: target MAC all zeros (sent to broadcast)."""
    return build_arp(ARP_REQUEST, sender_mac, sender_ip, bytes(6), target_ip)


def build_arp_reply(
    sender_mac: BytesLike, sender_ip: AddressLike, target_mac: BytesLike, target_ip: AddressLike
) -> bytes:
    return build_arp(ARP_REPLY, sender_mac, sender_ip, target_mac, target_ip)
