"""Holding a SYN unanswered until the listening client decides (SO_CONDITIONAL_ACCEPT, TDI_QUERY_ACCEPT).

A listener with an inspect handler (ListenEndpoint.set_inspect) is asked about each new SYN
before any SYN-ACK leaves, as Windows asks a conditional-accept socket's WskInspectEvent:

    verdict = inspect(listener, local, remote, token)
        ACCEPT   the SYN goes on to the listener as usual: SYN-ACK, handshake, accept upcall
        REFUSE   a RST answers the SYN (the peer's connect fails with "connection refused")
        PEND     nothing is sent; the SYN is held until listener.inspect_complete(token, accept)

While a SYN is held, the peer's retransmissions of it are absorbed (still no answer).  The held
SYN is dropped - and the abort handler told, as WskAbortEvent is - when the peer resets it or
sends nothing more for HELD_SYN_LIFETIME_NS (it gave up connecting).  At most the listener's SYN
queue limit of SYNs are held; more are dropped silently (the peer retransmits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any, Callable

from stack.kernel import DISPATCH_LEVEL, STATUS_INVALID_PARAMETER, STATUS_SUCCESS

from .addr import SockAddr, v4_mapped
from .tcp.segment import ACK, RST, SYN, rst_for_unexpected

if TYPE_CHECKING:
    from .tcp_glue import TcpLayer
    from .transport import ListenEndpoint

PEND = 0x103  # STATUS_PENDING: the verdict that holds the SYN
HELD_SYN_LIFETIME_NS = 30 * 1_000_000_000  # past the peer's last SYN retransmission (21 s on Windows)

InspectHandler = Callable[["ListenEndpoint", SockAddr, SockAddr, int], int]
InspectAbortHandler = Callable[["ListenEndpoint", int], None]


@dataclass(eq=False)
class HeldSyn:
    token: int
    key: tuple[bytes, int]  # (peer address, peer port)
    seg: Any
    src: bytes
    dst: bytes
    expiry: Any = None


@dataclass(eq=False)
class SynHold:
    inspect: InspectHandler
    abort: InspectAbortHandler | None
    held: dict[tuple[bytes, int], HeldSyn] = field(default_factory=dict)
    by_token: dict[int, HeldSyn] = field(default_factory=dict)
    next_token: int = 1
    admitting: tuple[bytes, int] | None = None  # the SYN being replayed after an accept
    syns_held: int = 0
    syns_refused: int = 0


def _addresses(listener: "ListenEndpoint", seg: Any, src: bytes, dst: bytes) -> tuple[SockAddr, SockAddr]:
    remote_ip: Any = IPv4Address(src) if len(src) == 4 else IPv6Address(src)
    local_ip: Any = IPv4Address(dst) if len(dst) == 4 else IPv6Address(dst)
    if listener.local.ip.version == 6 and len(src) == 4:  # a dual-stack listener sees v4-mapped addresses
        remote_ip, local_ip = v4_mapped(remote_ip), v4_mapped(local_ip)
    return SockAddr(local_ip, seg.dst_port), SockAddr(remote_ip, seg.src_port)


def inspect_segment(layer: "TcpLayer", listener: "ListenEndpoint", seg: Any, src: bytes, dst: bytes) -> bool:
    """Before the listener sees a segment: True when it was taken here (held, refused, absorbed)."""
    hold: SynHold = listener.syn_hold
    key = (src, seg.src_port)
    flags = seg.flags
    if flags & RST:
        held = hold.held.get(key)
        if held is not None:  # the peer gave up on the held SYN
            _drop(listener, held, notify=True)
            return True
        return False
    if not flags & SYN or flags & ACK or key == hold.admitting:
        return False
    held = hold.held.get(key)
    if held is not None:  # a retransmission of a held SYN: still no answer
        _arm_expiry(layer, listener, held)
        return True
    if len(hold.held) >= listener._core.syn_queue_limit:
        return True  # dropped: the peer retransmits
    local, remote = _addresses(listener, seg, src, dst)
    token = hold.next_token
    hold.next_token += 1
    verdict = hold.inspect(listener, local, remote, token)
    if verdict == PEND:
        if seg.payload:  # the NBL goes back after this upcall: keep a copy of a SYN's data
            data = b"".join(seg.payload)
            layer.kernel.copies.count(len(data), "held SYN data")
            seg.payload = (memoryview(data),)
        held = HeldSyn(token, key, seg, src, dst)
        hold.held[key] = hold.by_token[token] = held
        hold.syns_held += 1
        _arm_expiry(layer, listener, held)
        return True
    if verdict == STATUS_SUCCESS:
        return False
    _refuse(layer, seg, src, dst)
    hold.syns_refused += 1
    return True


def complete(layer: "TcpLayer", listener: "ListenEndpoint", token: int, accept: bool) -> int:
    """The client's decision on a held SYN: SYN-ACK (the handshake goes on) or RST."""
    hold: SynHold | None = listener.syn_hold
    held = hold.by_token.get(token) if hold is not None else None
    if held is None:
        return STATUS_INVALID_PARAMETER
    _drop(listener, held, notify=False)
    if not accept or listener.closed:
        _refuse(layer, held.seg, held.src, held.dst)
        hold.syns_refused += 1
        return STATUS_SUCCESS
    hold.admitting = held.key
    try:
        layer._listener_segment(listener, held.seg, None, held.src, held.dst)
    finally:
        hold.admitting = None
    return STATUS_SUCCESS


def drop_all(listener: "ListenEndpoint") -> None:
    """The listener closes: held SYNs are forgotten (the peers' connects time out)."""
    hold: SynHold | None = listener.syn_hold
    if hold is not None:
        for held in list(hold.held.values()):
            _drop(listener, held, notify=False)


def _refuse(layer: "TcpLayer", seg: Any, src: bytes, dst: bytes) -> None:
    rst = rst_for_unexpected(seg)
    if rst is not None:
        layer._send_bare(src, dst, rst)


def _drop(listener: "ListenEndpoint", held: HeldSyn, notify: bool) -> None:
    hold: SynHold = listener.syn_hold
    hold.held.pop(held.key, None)
    hold.by_token.pop(held.token, None)
    if held.expiry is not None:
        held.expiry.cancel()
        held.expiry = None
    if notify and hold.abort is not None and not listener.closed:
        hold.abort(listener, held.token)


def _arm_expiry(layer: "TcpLayer", listener: "ListenEndpoint", held: HeldSyn) -> None:
    if held.expiry is not None:
        held.expiry.cancel()
    k = layer.kernel

    def expire() -> None:
        held.expiry = None
        k.irql = DISPATCH_LEVEL  # a protocol timer: DISPATCH_LEVEL, as the transport's other timers
        if listener.syn_hold.by_token.get(held.token) is held:
            _drop(listener, held, notify=True)

    held.expiry = k.call_later(HELD_SYN_LIFETIME_NS, expire, label="TCP held SYN lifetime")
