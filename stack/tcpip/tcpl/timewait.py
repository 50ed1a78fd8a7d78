"""TCP glue, TIME_WAIT: the time-wait TCB table and its one expiry queue.

When a connection whose endpoint is closed enters TIME_WAIT, the full TCB (core, buffers, pool
block, request lists) is freed and a small time-wait TCB (stack/tcpip/tcp/timewait.py, pool tag
'TcpW') takes its 4-tuple for 2*MSL - as Windows' tcpip moves it into its TWTCB table.  The
records expire in the order they were made (2*MSL is constant), so one ordered queue and one
timer serve them all: O(1) each, however many wait.

The table is bounded as Windows bounds it: past `max_time_wait_tcbs` records the oldest is
released before its 2*MSL is up (KB Q151418, "WinNT TCP/IP May Reuse TIME-WAIT Connections Prior
to 2MSL"; MaxFreeTcbs, learn.microsoft.com/previous-versions/windows/it-pro/windows-2000-server/
cc938178: "TCP can prematurely release connections in the TIME_WAIT state"), counted in
`!netstat -s` as "Time-Wait TCBs Reclaimed Early".

Part of the TcpLayer that stack/tcpip/tcp_glue.py assembles."""

from __future__ import annotations

from bisect import insort
from collections import deque
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING

from stack.kernel import DISPATCH_LEVEL, kroutine
from stack.kernel.ex import ExAllocatePoolWithTag, ExFreePoolWithTag
from stack.kernel.pool import NonPagedPoolNx
from stack.kernel.symbols import Frame
from ..events import TcpStateChanged
from ..tcp import TcpSegment, TcpState
from ..tcp.timewait import TimeWaitTcb
from ..addr import SockAddr, v4_mapped
from .common import Tcb

if TYPE_CHECKING:
    from ..sharing import Binding
    from ..tcp import TcpConnection
    from ..tcp_glue import TcpLayer

TWTCB_TAG = "TcpW"  # the lab's tag for time-wait TCBs (full TCBs are 'TcpE')
TWTCB_SIZE = 0x60
# MaxFreeTcbs' default for a Windows 2000 Server with 64 MB of memory or more (cc938178; the
# lab's hosts have 64 MB), 2000 since Windows NT 4.0 SP3 (KB Q151418): beyond this many
# time-wait TCBs the oldest is reclaimed early.
MAX_TIME_WAIT_TCBS = 2000


class TimeWaitEntry(TimeWaitTcb):
    """A time-wait TCB as the tables and `!tcpconn` see it: the record itself, plus its 4-tuple key,
    pool block and port binding.  One object per record, and the addresses only as the key's bytes:
    `local`/`remote` are built when a command shows them (thousands of records wait at once)."""

    __slots__ = ("key", "address", "binding", "mapped")
    state = TcpState.TIME_WAIT.value
    closed = True

    def __init__(self, key: tuple, core: "TcpConnection", address: int, binding: "Binding | None",
                 mapped: bool) -> None:
        TimeWaitTcb.__init__(self, core)
        self.key = key
        self.address = address
        self.binding = binding
        self.mapped = mapped  # a dual-stack socket's IPv4 connection: shown as ::ffff:a.b.c.d

    @property
    def record(self) -> TimeWaitTcb:
        return self

    @property
    def local(self) -> SockAddr:
        return self._sockaddr(self.key[0], self.key[1])

    @property
    def remote(self) -> SockAddr:
        return self._sockaddr(self.key[2], self.key[3])

    def _sockaddr(self, packed: bytes, port: int) -> SockAddr:
        ip = IPv4Address(packed) if len(packed) == 4 else IPv6Address(packed)
        return SockAddr(v4_mapped(ip) if self.mapped else ip, port)  # type: ignore[arg-type]

    def __lt__(self, other: "TimeWaitEntry") -> bool:
        return False  # expiry-queue ties (same expires_at): the later item stays after (insort)

    def snapshot(self) -> dict[str, object]:
        return {"state": TcpState.TIME_WAIT.value, "time_wait_tcb": True, "address": self.address,
                "local": str(self.local), "remote": str(self.remote), "closed": True,
                "snd_nxt": self.snd_max, "rcv_nxt": self.rcv_nxt, "iss": self.iss,
                "segments_sent": self.segments_sent, "segments_received": self.segments_received,
                "timers": {"time_wait": self.expires_at}}


