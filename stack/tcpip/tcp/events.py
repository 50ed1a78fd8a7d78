"""What a connection tells its owner, drained with TcpConnection.drain_events()."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from .states import TcpState


@dataclass(frozen=True, slots=True)
class StateChanged:
    old: TcpState
    new: TcpState


@dataclass(frozen=True, slots=True)
class Established:
    """The three-way handshake completed (either side)."""


@dataclass(frozen=True, slots=True)
class DataAcked:
    """Every byte of the send() buffer that carried `token` is acknowledged."""
    token: object


@dataclass(frozen=True, slots=True)
class DataReceived:
    """`nbytes` more in-order bytes are ready for read(); push = PSH was seen."""
    nbytes: int
    push: bool


@dataclass(frozen=True, slots=True)
class PeerClosed:
    """The peer's FIN arrived in order: no more data will come."""


ResetReason = Literal["peer_reset", "refused", "timeout", "keepalive_timeout", "aborted"]


@dataclass(frozen=True, slots=True)
class Reset:
    reason: ResetReason


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection reached CLOSED; its TCB may be deleted."""


@dataclass(frozen=True, slots=True)
class Retransmitted:
    seq: int  # 32-bit wire sequence number of the retransmitted segment
    length: int  # sequence space it covers (payload + SYN + FIN)
    reason: Literal["rto", "fast", "sack", "rack", "tlp"]  # rack: RACK marked it lost; tlp: a loss probe (RFC 8985)


@dataclass(frozen=True, slots=True)
class LossProbe:
    """RFC 8985 TLP: a probe left (`recovered` False; `retransmission` says whether it resent the
    highest segment or sent new data), or an ACK showed that a probe repaired a loss (`recovered`)."""
    seq: int  # 32-bit wire sequence number of the probe / TLP.end_seq
    retransmission: bool
    recovered: bool = False


@dataclass(frozen=True, slots=True)
class OutOfOrderDropped:
    """In-window data beyond a gap that the receive buffer could not hold (its charge bound)."""
    seq: int  # 32-bit wire sequence number of the first byte not held
    length: int


TcpEvent = Union[StateChanged, Established, DataAcked, DataReceived, PeerClosed, Reset, Closed, Retransmitted,
                 LossProbe, OutOfOrderDropped]
