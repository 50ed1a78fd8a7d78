"""TCP glue, shared pieces: the TCB record, request records, constants and helpers.

Part of the TcpLayer that stack/tcpip/tcp_glue.py assembles."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable
from stack.kernel import (STATUS_CONNECTION_ABORTED, STATUS_CONNECTION_REFUSED, STATUS_CONNECTION_RESET,
                          STATUS_IO_TIMEOUT)
from stack.kernel.mdl import Mdl
from ..addr import SockAddr
from ..sharing import Binding, Share
from ..tcp import Reset, TcpConnection, TcpSegment, TcpState
from ..tcp.seq import SEQ_MASK
from ..transport import ConnectComplete, ConnectionEndpoint, ListenEndpoint, RequestComplete

if TYPE_CHECKING:
    from ..ip import Path, RxFrame


TCB_TAG = "TcpE"
LISTENER_TAG = "TcpL"
TCB_SIZE = 0x2C0
LISTENER_SIZE = 0x100
EPHEMERAL_FIRST = 49152
EPHEMERAL_LAST = 65535
DYNAMIC_PORT_MIN_START = 1025
DYNAMIC_PORT_MIN_COUNT = 255
PUSH_TIMER_NS = 500_000_000  # a receive without PSH completes after this long (Windows' push timer)
_HALF = 1 << 31
MAX_PAYLOAD_MDLS = 64  # partial MDLs one segment (up to 64 KiB of LSO) may take from the MDL pool
RESET_STATUS = {
    "peer_reset": STATUS_CONNECTION_RESET,
    "refused": STATUS_CONNECTION_REFUSED,
    "timeout": STATUS_IO_TIMEOUT,
    "keepalive_timeout": STATUS_IO_TIMEOUT,
    "aborted": STATUS_CONNECTION_ABORTED,
}
def _seq_le(a: int, b: int) -> bool:
    return ((b - a) & SEQ_MASK) < _HALF
@dataclass(slots=True)
class SendRequest:
    """One client send: bytes [start, start+length) of the connection's stream."""

    start: int
    length: int
    pieces: list[tuple[Mdl, int, int]]  # (source MDL, offset in it, bytes) covering the request
    completion: RequestComplete | None
    acked: bool = False
    inflight: int = 0  # NBLs on their way to the wire that reference these pages
    done: bool = False
    failed: int = 0  # the status it fails with once its NBLs are back (reset/abort while in flight)
@dataclass(slots=True)
class ReceiveRequest:
    mdl: Mdl
    offset: int
    length: int
    completion: RequestComplete
    flags: int
    filled: int = 0
@dataclass(slots=True)
class Tcb:
    """The transport's record of one connection (its endpoint is what the client holds)."""

    endpoint: ConnectionEndpoint
    core: TcpConnection | None = None
    key: tuple | None = None  # (local ip bytes, local port, remote ip bytes, remote port)
    path: "Path | None" = None
    listener: ListenEndpoint | None = None
    timer: Any = None
    timer_at: int | None = None
    snd_base: int = 0  # 32-bit sequence number of stream offset 0 (ISS + 1)
    sends: list[SendRequest] = field(default_factory=list)
    send_starts: list[int] = field(default_factory=list)
    send_head: int = 0
    stream_end: int = 0
    receives: deque = field(default_factory=deque)
    held: list[tuple[int, Any]] = field(default_factory=list)  # (end seq32, RxFrame) NBLs the core references
    held_sorted: bool = True  # `held` ends ascend (no out-of-order arrival among them): release pops a prefix
    connect_completion: ConnectComplete | None = None
    disconnect_completion: Callable[[int], None] | None = None
    fail_status: int | None = None  # overrides the status of the next Reset (host unreachable, close)
    busy: bool = False
    dirty: bool = False
    eof_delivered: bool = False
    reset_delivered: bool = False
    accepted: bool = False
    last_push: bool = False
    push_end: int | None = None  # end of the latest PSH segment not yet in order (32-bit seq)
    push_pending: bool = False  # in-order data up to a PSH is waiting for a posted receive
    push_timer: Any = None
    nodelay: bool = False
    freed: bool = False
    binding: Binding | None = None  # the local address the client bound explicitly
    rx_indicating: Any = None  # the RxFrame being processed (retain_indication can keep it)
_OPEN = frozenset({TcpState.ESTABLISHED, TcpState.CLOSE_WAIT})  # what tcpCurrEstab counts
_OPENING = frozenset({TcpState.SYN_SENT, TcpState.SYN_RECEIVED})
def _count_transition(counters: Any, old: TcpState, new: TcpState) -> None:
    """The RFC 1213 TCP MIB counters that `netstat -s` prints, from one state change:
    tcpAttemptFails (SYN-SENT/SYN-RCVD -> CLOSED), tcpEstabResets (ESTABLISHED/CLOSE-WAIT ->
    CLOSED) and tcpCurrEstab (connections now in ESTABLISHED or CLOSE-WAIT)."""
    if new is TcpState.CLOSED:
        if old in _OPENING:
            counters.tcp_failed_connection_attempts += 1
        elif old in _OPEN:
            counters.tcp_reset_connections += 1
    was, now = old in _OPEN, new in _OPEN
    if was != now:
        counters.tcp_current_connections += 1 if now else -1
_ACK = 0x10
_CAN_SEND = frozenset({TcpState.SYN_SENT, TcpState.SYN_RECEIVED, TcpState.ESTABLISHED, TcpState.CLOSE_WAIT})
def _ignore_status(status: int) -> None:
    pass
def _binding(local: SockAddr, share: Share, owner: object, v6only: bool) -> Binding:
    wildcard = local.is_unspecified
    return Binding(local.ip.version, None if wildcard else local.ip.packed, local.port, share, owner,
                   dual_stack=wildcard and local.ip.version == 6 and not v6only)
def _mdl_pieces(mdl: Mdl, offset: int, length: int) -> list[tuple[Mdl, int, int]]:
    """(MDL, offset, bytes) pieces of a chain covering [offset, offset+length)."""
    pieces: list[tuple[Mdl, int, int]] = []
    m: Mdl | None = mdl
    while m is not None and length > 0:
        count = m.byte_count
        if offset >= count:
            offset -= count
        else:
            take = min(count - offset, length)
            pieces.append((m, offset, take))
            length -= take
            offset = 0
        m = m.next
    if length > 0:
        raise ValueError("range runs past the end of the MDL chain")
    return pieces
def _summary(src: bytes, dst: bytes, seg: TcpSegment) -> str:
    from ipaddress import ip_address
    return f"{ip_address(src)}.{seg.src_port} > {ip_address(dst)}.{seg.dst_port}: {seg.describe()}"
