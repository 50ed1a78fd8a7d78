"""The NBL ownership log: who holds each NET_BUFFER_LIST, and its history.

NDIS records every hand-off of an NBL (as ndis.sys does with
TrackNblOwner): allocated, sent by a protocol, given to a miniport,
completed, indicated, returned, freed.  Rows carry the bus sequence number,
the scheduler event index and virtual time, so `!ndiskd.nbllog` can line
them up with everything else; `pending_nbls()` lists NBLs a miniport or a
protocol holds right now.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stack.kernel.kernel import Kernel

NBL_ALLOCATED = "Allocated"
NBL_PROTOCOL_SENT = "ProtocolSent"
NBL_SENT_TO_MINIPORT = "SentToMiniport"
NBL_MINIPORT_SEND_COMPLETED = "MiniportSendCompleted"
NBL_SEND_COMPLETED = "SendCompleted"
NBL_INDICATED = "Indicated"
NBL_PROTOCOL_RETURNED = "ProtocolReturned"
NBL_RETURNED_TO_MINIPORT = "ReturnedToMiniport"
NBL_FREED = "Freed"

# Log levels, as the TrackNblOwner registry value: 1 = current owner only, 3 = full log
TRACK_OWNER_ONLY = 1
TRACK_LOG = 3

DEFAULT_LOG_SIZE = 16384


@dataclass(frozen=True, slots=True)
class NblLogEntry:
    seq: int  # bus sequence number when it happened
    event_index: int  # scheduler events run so far
    time_ns: int
    nbl: int  # NBL address
    event: str  # NBL_* above
    owner: str  # who holds the NBL after this event
    detail: str
    irql: int
    cpu: int = 0


class NblOwnershipLog:
    """Per-kernel ownership tracking: a bounded log plus the set of held NBLs."""

    def __init__(self, kernel: "Kernel", size: int = DEFAULT_LOG_SIZE) -> None:
        self.kernel = kernel
        self.level = TRACK_LOG
        self.entries: deque[NblLogEntry] = deque(maxlen=size)
        self.held: dict[int, Any] = {}  # NBL address -> NBL held by a miniport or protocol

    def record(self, nbl: Any, event: str, owner: str, detail: str = "") -> None:
        nbl.owner = owner
        if self.level >= TRACK_LOG:
            k = self.kernel
            self.entries.append(NblLogEntry(k.bus.seq, k.scheduler.events_run, k.scheduler.now_ns, nbl.address,
                                            event, owner, detail, k.irql, k.cpu))

    def hold(self, nbl: Any) -> None:
        self.held[nbl.address] = nbl

    def release(self, nbl: Any) -> None:
        self.held.pop(nbl.address, None)

    def history(self, nbl_address: int) -> list[NblLogEntry]:
        return [e for e in self.entries if e.nbl == nbl_address]

    def pending(self) -> list[tuple[Any, str]]:
        """(NBL, current holder) for every NBL a miniport or protocol holds."""
        return [(nbl, nbl.owner) for nbl in self.held.values()]
