"""Typed events the transport publishes on the world's event bus.

Each is built only when somebody listens (`if bus.subscribers:`), so the
per-packet cost of observability is one list test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from stack.kernel.events import Event


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpStateChanged(Event):
    kind: ClassVar[str] = "tcp.state"
    conn: int  # the TCB's kernel address
    local: str
    remote: str
    old: str
    new: str

    def describe(self) -> str:
        return f"TCB {self.conn:x} {self.local} -> {self.remote}: {self.old} -> {self.new}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentSent(Event):
    kind: ClassVar[str] = "tcp.send"
    conn: int
    summary: str  # tcpdump-like: "10.0.0.2.49152 > 10.0.0.1.7: Flags [P.], seq 1:101, ack 1, win 512, length 100"
    length: int  # payload bytes

    def describe(self) -> str:
        return f"TCP send {self.summary}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentRetransmitted(Event):
    """A segment sent again: reason fast (fast retransmit), sack (RFC 6675 / PRR recovery) or rto
    (going back after a retransmission timeout) - `bp /e tcp.retransmit fast` stops at a loss."""
    kind: ClassVar[str] = "tcp.retransmit"
    conn: int
    tcp_seq: int  # the wire sequence number
    length: int
    reason: str

    def describe(self) -> str:
        return f"TCP retransmit ({self.reason}) seq {self.tcp_seq} length {self.length}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentReceived(Event):
    kind: ClassVar[str] = "tcp.recv"
    conn: int  # 0 when no connection matched
    summary: str
    length: int

    def describe(self) -> str:
        return f"TCP recv {self.summary}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PacketDropped(Event):
    kind: ClassVar[str] = "ip.drop"
    layer: str  # "ethernet", "arp", "ipv4", "ipv6", "icmp", "icmpv6", "udp", "tcp", "neighbor"
    reason: str
    detail: str = ""

    def describe(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        return f"drop {self.layer}: {self.reason}{extra}"


@dataclass(frozen=True, slots=True, kw_only=True)
class NeighborStateChanged(Event):
    kind: ClassVar[str] = "ip.neighbor"
    address: str
    mac: str
    old: str
    new: str

    def describe(self) -> str:
        return f"neighbor {self.address} [{self.mac}] {self.old} -> {self.new}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DatagramSent(Event):
    kind: ClassVar[str] = "ip.send"
    summary: str
    length: int

    def describe(self) -> str:
        return f"IP send {self.summary}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DatagramReceived(Event):
    kind: ClassVar[str] = "ip.recv"
    summary: str
    length: int

    def describe(self) -> str:
        return f"IP recv {self.summary}"


@dataclass(frozen=True, slots=True, kw_only=True)
class FragmentReassembled(Event):
    kind: ClassVar[str] = "ip.reassembled"
    version: int
    identification: int
    fragments: int
    length: int  # of the whole datagram, header included

    def describe(self) -> str:
        return f"IPv{self.version} reassembled id {self.identification:#x}: {self.fragments} fragments, {self.length} bytes"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientUpcall(Event):
    kind: ClassVar[str] = "tcpip.upcall"
    endpoint: int
    what: str  # "accept", "receive", "disconnect", "connect-complete", "send-complete", "receive-complete"
    status: int = 0
    nbytes: int = 0

    def describe(self) -> str:
        return f"upcall {self.what} endpoint {self.endpoint:x} status {self.status:#x} bytes {self.nbytes}"
