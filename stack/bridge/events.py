"""Bus events of the bridge: what entered the lab from outside, and connection life."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from stack.kernel.events import Event


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeInputApplied(Event):
    """An input from the host (a forwarded connection's bytes, a TAP frame) entered the lab."""

    kind: ClassVar[str] = "bridge.input"
    input_kind: str
    conn: int
    length: int
    summary: str = ""

    def describe(self) -> str:
        where = f" conn {self.conn}" if self.conn else ""
        text = f" {self.summary}" if self.summary else ""
        return f"bridge {self.input_kind}{where} {self.length} bytes{text}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardConnectionState(Event):
    """A forwarded connection changed state inside the lab (connected, closed, refused...)."""

    kind: ClassVar[str] = "bridge.conn"
    conn: int
    state: str
    detail: str = ""

    def describe(self) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        return f"forward conn {self.conn} {self.state}{extra}"
