"""Typed errors raised by the TCP core."""

from __future__ import annotations


class TcpError(Exception):
    """Base class of every error the TCP core raises."""


class TcpConfigError(TcpError, ValueError):
    """A TcpConfig field is out of range."""


class TcpSegmentError(TcpError, ValueError):
    """A TcpSegment handed to the core has a field out of range."""


class TcpStateError(TcpError):
    """An application call is not allowed in the connection's current state."""

    def __init__(self, operation: str, state: object, detail: str = "") -> None:
        self.operation = operation
        self.state = state
        text = f"{operation} not allowed in state {getattr(state, 'value', state)}"
        super().__init__(f"{text}: {detail}" if detail else text)
