"""Typed bus events of the hardware layer (frames on the wire, drops, interrupts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from stack.kernel.events import Event


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameTransmitted(Event):
    kind: ClassVar[str] = "frame.tx"
    nic: str
    length: int
    frame: bytes = b""

    def describe(self) -> str:
        return f"{self.nic} tx {self.length} bytes"


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameReceived(Event):
    kind: ClassVar[str] = "frame.rx"
    nic: str
    length: int
    frame: bytes = b""

    def describe(self) -> str:
        return f"{self.nic} rx {self.length} bytes"


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameDropped(Event):
    """A frame dropped somewhere below the transport; `layer` is nic, link, switch or ndis."""

    kind: ClassVar[str] = "frame.drop"
    layer: str
    reason: str
    where: str = ""
    length: int = 0

    def describe(self) -> str:
        return f"drop at {self.layer} {self.where}: {self.reason} ({self.length} bytes)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Interrupt(Event):
    kind: ClassVar[str] = "interrupt"
    nic: str
    cause: str  # "rx", "tx" or "rx,tx"

    def describe(self) -> str:
        return f"interrupt {self.nic} ({self.cause})"
