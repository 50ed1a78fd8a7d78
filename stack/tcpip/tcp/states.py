"""Connection states (RFC 9293 section 3.3.2) and the close-sequence
transitions, kept as data so that a reader sees the whole diagram at once."""

from __future__ import annotations

import enum


class TcpState(enum.Enum):
    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN_SENT"
    SYN_RECEIVED = "SYN_RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN_WAIT_1"
    FIN_WAIT_2 = "FIN_WAIT_2"
    CLOSE_WAIT = "CLOSE_WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST_ACK"
    TIME_WAIT = "TIME_WAIT"

    def __str__(self) -> str:
        return self.value

    # Members compare by identity, so the identity hash agrees with ==; it is computed in C,
    # where Enum's own __hash__ (hash of the name) is Python code run on every set and dict
    # lookup of a state - several per segment.
    __hash__ = object.__hash__


S = TcpState

# The application calls close(): where the connection goes next.  Missing
# states are handled in TcpConnection.close (SYN_SENT deletes the TCB,
# SYN_RECEIVED defers the FIN, states already closing ignore the call).
ON_CLOSE: dict[TcpState, TcpState] = {
    S.ESTABLISHED: S.FIN_WAIT_1,
    S.CLOSE_WAIT: S.LAST_ACK,
}

# The peer's FIN arrives in order.
ON_FIN_RECEIVED: dict[TcpState, TcpState] = {
    S.SYN_RECEIVED: S.CLOSE_WAIT,
    S.ESTABLISHED: S.CLOSE_WAIT,
    S.FIN_WAIT_1: S.CLOSING,  # our FIN not yet acknowledged: simultaneous close
    S.FIN_WAIT_2: S.TIME_WAIT,
}

# An ACK covers our FIN.
ON_FIN_ACKED: dict[TcpState, TcpState] = {
    S.FIN_WAIT_1: S.FIN_WAIT_2,
    S.CLOSING: S.TIME_WAIT,
    S.LAST_ACK: S.CLOSED,
}

# States in which the application may still queue data.
CAN_SEND = frozenset({S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT})
# States in which data from the peer is accepted into the receive buffer.
CAN_RECEIVE = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2})
# States in which we have queued our FIN.
FIN_QUEUED = frozenset({S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSING, S.LAST_ACK, S.TIME_WAIT})
# Synchronized states: both ISNs known, RFC 5961 rules apply to RST and SYN.
SYNCHRONIZED = frozenset({
    S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2,
    S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK, S.TIME_WAIT,
})
# Abort sends a RST from these states (RFC 9293 section 3.10.5).
ABORT_SENDS_RST = frozenset({S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT})
