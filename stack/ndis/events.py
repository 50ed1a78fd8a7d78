"""Typed bus events of NDIS hand-offs (NBL sends, completions, indications, returns, OIDs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from stack.kernel.events import Event


@dataclass(frozen=True, slots=True, kw_only=True)
class NblSent(Event):
    kind: ClassVar[str] = "nbl.send"
    nbl: int  # first NBL of the chain
    count: int
    adapter: str

    def describe(self) -> str:
        return f"NdisSendNetBufferLists {self.nbl:x} ({self.count} NBLs) -> {self.adapter}"


@dataclass(frozen=True, slots=True, kw_only=True)
class NblSendCompleted(Event):
    kind: ClassVar[str] = "nbl.sendcomplete"
    nbl: int
    count: int
    adapter: str

    def describe(self) -> str:
        return f"NdisMSendNetBufferListsComplete {self.nbl:x} ({self.count} NBLs) from {self.adapter}"


@dataclass(frozen=True, slots=True, kw_only=True)
class NblIndicated(Event):
    kind: ClassVar[str] = "nbl.indicate"
    nbl: int
    count: int
    adapter: str
    flags: int

    def describe(self) -> str:
        return f"NdisMIndicateReceiveNetBufferLists {self.nbl:x} ({self.count} NBLs) from {self.adapter}"


@dataclass(frozen=True, slots=True, kw_only=True)
class NblReturned(Event):
    kind: ClassVar[str] = "nbl.return"
    nbl: int
    count: int
    adapter: str

    def describe(self) -> str:
        return f"NdisReturnNetBufferLists {self.nbl:x} ({self.count} NBLs) to {self.adapter}"


@dataclass(frozen=True, slots=True, kw_only=True)
class OidRequested(Event):
    kind: ClassVar[str] = "oid"
    oid: int
    request_type: int
    adapter: str
    status: int = 0

    def describe(self) -> str:
        from .constants import ndis_status_name, oid_name
        verb = "query" if self.request_type in (0, 2) else "set"
        return f"NdisOidRequest {verb} {oid_name(self.oid)} on {self.adapter} -> {ndis_status_name(self.status)}"
