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
    """Per-kernel ownership tracking: a bounded log plus the set of held NBLs.

    `record` runs several times per packet, so a row is stored as a plain
    tuple in a ring (a bounded deque); `entries` turns the rows into
    `NblLogEntry` records when somebody reads them.
    """

    def __init__(self, kernel: "Kernel", size: int = DEFAULT_LOG_SIZE) -> None:
        self.kernel = kernel
        self.level = TRACK_LOG
        self._rows: deque[tuple] = deque(maxlen=size)
        self._append = self._rows.append
        self._bus = kernel.bus
        self._scheduler = kernel.scheduler
        self.held: dict[int, Any] = {}  # NBL address -> NBL held by a miniport or protocol

    @property
    def entries(self) -> list[NblLogEntry]:
        """The log, oldest first."""
        return [NblLogEntry(*row) for row in self._rows]

    @property
    def size(self) -> int:
        return self._rows.maxlen or 0

    def record(self, nbl: Any, event: str, owner: str, detail: str = "") -> None:
        nbl.owner = owner
        if self.level >= TRACK_LOG:
            k = self.kernel
            sched = self._scheduler
            self._append((self._bus.seq, sched.events_run, sched.now_ns, nbl.address, event, owner, detail,
                          k.irql, k.cpu))

    def record_sent(self, nbl: Any, miniport: str) -> None:
        """`record` of ProtocolSent then SentToMiniport: the two hand-offs of a send to a running
        adapter, at the same moment (two rows, one call)."""
        nbl.owner = miniport
        if self.level >= TRACK_LOG:
            k = self.kernel
            sched = self._scheduler
            seq, index, now, address, irql, cpu = (self._bus.seq, sched.events_run, sched.now_ns, nbl.address,
                                                   k.irql, k.cpu)
            self._rows.extend(((seq, index, now, address, NBL_PROTOCOL_SENT, "ndis", "", irql, cpu),
                               (seq, index, now, address, NBL_SENT_TO_MINIPORT, miniport, "", irql, cpu)))

    def record_all(self, nbls: Any, event: str, owner: str, detail: str = "") -> None:
        """`record` for each NBL of a list (one row each, the same moment)."""
        if self.level >= TRACK_LOG:
            k = self.kernel
            sched = self._scheduler
            seq, index, now, irql, cpu = self._bus.seq, sched.events_run, sched.now_ns, k.irql, k.cpu
            append = self._append
            for nbl in nbls:
                nbl.owner = owner
                append((seq, index, now, nbl.address, event, owner, detail, irql, cpu))
        else:
            for nbl in nbls:
                nbl.owner = owner

    def hold(self, nbl: Any) -> None:
        self.held[nbl.address] = nbl

    def release(self, nbl: Any) -> None:
        self.held.pop(nbl.address, None)

    def history(self, nbl_address: int) -> list[NblLogEntry]:
        return [NblLogEntry(*row) for row in self._rows if row[3] == nbl_address]

    def pending(self) -> list[tuple[Any, str]]:
        """(NBL, current holder) for every NBL a miniport or protocol holds."""
        return [(nbl, nbl.owner) for nbl in self.held.values()]