class TimeWaitLayer:
    """The time-wait TCB table (`time_wait`), its expiry queue and timer."""

    def _init_time_wait(self: "TcpLayer") -> None:
        self.time_wait: dict[tuple, TimeWaitEntry] = {}
        self._tw_queue: deque[tuple[int, TimeWaitEntry]] = deque()  # (expires_at, entry)
        self._tw_timer = None
        self._tw_timer_at: int | None = None
        self.max_time_wait_tcbs = MAX_TIME_WAIT_TCBS  # the table's bound (MaxFreeTcbs)

    def _enter_time_wait_tcb(self: "TcpLayer", tcb: Tcb) -> bool:
        """Swap a closed endpoint's TCB in TIME_WAIT for a time-wait TCB; False (the full TCB stays)
        when the pool cannot give the small block."""
        core = tcb.core
        address = ExAllocatePoolWithTag(NonPagedPoolNx, TWTCB_SIZE, TWTCB_TAG)
        if not address:
            return False
        key = tcb.key
        path = tcb.path
        if path is not None:  # the route's address bytes are shared: the packet's copies can go
            key = (path.src if path.src == key[0] else key[0], key[1],
                   path.dst if path.dst == key[2] else key[2], key[3])
        mapped = tcb.endpoint.local.ip.version == 6 and len(key[0]) == 4
        entry = TimeWaitEntry(key, core, address, tcb.binding, mapped)
        tcb.binding = None  # the port stays taken until the record expires
        self.connections.pop(tcb.key, None)
        self._tcb_of_core.pop(id(core), None)
        if tcb.timer is not None:
            tcb.timer.cancel()
            tcb.timer = None
            tcb.timer_at = None
        if tcb.push_timer is not None:
            tcb.push_timer.cancel()
            tcb.push_timer = None
        self._release_all_held(tcb)
        tcb.core = None
        tcb.path = None
        self._free(tcb)
        self.time_wait[entry.key] = entry
        self._tw_queue_add(entry)
        if len(self.time_wait) > self.max_time_wait_tcbs:
            self._tw_reclaim_oldest()
        return True

    def _tw_reclaim_oldest(self: "TcpLayer") -> None:
        """The table is over its bound: release the records closest to expiry (the oldest) before
        their 2*MSL is up, as Windows reuses time-wait TCBs past MaxFreeTcbs (KB Q151418)."""
        queue = self._tw_queue
        table = self.time_wait
        while len(table) > self.max_time_wait_tcbs and queue:
            expires_at, entry = queue.popleft()
            if entry.expires_at != expires_at or table.get(entry.key) is not entry:
                continue  # a stale queue item (see _tw_expire)
            self.counters.tcp_time_wait_reclaimed += 1
            self._tw_remove(entry)
        self._tw_rearm()

    def _tw_queue_add(self: "TcpLayer", entry: TimeWaitEntry) -> None:
        item = (entry.expires_at, entry)
        queue = self._tw_queue
        if not queue or queue[-1][0] <= item[0]:
            queue.append(item)  # the usual case: 2*MSL is the same for every record
        else:
            insort(queue, item)
        self._tw_rearm()

    def _tw_rearm(self: "TcpLayer") -> None:
        at = self._tw_queue[0][0] if self._tw_queue else None
        if at == self._tw_timer_at:
            return
        if self._tw_timer is not None:
            self._tw_timer.cancel()
            self._tw_timer = None
        self._tw_timer_at = at
        if at is not None:
            self._tw_timer = self.kernel.scheduler.call_at(at, self.kernel, self._tw_timer_event,
                                                           label="TCP time-wait timer")

    def _tw_timer_event(self: "TcpLayer") -> None:
        """A scheduler event standing in for the time-wait table's timer DPC."""
        k = self.kernel
        self._tw_timer = None
        self._tw_timer_at = None
        k.irql = DISPATCH_LEVEL
        k.frames.append(Frame("nt!KiIdleLoop"))
        k.frames.append(Frame("nt!KiRetireDpcList"))
        TcpTimeWaitTimerFire(self)

    def _tw_expire(self: "TcpLayer", now: int) -> None:
        queue = self._tw_queue
        while queue and queue[0][0] <= now:
            expires_at, entry = queue.popleft()
            if entry.expires_at != expires_at or self.time_wait.get(entry.key) is not entry:
                continue  # restarted by a retransmitted FIN (queued again), or gone
            self._tw_remove(entry)
        self._tw_rearm()

    def _tw_remove(self: "TcpLayer", entry: TimeWaitEntry) -> None:
        del self.time_wait[entry.key]
        self.binds.release(entry.binding)
        entry.binding = None
        ExFreePoolWithTag(entry.address, TWTCB_TAG)
        k = self.kernel
        if k.bus.subscribers:
            k.bus.publish(TcpStateChanged(host=k.name, depth=len(k.frames), conn=entry.address,
                                          local=str(entry.local), remote=str(entry.remote),
                                          old=TcpState.TIME_WAIT.value, new=TcpState.CLOSED.value))

    def _tw_segment(self: "TcpLayer", entry: TimeWaitEntry, seg: TcpSegment, src: bytes, dst: bytes) -> None:
        TcpTimeWaitReceive(self, entry, seg, src, dst)


@kroutine("tcpip")
def TcpTimeWaitReceive(layer: "TcpLayer", entry: TimeWaitEntry, seg: TcpSegment, src: bytes, dst: bytes) -> None:
    """A segment for a 4-tuple in TIME_WAIT: the time-wait TCB answers it (an ACK, or nothing)."""
    before = entry.expires_at
    reply = entry.on_segment(seg, layer.kernel.now_ns)
    if entry.expires_at != before:
        layer._tw_queue_add(entry)  # a retransmitted FIN restarted 2*MSL
    if reply is not None:
        layer._send_bare(src, dst, reply)


@kroutine("tcpip")
def TcpTimeWaitTimerFire(layer: "TcpLayer") -> None:
    layer._tw_expire(layer.kernel.now_ns)

