"""The emulated network card: descriptor rings, DMA through page frames, interrupts.

The miniport posts receive buffers and transmit descriptors as
scatter-gather lists of ``(pfn, offset, length)`` elements, each physically
contiguous (the page list of an MDL).  At transmit time the NIC's DMA
engine gathers the bytes straight from those page frames - a hardware read,
counted in ``dma_tx_bytes`` and never in ``kernel.copies`` - applies the
offloads (checksums, large send) and puts the frames on its link.  A frame
arriving from the link is scattered into the next posted receive buffer
(``dma_rx_bytes``).  Each completion sets an interrupt cause; while
interrupts are enabled the line fires the connected ISR at NIC_DIRQL.  The
miniport's ISR masks interrupts and queues its DPC, and the DPC drains every
completion before unmasking (interrupt moderation).  The line fires a
moderation delay after the first completion and, with an interrupt throttle
(Intel's ITR), no sooner than ``interrupt_throttle_ns`` after the previous
interrupt; ``set_interrupt_moderation_rate`` picks it the way Intel's
"Interrupt Moderation Rate" does, Adaptive re-deciding it at every interrupt
(itr.py).

Bad frames never raise: runts, oversize frames, frames with no posted
buffer and frames the receive filter rejects are dropped and counted by
reason in ``counters.drops``.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

from stack.kernel.cpu import HARDWARE, ISR_LEVEL, set_level
from stack.kernel.irql import NIC_DIRQL, PASSIVE_LEVEL
from stack.kernel.kernel import Kernel
from stack.kernel.memory import PAGE_SHIFT

from .events import FrameDropped, FrameReceived, FrameTransmitted, Interrupt
from .itr import ADAPTIVE, OFF, AdaptiveItr, fixed_interval_ns
from .link import FrameSink
from .rsc import RscUnit, add, add_next, classify, finalize_header, joins, joins_next, start_unit
from .offload import (RX_IP_FAILED, RX_IP_SUCCEEDED, RX_TCP_SUCCEEDED, TX_CSUM_IP, TX_CSUM_TCP, TX_CSUM_UDP,
                      OffloadError, fill_checksums, validate_rx_checksums)
from .segrun import pump
from .passthrough import (BLOCK_HOLD, BLOCK_OFF, BLOCK_RECEIVER, BLOCK_SINK, TCP_FIN, TCP_PSH, LargeSend,
                          PassThroughCounters)

SgElement = tuple[int, int, int]  # (pfn, byte offset into that page, length): physically contiguous

ETH_HEADER_LEN = 14
LSO_HEADER_ROOM = 256  # Ethernet, IP and TCP headers (options included) in front of an LSO payload
LSO_MAX_SIZE = 65536 + LSO_HEADER_ROOM  # one 64 KB large TCP segment plus its headers
# LSOv2 past 64 KB: the largest MaxOffLoadSize this NIC reports (Windows NICs report up to about
# 256 KB; the transport uses it only on window-scaled connections, with IP length 0).
LSO_V2_MAX_OFFLOAD_SIZE = 256 * 1024

DROP_RUNT = "runt"
DROP_OVERSIZE = "oversize"
DROP_NO_RX_BUFFER = "no_rx_buffer"
DROP_RX_BUFFER_TOO_SMALL = "rx_buffer_too_small"
DROP_FILTERED = "filtered"
DROP_TX_MALFORMED = "tx_malformed"
DROP_TX_OVERSIZE = "tx_oversize"
DROP_LINK_DOWN = "link_down"

INT_RX = 0x1
INT_TX = 0x2
_CAUSE_NAMES = {INT_RX: "rx", INT_TX: "tx", INT_RX | INT_TX: "rx,tx"}

# Receive filter bits (the same values as NDIS_PACKET_TYPE_*)
FILTER_DIRECTED = 0x01
FILTER_MULTICAST = 0x02
FILTER_ALL_MULTICAST = 0x04
FILTER_BROADCAST = 0x08
FILTER_PROMISCUOUS = 0x20
DEFAULT_FILTER = FILTER_DIRECTED | FILTER_ALL_MULTICAST | FILTER_BROADCAST

_BROADCAST = b"\xff\xff\xff\xff\xff\xff"


@dataclass(slots=True)
class NicOffloads:
    """Which offload engines are switched on."""

    tx_checksum: bool = True
    rx_checksum: bool = True
    lso: bool = True
    lso_max_size: int = 65536  # LSOv2 MaxOffLoadSize: user data bytes per large send (up to 256 KiB)
    lso_min_segments: int = 2
    rsc: bool = False  # receive segment coalescing (see rsc.py); off as on most client NICs

    def __post_init__(self) -> None:
        if not 0 < self.lso_max_size <= LSO_V2_MAX_OFFLOAD_SIZE:
            raise ValueError(f"LSOv2 MaxOffLoadSize {self.lso_max_size} outside 1..{LSO_V2_MAX_OFFLOAD_SIZE}")


@dataclass(slots=True)
class NicCounters:
    frames_out: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    bytes_in: int = 0
    tx_descriptors: int = 0
    rx_descriptors: int = 0
    lso_segments: int = 0
    lso_largest: int = 0  # TCP payload bytes of the largest large send cut so far (past 64 KB: LSOv2 MaxOffLoadSize)
    interrupts: int = 0
    rsc_coalesced_segments: int = 0  # segments that joined an earlier one's unit (payload-only DMA)
    rsc_units: int = 0  # single coalesced units of two or more segments handed to the driver
    rsc_aborts: Counter = field(default_factory=Counter)  # why an open unit ended early
    drops: Counter = field(default_factory=Counter)  # reason -> frames


class TxCompletion(NamedTuple):
    """One finished transmit descriptor (a tuple: one is made per packet)."""

    cookie: Any
    status: str  # "ok" or a DROP_* reason
    frames: int  # frames put on the wire for this descriptor
    length: int  # bytes gathered


class RxCompletion(NamedTuple):
    """One filled receive buffer (a tuple: one is made per packet)."""

    cookie: Any
    length: int
    checksum: int  # offload.RX_* bits (0 when validation is off)
    rsc: RscUnit | None = None  # the coalesced unit this segment heads (RSC on, TCP data)


_new_tuple = tuple.__new__  # TxCompletion(...) / RxCompletion(...) without the Python-level __new__


class EmulatedNic:
    """One host's network card (see the module docstring)."""

    def __init__(self, kernel: Kernel, mac: bytes, *, name: str = "nic0", mtu: int = 1500,
                 link_speed_bps: int = 1_000_000_000, tx_ring_size: int = 256, rx_ring_size: int = 256,
                 offloads: NicOffloads | None = None, interrupt_moderation_ns: int = 0) -> None:
        if len(mac) != 6:
            raise ValueError(f"a MAC address is 6 bytes, got {len(mac)}")
        if not 68 <= mtu <= 65535:
            raise ValueError(f"MTU {mtu} outside 68..65535")
        if tx_ring_size < 1 or rx_ring_size < 1:
            raise ValueError("ring sizes must be positive")
        self.kernel = kernel
        self.mac = bytes(mac)
        self.permanent_mac = bytes(mac)
        self.name = name
        self.mtu = mtu
        self.link_speed_bps = link_speed_bps
        self.tx_ring_size = tx_ring_size
        self.rx_ring_size = rx_ring_size
        self.offloads = offloads if offloads is not None else NicOffloads()
        self.counters = NicCounters()
        self.dma_tx_bytes = 0
        self.dma_rx_bytes = 0
        self.receive_filter = DEFAULT_FILTER
        self.sink: FrameSink | None = None
        self.interrupts_enabled = True
        # Interrupt throttling: with a delay, the line fires that long after the first
        # completion, so everything arriving meanwhile is drained by one DPC.
        self.interrupt_moderation_ns = interrupt_moderation_ns
        # Intel's ITR (`!nic itr`) - the shortest interval between two interrupts (1e9 /
        # interrupts per second; 0 = no throttle).  The line fires no sooner than the moderation
        # delay after the first completion AND no sooner than this after the previous interrupt,
        # so sparse traffic sees only the moderation delay and bulk traffic larger DPC batches.
        self.interrupt_throttle_ns = 0
        # The "Interrupt Moderation Rate" setting that decides it (itr.py): Off, a fixed setting, a
        # rate, or Adaptive (`itr_adaptive` then re-decides the interval at every interrupt).
        self.itr_setting: str | int = OFF
        self.itr_adaptive: AdaptiveItr | None = None
        self._last_fire_ns = -(1 << 62)
        self._fire_scheduled = False
        self._isr: Callable[[], None] | None = None
        self._cause = 0
        self._tx_pending: deque[tuple[list[SgElement], Any, int, int, int]] = deque()
        self._tx_done: deque[TxCompletion] = deque()
        self._tx_scheduled = False
        self._rx_posted: deque[tuple[list[SgElement], int, Any]] = deque()
        self._rx_done: deque[RxCompletion] = deque()
        self._rsc_open: dict[bytes, RscUnit] = {}  # flow -> the unit still taking segments
        self._rsc_held = 0  # buffers filled by joined segments, not yet handed to the driver
        # Paravirtual pass-through (passthrough.py): large sends cross the switch uncut while
        # nothing observes the wire; `wire_holds` are the debugger's reasons to want real frames.
        self.passthrough = True
        self.passthrough_counters = PassThroughCounters()
        self.wire_holds: Counter = Counter()
        # A passed-through unit's segments run back to back in one event while nothing can tell
        # (deliver_large); False queues one event per segment always (tests compare the two).
        self.chain_segments = True
        phys = kernel.phys
        self._phys_view = phys.view
        self._phys_base = phys.base_pfn

    # -- configuration -------------------------------------------------------------
    @property
    def max_frame_size(self) -> int:
        """Largest frame on the wire (no FCS): MTU plus the Ethernet header."""
        return self.mtu + ETH_HEADER_LEN

    @property
    def lso_frame_limit(self) -> int:
        """Largest large-send descriptor the NIC takes: MaxOffLoadSize of payload plus headers."""
        return max(LSO_MAX_SIZE, self.offloads.lso_max_size + LSO_HEADER_ROOM)

    @property
    def media_connected(self) -> bool:
        return self.sink is not None

    def attach(self, sink: FrameSink | None) -> None:
        """Plug the NIC's transmit side into a link end (None unplugs it)."""
        self.sink = sink

    def set_link_speed(self, link_speed_bps: int) -> None:
        """The NIC's link speed (what NDIS reports) changed: Adaptive moderation's rates follow it."""
        self.link_speed_bps = link_speed_bps
        if self.itr_adaptive is not None:
            self.itr_adaptive.set_link_speed(link_speed_bps)
            self.interrupt_throttle_ns = self.itr_adaptive.interval_ns()

    def set_interrupt_moderation_rate(self, setting: str | int) -> None:
        """Intel's "Interrupt Moderation Rate": "Adaptive", "Off", "Minimal" ... "Extreme" (itr.py's
        names) or interrupts per second.  ValueError for anything else."""
        if setting == ADAPTIVE:
            adaptive = AdaptiveItr(self.link_speed_bps)  # 10 Gb/s: ixgbe's bulk rate (itr.py)
            adaptive.restart(self.counters)
            self.interrupt_throttle_ns = adaptive.interval_ns()
            self.itr_adaptive = adaptive
        else:
            self.interrupt_throttle_ns = fixed_interval_ns(setting)
            self.itr_adaptive = None
        self.itr_setting = setting

    def connect_interrupt(self, isr: Callable[[], None] | None) -> None:
        """Connect the interrupt line; `isr()` runs at NIC_DIRQL inside the event that raised it."""
        self._isr = isr

    def enable_interrupts(self) -> None:
        self.interrupts_enabled = True
        if self._cause:
            self._raise(0)

    def request_interrupt(self, cause: int) -> None:
        """Set an interrupt cause again (work left on the ring): fires after the moderation delay."""
        self._raise(cause)

    def disable_interrupts(self) -> None:
        self.interrupts_enabled = False

    def read_interrupt_cause(self) -> int:
        """What the ISR reads: the pending INT_* causes, acknowledged (cleared) by the read."""
        cause = self._cause
        self._cause = 0
        return cause

    # -- rings (the miniport's side) ----------------------------------------------------
    @property
    def tx_free(self) -> int:
        return self.tx_ring_size - len(self._tx_pending) - len(self._tx_done)

    @property
    def rx_posted(self) -> int:
        return len(self._rx_posted)

    @property
    def rx_free(self) -> int:
        return self.rx_ring_size - len(self._rx_posted) - len(self._rx_done) - self._rsc_held

    def post_rx_buffer(self, sg: list[SgElement], cookie: Any) -> bool:
        """Give the NIC a receive buffer; False when the ring is full."""
        posted = self._rx_posted
        if len(posted) + len(self._rx_done) + self._rsc_held >= self.rx_ring_size:
            return False
        posted.append((sg, sg[0][2] if len(sg) == 1 else sum([e[2] for e in sg]), cookie))
        return True

    def post_rx_buffers(self, buffers: list[tuple[list[SgElement], int, Any]]) -> int:
        """post_rx_buffer for several buffers at once, as (sg, its total length, cookie): the ring
        takes them in order while it has room; returns how many it took."""
        posted = self._rx_posted
        room = self.rx_ring_size - len(posted) - len(self._rx_done) - self._rsc_held
        if room >= len(buffers):
            posted.extend(buffers)
            return len(buffers)
        if room > 0:
            posted.extend(buffers[:room])
            return room
        return 0

    def post_tx(self, sg: list[SgElement], cookie: Any, *, csum: int = 0, lso_mss: int = 0,
                lso_tcp_header_offset: int = 0) -> bool:
        """Queue one frame (or one large TCP segment with `lso_mss`); False when the ring is full."""
        if len(self._tx_pending) + len(self._tx_done) >= self.tx_ring_size:
            return False
        self._tx_pending.append((sg, cookie, csum, lso_mss, lso_tcp_header_offset))
        return True

    def ring_doorbell(self) -> None:
        """Tell the NIC there are descriptors to send; it processes them as its own event."""
        if self._tx_pending and not self._tx_scheduled:
            self._tx_scheduled = True
            k = self.kernel
            k.scheduler.call_soon(k, self._process_tx, label="nic tx")

    def take_tx_completions(self) -> list[TxCompletion]:
        q = self._tx_done
        if not q:
            return []
        done = list(q)
        q.clear()
        return done

    def take_rx_completions(self, limit: int | None = None) -> list[RxCompletion]:
        if self._rsc_held or self._rsc_open:
            self._finish_units()
        q = self._rx_done
        if limit is None or limit >= len(q):
            done = list(q)
            q.clear()
            return done
        return [q.popleft() for _ in range(limit)]

    @property
    def rx_pending_completions(self) -> int:
        return len(self._rx_done)

    def reclaim_rx_buffers(self) -> list[Any]:
        """Take back every posted (unused) receive buffer's cookie - for a halt."""
        cookies = [cookie for _, _, cookie in self._rx_posted]
        self._rx_posted.clear()
        return cookies

    # -- transmit -------------------------------------------------------------------
    def gather(self, sg: list[SgElement]) -> bytes:
        """DMA read of a scatter-gather list: one snapshot of the bytes it describes."""
        view = self._phys_view
        base = self._phys_base
        if len(sg) == 1:
            pfn, offset, length = sg[0]
            start = ((pfn - base) << PAGE_SHIFT) + offset
            data = bytes(view[start:start + length])
        else:
            parts = []
            for pfn, offset, length in sg:
                start = ((pfn - base) << PAGE_SHIFT) + offset
                parts.append(view[start:start + length])
            data = b"".join(parts)
        self.dma_tx_bytes += len(data)
        return data

    def _process_tx(self) -> None:
        self._tx_scheduled = False
        pending = self._tx_pending
        if not pending:
            return
        k = self.kernel
        c = self.counters
        offloads = self.offloads
        max_frame = self.max_frame_size
        subscribers = k.bus.subscribers
        now = k.scheduler.now_ns
        # The MAC sends at line rate: a descriptor whose frames do not fit in the wire's queue
        # waits in the ring (its send completes later, so NDIS queues what follows) instead of
        # being pushed onto the wire and tail-dropped there.
        room_at = getattr(self.sink, "room_at", None)
        sent_any = False
        while pending:
            if room_at is not None:
                head = pending[0]
                lso = head[3]
                frames_max = -(-sum([e[2] for e in head[0]]) // lso) if lso else 1
                when = room_at(frames_max, now)
                if when > now:
                    self._tx_scheduled = True
                    k.scheduler.call_at(when, k, self._process_tx, label="nic tx")
                    break
            sent_any = True
            sg, cookie, csum, lso_mss, lso_offset = pending.popleft()
            c.tx_descriptors += 1
            data = self.gather(sg)
            n = len(data)
            status = "ok"
            frames: list[bytes] = []
            if n < ETH_HEADER_LEN:
                status = DROP_TX_MALFORMED
            elif lso_mss:
                if not offloads.lso or n > self.lso_frame_limit:
                    status = DROP_TX_OVERSIZE if n > max_frame else DROP_TX_MALFORMED
                else:
                    try:
                        unit = LargeSend(data, lso_mss, lso_offset)
                    except OffloadError:
                        status = DROP_TX_MALFORMED
                    else:
                        c.lso_segments += unit.count
                        if unit.payload_length > c.lso_largest:
                            c.lso_largest = unit.payload_length
                        if unit.frame_length(0) > max_frame:  # the first segment is the largest
                            status = DROP_TX_OVERSIZE
                        else:
                            why = self.passthrough_blocker_tx(unit)
                            if why is None:
                                self._send_large(unit, now)
                                self._tx_done.append(_new_tuple(TxCompletion, (cookie, status, unit.count, n)))
                                continue
                            self.passthrough_counters.fallbacks[why] += 1
                            frames = unit.frames()
            elif n > max_frame:
                status = DROP_TX_OVERSIZE
            elif csum and offloads.tx_checksum:
                buf = bytearray(data)  # the checksum engine writes into its own copy of the snapshot
                try:
                    fill_checksums(buf, csum)
                except OffloadError:
                    status = DROP_TX_MALFORMED
                else:
                    frames = [bytes(buf)]
            else:
                frames = [data]
            if status != "ok":
                self._drop(status, n)
            sent = 0
            sink = self.sink
            for frame in frames:
                if sink is None:
                    self._drop(DROP_LINK_DOWN, len(frame))
                    status = DROP_LINK_DOWN
                    continue
                sent += 1
                c.frames_out += 1
                c.bytes_out += len(frame)
                if subscribers:
                    k.publish(FrameTransmitted, nic=self.name, length=len(frame), frame=frame)
                sink.deliver(frame, now)
            self._tx_done.append(_new_tuple(TxCompletion, (cookie, status, sent, n)))
        if sent_any:
            self._raise(INT_TX)

    # -- paravirtual pass-through (passthrough.py) ------------------------------------
    def passthrough_blocker_tx(self, unit: LargeSend) -> str | None:
        """None when `unit` may cross uncut to its receiver, else the first reason it may not."""
        if not self.passthrough:
            return BLOCK_OFF
        if self.wire_holds:
            return BLOCK_HOLD
        sink = self.sink
        check = getattr(sink, "passthrough_blocker", None)
        if check is None:
            return BLOCK_SINK
        return check(unit)

    def passthrough_blocker(self, unit: LargeSend) -> str | None:
        """As a receiver: may `unit` arrive here as segments that skip the wire's frames?"""
        if not self.passthrough:
            return BLOCK_OFF
        if self.wire_holds:
            return BLOCK_HOLD
        # Receive checksum offload is what "data valid" is told to.  Without RSC every segment is
        # indicated alone, its frame built for real (netvsc: the host segments for such a guest).
        if not self.offloads.rx_checksum:
            return BLOCK_RECEIVER
        return None

    def _send_large(self, unit: LargeSend, now: int) -> None:
        """Hand a large send to the link as one unit: every segment counted as the frame it stands for."""
        c = self.counters
        count = unit.count
        lengths = unit.frame_lengths()
        c.frames_out += count
        c.bytes_out += sum(lengths)
        pt = self.passthrough_counters
        pt.units += 1
        pt.segments += count
        k = self.kernel
        if k.bus.subscribers:  # each segment is still a frame event, built now that someone listens
            for i in range(count):
                k.publish(FrameTransmitted, nic=self.name, length=lengths[i], frame=unit.frame(i))
        self.sink.deliver_large(unit, lengths, [now] * count)

    def deliver_large(self, unit: LargeSend, lengths: list[int], times: list[int]) -> None:
        """Segments of a large send reach this NIC, each at the time its frame would have: one event each.

        While nothing can tell events apart (`_may_chain`), only the first segment's event is
        queued; it runs as many segments - this unit's and others' - as the scheduler lets it run
        back to back (`_segments_arrived`, segrun.py).  Every segment keeps the insertion number it would have had, so
        its place among everything else the scheduler runs is the same either way."""
        k = self.kernel
        sched = k.scheduler
        if len(times) > 1 and self._may_chain(k):
            seq = sched.reserve_seqs(len(times))
            sched.call_at_seq(times[0], seq, k, self._segments_arrived, unit, times, 0, seq, label="nic rx")
            return
        call_at = sched.call_at
        arrived = self.segment_arrived
        for i, t in enumerate(times):
            call_at(t, k, arrived, unit, i, label="nic rx")

    def _may_chain(self, k: Kernel) -> bool:
        """May a segment's event also run the segments after it (see `_segments_arrived`)?  Not when
        anyone could tell one event from several: a bus subscriber (the debugger sees every
        hand-off as it happens), a processor model (an event is placed on a processor and
        charged), a wire hold, or a kernel context the event left other than a fresh one."""
        return (self.chain_segments and not k.bus.subscribers and k.cpu_model is None and not self.wire_holds
                and k.irql == PASSIVE_LEVEL and not k.frames and k.current_thread is None and not k.held_locks)

    def _segments_arrived(self, unit: LargeSend, times: list[int], i: int, seq0: int) -> None:
        """Segment `i` of a passed-through large send arrives (its event); while nothing can tell, the
        segments due after it - this unit's and other passed-through units' - run here too, each at its
        own time and counted as an event (segrun.pump).  If chaining is observable, every remaining
        segment is queued as its own event, exactly as `deliver_large` queues them without chaining."""
        pump(self, unit, times, i, seq0)

    def segment_arrived(self, unit: LargeSend, i: int) -> None:
        """One segment of a passed-through large send: the receive path of its frame, checksums trusted
        ("data valid": nothing validates them).

        The usual case - the segment joins its connection's open RSC unit - is
        handled here without building the frame: only its payload is DMA'd,
        straight from the sender's snapshot (what `_coalesce` does with a frame),
        so that frame and its checksum never exist.  Everything else (a unit's
        first segment, whose frame lands in a receive buffer whole) takes
        `frame_arrived` with the real frame, so receive memory is byte for
        byte what real frames leave there."""
        offloads = self.offloads
        if not offloads.rx_checksum:  # turned off since the sender looked: tcpip validates a real frame
            self.frame_arrived(unit.frame(i))
            return
        valid = RX_IP_SUCCEEDED | RX_TCP_SUCCEEDED if unit.ipv4 else RX_TCP_SUCCEEDED
        units = self._rsc_open
        if i and units and offloads.rsc and not (i == unit.count - 1 and unit.flags & TCP_FIN):
            # (a FIN segment is no coalescing candidate: its real frame ends the unit, rsc.classify)
            last = i == unit.count - 1
            payload = unit.payload_length - i * unit.mss if last else unit.mss
            n = unit.headers_end + payload  # frame_length(i)
            posted = self._rx_posted
            if (n <= self.mtu + ETH_HEADER_LEN and posted and n <= posted[0][1]
                    and self.receive_filter & FILTER_DIRECTED and unit.dst == self.mac):
                first = unit.rsc_first()
                if first is not None:
                    open_unit = units.get(first.flow)
                    if (open_unit is not None
                            and joins_next(open_unit, first, (unit.seq + i * unit.mss) & 0xFFFFFFFF, payload) is None):
                        sg, _capacity, cookie = posted.popleft()
                        start = unit.headers_end + i * unit.mss
                        pfn, offset, length = sg[0]
                        if length >= payload:  # the payload fits the buffer's first run: _scatter, inlined
                            at = ((pfn - self._phys_base) << PAGE_SHIFT) + offset
                            self._phys_view[at:at + payload] = memoryview(unit.data)[start:start + payload]
                            self.dma_rx_bytes += payload
                        else:
                            self._scatter(sg, memoryview(unit.data)[start:start + payload])
                        add_next(open_unit, first, payload, last and bool(unit.flags & TCP_PSH), cookie)
                        self._rsc_held += 1
                        c = self.counters
                        c.frames_in += 1
                        c.bytes_in += n
                        c.rx_descriptors += 1
                        c.rsc_coalesced_segments += 1
                        k = self.kernel
                        if k.bus.subscribers:
                            k.publish(FrameReceived, nic=self.name, length=n, frame=unit.frame(i))
                        if self._fire_scheduled and self.interrupts_enabled:
                            self._cause |= INT_RX  # _raise(INT_RX) with the moderated interrupt already due
                        else:
                            self._raise(INT_RX)
                        return
        frame = unit.frame(i)  # this frame lands in memory whole: a real one
        if i == 0 and offloads.rsc:  # RSC reads its headers: segment 0's are what every segment copies
            self.frame_arrived(frame, valid, unit.classify_first(frame))
        else:
            self.frame_arrived(frame, valid)

    # -- receive ---------------------------------------------------------------------
    def deliver(self, frame: bytes, time_ns: int) -> None:
        """FrameSink: the frame reaches this NIC at `time_ns` - one scheduler event on its kernel."""
        k = self.kernel
        k.scheduler.call_at(time_ns, k, self.frame_arrived, frame, label="nic rx")

    def frame_arrived(self, frame: bytes, data_valid: int = -1, classified: tuple | None = None) -> None:
        """A frame came off the wire: filter it, DMA it into a posted buffer, interrupt.

        `classified` is what rsc.classify says about the frame, when the caller knows already
        (a pass-through unit's first segment, LargeSend.classify_first)."""
        n = len(frame)
        if n < ETH_HEADER_LEN:
            self._drop(DROP_RUNT, n)
            return
        if n > self.mtu + ETH_HEADER_LEN:
            self._drop(DROP_OVERSIZE, n)
            return
        filt = self.receive_filter
        # the usual case first: a frame addressed to us with directed frames accepted
        if not (filt & FILTER_DIRECTED and frame[:6] == self.mac) and not self._accepts(frame):
            self._drop(DROP_FILTERED, n)
            return
        posted = self._rx_posted
        if not posted:
            self._drop(DROP_NO_RX_BUFFER, n)
            return
        sg, capacity, cookie = posted[0]
        if n > capacity:
            self._drop(DROP_RX_BUFFER_TOO_SMALL, n)
            return
        posted.popleft()
        offloads = self.offloads
        if data_valid >= 0:  # a pass-through segment: the sender's "checksum partial" means valid
            checksum = data_valid
        else:
            checksum = validate_rx_checksums(frame) if offloads.rx_checksum else 0
        unit = None
        if offloads.rsc and checksum & RX_TCP_SUCCEEDED and not checksum & RX_IP_FAILED:
            unit = self._coalesce(frame, sg, cookie, classified)
            if unit is True:  # joined an open unit: only its payload went to memory
                self._raise(INT_RX)
                return
        self._scatter(sg, frame)
        self._rx_done.append(_new_tuple(RxCompletion, (cookie, n, checksum, unit)))
        c = self.counters
        c.frames_in += 1
        c.bytes_in += n
        c.rx_descriptors += 1
        k = self.kernel
        if k.bus.subscribers:
            k.publish(FrameReceived, nic=self.name, length=n, frame=frame)
        self._raise(INT_RX)

    # -- receive segment coalescing ----------------------------------------------------
    def _coalesce(self, frame: bytes, sg: list[SgElement], cookie: Any,
                  classified: tuple | None = None) -> RscUnit | bool | None:
        """Offer a checksum-verified frame to the RSC engine.

        True: it joined its connection's open unit (payload DMA'd, counted).
        A unit: it starts a new one (the caller DMAs it whole).  None: not
        coalescable; any unit open for its connection is closed first."""
        seg, flow = classify(frame) if classified is None else classified
        if flow is None:
            return None
        units = self._rsc_open
        unit = units.get(flow)
        c = self.counters
        if unit is not None:
            if seg is not None:
                why = joins(unit, seg)
                if why is None:
                    start = seg.header_length
                    self._scatter(sg, memoryview(frame)[start:start + seg.payload_length])
                    add(unit, seg, cookie)
                    self._rsc_held += 1
                    n = len(frame)
                    c.frames_in += 1
                    c.bytes_in += n
                    c.rx_descriptors += 1
                    c.rsc_coalesced_segments += 1
                    k = self.kernel
                    if k.bus.subscribers:
                        k.publish(FrameReceived, nic=self.name, length=n, frame=frame)
                    return True
                c.rsc_aborts[why] += 1
            else:
                c.rsc_aborts["exception"] += 1
            del units[flow]
            if unit.segments > 1:
                self._close_unit(unit)
        if seg is None:
            return None
        unit = units[flow] = start_unit(seg, sg)
        return unit

    def _finish_units(self) -> None:
        """The driver is taking the completions: close every open unit."""
        for unit in self._rsc_open.values():
            if unit.segments > 1:
                self._close_unit(unit)
        self._rsc_open.clear()
        self._rsc_held = 0

    def _close_unit(self, unit: RscUnit) -> None:
        """A unit takes no more segments: rewrite its first buffer's headers to describe all of it."""
        view = self._phys_view
        base = self._phys_base
        self.counters.rsc_units += 1
        pfn, offset, length = unit.first_sg[0]
        start = ((pfn - base) << PAGE_SHIFT) + offset
        if length >= unit.header_length:
            finalize_header(unit, view[start:start + unit.header_length])
        else:  # headers straddle two physical runs: edit a copy and put it back
            header = bytearray()
            for pfn, offset, length in unit.first_sg:
                start = ((pfn - base) << PAGE_SHIFT) + offset
                header += view[start:start + length]
            del header[unit.header_length:]
            finalize_header(unit, memoryview(header))
            dma_before = self.dma_rx_bytes
            self._scatter(unit.first_sg, bytes(header))
            self.dma_rx_bytes = dma_before  # a header rewrite, not received bytes

    def _accepts(self, frame: bytes) -> bool:
        filt = self.receive_filter
        if filt & FILTER_PROMISCUOUS:
            return True
        dst = frame[:6]
        if dst == self.mac:
            return bool(filt & FILTER_DIRECTED)
        if dst == _BROADCAST:
            return bool(filt & FILTER_BROADCAST)
        if frame[0] & 1:
            return bool(filt & (FILTER_ALL_MULTICAST | FILTER_MULTICAST))
        return False

    def _scatter(self, sg: list[SgElement], frame: bytes) -> None:
        view = self._phys_view
        base = self._phys_base
        n = len(frame)
        if len(sg) == 1 or sg[0][2] >= n:  # the frame fits the first element (a posted frame buffer)
            pfn, offset, length = sg[0]
            take = length if length < n else n
            start = ((pfn - base) << PAGE_SHIFT) + offset
            view[start:start + take] = frame if take == n else memoryview(frame)[:take]
            self.dma_rx_bytes += take
            return
        src = memoryview(frame)
        pos = 0
        remaining = n
        for pfn, offset, length in sg:
            if remaining <= 0:
                break
            take = length if length < remaining else remaining
            start = ((pfn - base) << PAGE_SHIFT) + offset
            view[start:start + take] = src[pos:pos + take]
            pos += take
            remaining -= take
        self.dma_rx_bytes += pos

    # -- interrupts and drops -----------------------------------------------------------
    def _raise(self, cause: int) -> None:
        self._cause |= cause
        if not self.interrupts_enabled:
            return
        if self.interrupt_moderation_ns or self.interrupt_throttle_ns:
            if not self._fire_scheduled:
                k = self.kernel
                delay = self.interrupt_moderation_ns
                if self.interrupt_throttle_ns:  # the ITR holds the line even with no moderation delay
                    wait = self._last_fire_ns + self.interrupt_throttle_ns - k.scheduler.now_ns
                    if wait > delay:
                        delay = wait
                    elif delay <= 0:
                        self._fire()
                        return
                self._fire_scheduled = True
                k.scheduler.call_later(delay, k, self._moderated_fire, label="nic interrupt")
            return
        self._fire()

    def _moderated_fire(self) -> None:
        self._fire_scheduled = False
        if self.interrupts_enabled and self._cause:
            self._fire()

    def _fire(self) -> None:
        isr = self._isr
        if isr is None:
            return
        k = self.kernel
        if k.cpu_model is not None:  # k.charge(), without the call when no processor spends time
            k.charge("interrupt")
        self.counters.interrupts += 1
        self._last_fire_ns = k.scheduler.now_ns
        if self.itr_adaptive is not None:  # Adaptive: the traffic since the last interrupt sets the next interval
            self.interrupt_throttle_ns = self.itr_adaptive.update(self.counters)
        if k.bus.subscribers:
            k.publish(Interrupt, nic=self.name, cause=_CAUSE_NAMES.get(self._cause, str(self._cause)))
        old = k.irql
        k.irql = NIC_DIRQL
        try:
            isr()
        finally:
            k.irql = old

    def _drop(self, reason: str, length: int) -> None:
        self.counters.drops[reason] += 1
        k = self.kernel
        if k.bus.subscribers:
            k.publish(FrameDropped, layer="nic", reason=reason, where=self.name, length=length)

    def __repr__(self) -> str:
        return f"<EmulatedNic {self.name} {self.mac.hex('-')} mtu={self.mtu}>"


set_level(EmulatedNic.frame_arrived, ISR_LEVEL)  # the line fires inside the DMA's event
set_level(EmulatedNic.segment_arrived, ISR_LEVEL)
set_level(EmulatedNic._segments_arrived, ISR_LEVEL)
set_level(EmulatedNic._moderated_fire, ISR_LEVEL)
set_level(EmulatedNic._process_tx, HARDWARE)

__all__ = ["EmulatedNic", "NicOffloads", "NicCounters", "TxCompletion", "RxCompletion", "SgElement",
           "TX_CSUM_IP", "TX_CSUM_TCP", "TX_CSUM_UDP"]
