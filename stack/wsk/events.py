"""Typed events of the WSK provider (published only when the bus has subscribers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from stack.kernel.events import Event


@dataclass(frozen=True, slots=True, kw_only=True)
class WskCall(Event):
    """A client called a provider routine (WskSend, WskBind ...) on a socket."""

    kind: ClassVar[str] = "wsk.call"
    call: str
    socket: int
    irp: int = 0
    length: int = 0

    def describe(self) -> str:
        irp = f" irp {self.irp:x}" if self.irp else ""
        size = f" len {self.length:#x}" if self.length else ""
        return f"{self.call} socket {self.socket:x}{irp}{size}"


@dataclass(frozen=True, slots=True, kw_only=True)
class WskEvent(Event):
    """The provider called one of the client's event callbacks."""

    kind: ClassVar[str] = "wsk.event"
    callback: str  # client routine symbol, e.g. echosrv!WskSampleAcceptEvent
    event: str  # WskAcceptEvent, WskReceiveEvent ...
    socket: int
    status: int = 0
    nbytes: int = 0

    def describe(self) -> str:
        from stack.kernel.ntstatus import status_name
        size = f" {self.nbytes:#x} bytes" if self.nbytes else ""
        return f"{self.event} -> {self.callback} socket {self.socket:x}{size} = {status_name(self.status)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class WskSocketState(Event):
    """A WSK socket was created, changed state or was closed."""

    kind: ClassVar[str] = "wsk.socket"
    socket: int
    category: str
    state: str

    def describe(self) -> str:
        return f"wsk socket {self.socket:x} ({self.category}) {self.state}"
