"""IP fragmentation (send) and reassembly (receive) for IPv4 and IPv6.

Reassembly is a sans-IO table (`ReassemblyTable`): fragments and the time go in, outcomes
come out; it never touches the kernel.  Datagrams are keyed by (src, dst, protocol, id) for
IPv4 (RFC 791/815) and (src, dst, id) for IPv6 (RFC 8200 4.5).  The rules:

* fragments fill holes in any order; the datagram is complete when the last fragment
  (MF=0) has arrived and every byte before it is there;
* an exact duplicate (same range, same bytes) is tolerated: dropped and counted;
* overlapping data - IPv6: the whole datagram is discarded and so is every later
  fragment of it until its timer runs out (RFC 5722).  IPv4: the overlapping fragment is
  dropped and counted, the datagram carries on from the bytes it had (Windows drops
  overlapping fragments rather than letting a later copy rewrite earlier data);
* a fragment with MF=1 whose length is not a multiple of 8 (or is 0) is dropped;
* a datagram longer than 65535 bytes (IPv4: total length; IPv6: payload) is discarded
  like an overlapping IPv6 one;
* resources are bounded per family: at most `max_datagrams` in progress and `max_bytes`
  of buffers.  A fragment that would pass a bound is dropped - the datagrams already in
  progress keep their room, so a flood of new ids cannot evict a datagram about to complete;
* each fragment's bytes are copied once, at arrival, into the datagram's buffer (the NBL
  goes straight back to the miniport); the complete datagram is that buffer, with the IP
  header rebuilt in the room kept in front of it - no second copy.

`IpFragmentation` is the glue inside one host's IP layer: it arms the 60 s reassembly
timer on the kernel's virtual clock, counts, sends ICMP Time Exceeded (code 1) when a
datagram whose first fragment arrived times out, hands complete datagrams to the normal
receive path, and fragments outgoing UDP/ICMP datagrams bigger than the interface MTU
(`IppFragmentPackets`): IPv4 with DF clear, IPv6 with a Fragment header, each fragment
its own frame whose payload is described by partial MDLs over the original's (zero copy;
only L4 bytes that sit in the original's header slot are copied, counted as
"ip fragmentation").

The IP layer imports this module lazily, after every other tcpip routine is defined, so
the routines below come last in tcpip's symbol catalog and the others keep their
addresses; the `driver` import below keeps that order when a test imports us first.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from . import driver as _catalog_order  # noqa: F401  (see the module docstring)
from stack.kernel import (DISPATCH_LEVEL, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
                          kroutine)
from stack.kernel.mdl import IoBuildPartialMdl, Mdl
from stack.kernel.symbols import Frame

from .events import FragmentReassembled
from .ip import ETH_HEADER, Interface, IpLayer, RxFrame, TxPacket
from .wire import emit_ipv4, emit_ipv6, parse_ipv4, pseudo_header_sum, transport_checksum
from .wire.ipv4 import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_UDP
from .wire.ipv6 import IPPROTO_FRAGMENT

if TYPE_CHECKING:
    from stack.kernel.scheduler import ScheduledEvent
    from .wire.ipv4 import Ipv4Header
    from .wire.ipv6 import Ipv6Header

SECOND = 1_000_000_000
REASSEMBLY_TIMEOUT_NS = 60 * SECOND  # RFC 8200's 60 s; Windows uses 60 s for both families
MAX_DATAGRAMS = 100  # datagrams being reassembled at once, per family
MAX_BYTES = 4 << 20  # reassembly buffer bytes held at once, per family
HEADROOM = 60  # room kept before the payload for the rebuilt IP header (IPv4 with 40 bytes of options)
IPV4_MAX_TOTAL = 65535  # total length field
IPV6_MAX_PAYLOAD = 65535  # payload length field
FRAGMENT_HEADER_LEN = 8
COPY_REASON_REASSEMBLY = "ip reassembly"
COPY_REASON_FRAGMENTATION = "ip fragmentation"

# Outcome kinds
HELD = "held"  # stored; the datagram is not complete yet
COMPLETE = "complete"  # the datagram is whole: `entry` left the table
DROPPED = "dropped"  # this fragment was dropped (`reason`); the datagram (if any) carries on
DISCARDED = "discarded"  # the whole datagram was discarded (`reason`); later fragments are dropped

_FRAGMENT_HEADER = struct.Struct("!BBHI")
_ICMP_ERRORS = frozenset((3, 4, 5, 11, 12))  # unreachable, source quench, redirect, time exceeded, parameter


class Reassembly:
    """One datagram being put back together."""

    __slots__ = ("key", "version", "buffer", "starts", "ends", "covered", "total", "first_header", "protocol",
                 "fragments", "started_ns", "dead", "timer", "icmp_allowed")

    def __init__(self, key: tuple, version: int, now_ns: int) -> None:
        self.key = key
        self.version = version
        self.buffer = bytearray(HEADROOM)  # HEADROOM, then payload bytes at their offsets
        self.starts: list[int] = []  # received ranges [start, end), sorted and disjoint
        self.ends: list[int] = []
        self.covered = 0  # payload bytes received
        self.total: int | None = None  # payload length, once the last fragment arrived
        self.first_header: bytes | None = None  # offset-0 fragment's headers (IPv6: through the Fragment header)
        self.protocol = -1  # IPv6: the Fragment header's next header, from the first fragment
        self.fragments = 0
        self.started_ns = now_ns
        self.dead = False  # discarded; kept only to drop the rest of its fragments until the timer
        self.timer: "ScheduledEvent | None" = None
        self.icmp_allowed = True  # unicast to us: an ICMP error may be sent about it

    @property
    def held(self) -> int:
        return len(self.buffer)

    @property
    def complete(self) -> bool:
        return self.total is not None and self.covered == self.total

    def payload(self) -> memoryview:
        """The reassembled payload (valid once complete)."""
        return memoryview(self.buffer)[HEADROOM:HEADROOM + (self.total or 0)]

    def holes(self) -> list[tuple[int, int]]:
        """Missing [start, end) ranges (up to the end seen so far, or the total)."""
        out: list[tuple[int, int]] = []
        at = 0
        for s, e in zip(self.starts, self.ends):
            if s > at:
                out.append((at, s))
            at = e
        end = self.total if self.total is not None else at
        if end > at:
            out.append((at, end))
        return out


class Outcome(NamedTuple):
    kind: str
    reason: str = ""
    entry: Reassembly | None = None
    created: bool = False  # a new datagram entered the table (arm its timer)
    copied: int = 0  # payload bytes copied into the reassembly buffer


class ReassemblyTable:
    """The reassembly state of one family: sans-IO (no clock, no kernel; times are arguments)."""

    def __init__(self, version: int, *, max_datagrams: int = MAX_DATAGRAMS, max_bytes: int = MAX_BYTES,
                 timeout_ns: int = REASSEMBLY_TIMEOUT_NS) -> None:
        self.version = version
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.timeout_ns = timeout_ns
        self.entries: dict[tuple, Reassembly] = {}
        self.bytes_held = 0
        # An IPv4 datagram's header is at least 20 bytes, so its payload ends by 65515.
        self.max_payload = IPV4_MAX_TOTAL - 20 if version == 4 else IPV6_MAX_PAYLOAD

    def add(self, key: tuple, offset: int, more: bool, data: memoryview | bytes, now_ns: int,
            first_header: bytes | None = None, protocol: int = -1) -> Outcome:
        """One fragment: `offset` in bytes, `more` its MF/M flag, `data` its payload.

        `first_header` (the headers in front of the data) is kept from the offset-0 fragment,
        for the rebuilt header and an ICMP quote; `protocol` is IPv6's upper-layer protocol."""
        length = len(data)
        end = offset + length
        if more and (length == 0 or length % 8):
            return Outcome(DROPPED, "fragment_length")
        entry = self.entries.get(key)
        if entry is not None and entry.dead:
            return Outcome(DROPPED, "reassembly_discarded", entry)
        created = False
        if entry is None:
            if len(self.entries) >= self.max_datagrams or self.bytes_held + HEADROOM > self.max_bytes:
                return Outcome(DROPPED, "reassembly_limit")
            entry = Reassembly(key, self.version, now_ns)
            self.entries[key] = entry
            self.bytes_held += HEADROOM
            created = True
        if end > self.max_payload:
            self._kill(entry)
            return Outcome(DISCARDED, "reassembly_too_long", entry, created)
        # where it goes among the ranges already there
        starts, ends = entry.starts, entry.ends
        i = bisect_right(starts, offset)
        if i and starts[i - 1] == offset and ends[i - 1] == end:
            held = entry.buffer[HEADROOM + offset:HEADROOM + end]
            if held == data:  # an exact duplicate: the network repeats itself
                return Outcome(DROPPED, "fragment_duplicate", entry, created)
        if (i and ends[i - 1] > offset) or (i < len(starts) and starts[i] < end):
            if self.version == 6:  # RFC 5722: the whole datagram goes
                self._kill(entry)
                return Outcome(DISCARDED, "fragment_overlap", entry, created)
            return Outcome(DROPPED, "fragment_overlap", entry, created)
        # the last fragment fixes the length; everything must fit inside it
        total = entry.total
        if not more:
            if (total is not None and total != end) or (ends and ends[-1] > end):
                return self._refuse(entry, created, "fragment_inconsistent")
        elif total is not None and end > total:
            return self._refuse(entry, created, "fragment_inconsistent")
        grow = HEADROOM + end - len(entry.buffer)
        if grow > 0:
            if self.bytes_held + grow > self.max_bytes:
                return self._refuse(entry, created, "reassembly_limit")
            entry.buffer.extend(bytes(grow))
            self.bytes_held += grow
        entry.buffer[HEADROOM + offset:HEADROOM + end] = data  # the one copy of these bytes
        starts.insert(i, offset)
        ends.insert(i, end)
        entry.covered += length
        entry.fragments += 1
        if not more:
            entry.total = end
        if offset == 0 and entry.first_header is None:
            entry.first_header = bytes(first_header) if first_header is not None else b""
            entry.protocol = protocol
        if entry.complete:
            self._remove(entry)
            return Outcome(COMPLETE, "", entry, created, length)
        return Outcome(HELD, "", entry, created, length)

    def _refuse(self, entry: Reassembly, created: bool, reason: str) -> Outcome:
        """Drop this fragment; a datagram it would have started is not left behind empty."""
        if created:
            self._remove(entry)
            return Outcome(DROPPED, reason)
        return Outcome(DROPPED, reason, entry)

    def _kill(self, entry: Reassembly) -> None:
        """Discard the datagram's bytes; the entry stays (dead) to swallow its other fragments."""
        entry.dead = True
        self.bytes_held -= len(entry.buffer)
        entry.buffer = bytearray()
        entry.starts, entry.ends = [], []
        entry.covered = 0

    def _remove(self, entry: Reassembly) -> None:
        if self.entries.get(entry.key) is entry:
            del self.entries[entry.key]
            self.bytes_held -= len(entry.buffer)

    def expire(self, entry: Reassembly) -> bool:
        """The entry's timer ran out: remove it.  False when it already left (completed)."""
        if self.entries.get(entry.key) is not entry:
            return False
        self._remove(entry)
        return True

    def expired(self, now_ns: int) -> list[Reassembly]:
        """Remove and return every entry older than the timeout (for callers without timers)."""
        old = [e for e in self.entries.values() if now_ns - e.started_ns >= self.timeout_ns]
        for entry in old:
            self._remove(entry)
        return old


# --- wire helpers (sans-IO) ------------------------------------------------------------------



def assemble_v4(entry: Reassembly) -> memoryview | None:
    """Write the datagram's IPv4 header (the first fragment's, unfragmented) in front of the
    payload and return the whole datagram; None when it would pass 65535 bytes."""
    first = entry.first_header or b""
    header, _ = parse_ipv4(first, verify_checksum=False, allow_truncated=True)
    header_length = header.header_length
    total = entry.total or 0
    if header_length + total > IPV4_MAX_TOTAL:
        return None
    start = HEADROOM - header_length
    emit_ipv4(entry.buffer, start, src=header.src, dst=header.dst, protocol=header.protocol, payload_length=total,
              ttl=header.ttl, identification=header.identification, tos=header.tos, options=header.options)
    return memoryview(entry.buffer)[start:HEADROOM + total]


def assemble_v6(entry: Reassembly) -> memoryview:
    """A 40-byte IPv6 header (the first fragment's, next header = the fragmented protocol) in
    front of the payload.  Unfragmentable extension headers were processed per fragment and
    are not repeated."""
    first = entry.first_header or bytes(40)
    word = int.from_bytes(first[0:4], "big")
    start = HEADROOM - 40
    emit_ipv6(entry.buffer, start, src=first[8:24], dst=first[24:40], next_header=entry.protocol,
              payload_length=entry.total or 0, hop_limit=first[7], traffic_class=(word >> 20) & 0xFF,
              flow_label=word & 0xFFFFF)
    return memoryview(entry.buffer)[start:HEADROOM + (entry.total or 0)]


def emit_fragment_header(buf: bytearray | memoryview, offset: int, *, next_header: int, fragment_offset: int,
                         more: bool, identification: int) -> int:
    """The IPv6 Fragment header (RFC 8200 4.5); `fragment_offset` in bytes, a multiple of 8."""
    _FRAGMENT_HEADER.pack_into(buf, offset, next_header, 0, (fragment_offset & 0xFFF8) | int(more),
                               identification & 0xFFFFFFFF)
    return offset + FRAGMENT_HEADER_LEN


def _is_icmp_error(version: int, entry: Reassembly, data: bytes | bytearray) -> bool:
    if not data:
        return False
    if version == 4:
        return entry.key[2] == IPPROTO_ICMP and data[0] in _ICMP_ERRORS
    return entry.protocol == IPPROTO_ICMPV6 and data[0] < 128  # ICMPv6 error types are 0..127


def _software_checksum(packet: TxPacket) -> None:
    """Fill in a UDP checksum that was left to offload (this stack's UDP and ICMP compute
    theirs in software, so this is a safety net for other senders)."""
    packet.checksum_offload = False
    if packet.protocol != IPPROTO_UDP:
        return
    path = packet.path
    start = packet.l4_offset
    length = packet.l4_length + packet.payload_length
    struct.pack_into("!H", packet.buf, start + 6, 0)
    chunks = [packet.buf[start:start + packet.l4_length]]
    for mdl in packet.payload_mdls:
        chunks.extend(mdl.views())
    checksum = transport_checksum(pseudo_header_sum(path.src, path.dst, IPPROTO_UDP, length), chunks)
    struct.pack_into("!H", packet.buf, start + 6, checksum or 0xFFFF)


class ReassembledFrame(RxFrame):
    """The receive context of a reassembled datagram: no NBL behind it (its bytes are the
    reassembly buffer), so nothing is ever held or returned, and no checksum was verified."""

    __slots__ = ()

    def is_copy(self, view: memoryview) -> bool:
        return True


# --- the glue inside one host's IP layer -----------------------------------------------------

class IpFragmentation:
    def __init__(self, ip: IpLayer) -> None:
        self.ip = ip
        self.stack = ip.stack
        self.kernel = ip.kernel
        self.counters = ip.counters
        self.v4 = ReassemblyTable(4)
        self.v6 = ReassemblyTable(6)
        self._ident6 = 0

    # -- receive ------------------------------------------------------------------------------
    def receive_v4(self, rx: RxFrame, iface: Interface, header: "Ipv4Header", payload: memoryview,
                   data: memoryview, for_us: bool) -> None:
        self.counters.ipv4_reassembly_required += 1
        offset = header.fragment_offset
        key = (header.src, header.dst, header.protocol, header.identification)
        first = data[:header.header_length] if offset == 0 else None
        outcome = self.v4.add(key, offset, header.more_fragments, payload, self.kernel.now_ns, first)
        self._settle(self.v4, outcome, rx, iface, for_us)

    def receive_v6(self, rx: RxFrame, iface: Interface, header: "Ipv6Header", data: memoryview,
                   for_us: bool) -> None:
        self.counters.ipv6_reassembly_required += 1
        at = header.fragment_header_at  # parse_ipv6 found it: this is a fragment
        assert at is not None
        start = at + FRAGMENT_HEADER_LEN
        offset = header.fragment_offset
        key = (header.src, header.dst, header.fragment_id)
        first = data[:start] if offset == 0 else None
        outcome = self.v6.add(key, offset, header.more_fragments, data[start:40 + header.payload_length],
                              self.kernel.now_ns, first, data[at])  # the Fragment header's Next Header
        self._settle(self.v6, outcome, rx, iface, for_us)

    def _settle(self, table: ReassemblyTable, outcome: Outcome, rx: RxFrame, iface: Interface,
                for_us: bool) -> None:
        k = self.kernel
        layer = "ipv4" if table.version == 4 else "ipv6"
        entry = outcome.entry
        if outcome.created and entry is not None:
            entry.icmp_allowed = for_us
            entry.timer = k.call_later(table.timeout_ns, self._timer_event, table, entry,
                                       label="ip reassembly timer")
        if outcome.copied:
            k.copies.count(outcome.copied, COPY_REASON_REASSEMBLY)
        kind = outcome.kind
        if kind == HELD:
            return
        if kind == DROPPED:
            self.stack.drop(layer, outcome.reason)
            return
        if kind == DISCARDED:
            self._count_failure(table.version)
            self.stack.drop(layer, outcome.reason)
            return
        assert entry is not None
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        datagram = assemble_v4(entry) if table.version == 4 else assemble_v6(entry)
        if datagram is None:
            self._count_failure(table.version)
            self.stack.drop(layer, "reassembly_too_long")
            return
        if table.version == 4:
            self.counters.ipv4_reassembly_successful += 1
        else:
            self.counters.ipv6_reassembly_successful += 1
        if k.bus.subscribers:
            k.bus.publish(FragmentReassembled(host=k.name, depth=len(k.frames), version=table.version,
                                              identification=entry.key[-1], fragments=entry.fragments,
                                              length=len(datagram)))
        frame = ReassembledFrame(iface, None, False, False, True)  # L4 checksum still to verify; IP header ours
        if table.version == 4:
            Ipv4pReassembleDatagram(self.ip, frame, iface, datagram)
        else:
            Ipv6pReassembleDatagram(self.ip, frame, iface, datagram)

    def _count_failure(self, version: int) -> None:
        if version == 4:
            self.counters.ipv4_reassembly_failures += 1
        else:
            self.counters.ipv6_reassembly_failures += 1

    def _timer_event(self, table: ReassemblyTable, entry: Reassembly) -> None:
        """The reassembly timer, a DPC of its own (the way tcpip's timer wheel runs)."""
        k = self.kernel
        k.irql = DISPATCH_LEVEL
        k.frames.append(Frame("nt!KiIdleLoop"))
        k.frames.append(Frame("nt!KiRetireDpcList"))
        IppReassemblyTimeout(self, table, entry)

    def timed_out(self, table: ReassemblyTable, entry: Reassembly) -> None:
        entry.timer = None
        if not table.expire(entry) or entry.dead:
            return  # completed meanwhile, or discarded and already counted
        self._count_failure(table.version)
        self.stack.drop("ipv4" if table.version == 4 else "ipv6", "reassembly_timeout")
        first = entry.first_header
        if first is None or not entry.icmp_allowed:
            return  # RFC 792 / 8200: only when the first fragment arrived (and not for broadcasts)
        data = entry.buffer[HEADROOM:HEADROOM + (entry.ends[0] if entry.ends else 0)]
        if _is_icmp_error(table.version, entry, data):
            return  # never an ICMP error about an ICMP error (RFC 1122 3.2.2, RFC 4443 2.4)
        self.stack.icmp.send_reassembly_time_exceeded(table.version, memoryview(first + data))

    # -- send -----------------------------------------------------------------------------------
    def send(self, packet: TxPacket) -> None:
        IppFragmentPackets(self, packet)

    def fragment(self, packet: TxPacket) -> None:
        """Send `packet` (an unsent UDP/ICMP datagram with no IP header yet) as fragments."""
        ip = self.ip
        stack = self.stack
        counters = self.counters
        path = packet.path
        v4 = path.version == 4
        length = packet.l4_length + packet.payload_length
        room = path.interface.mtu - (20 if v4 else 40 + FRAGMENT_HEADER_LEN)
        step = room & ~7
        if (v4 and 20 + length > IPV4_MAX_TOTAL) or (not v4 and length > IPV6_MAX_PAYLOAD) or step < 8:
            if v4:
                counters.ipv4_fragmentation_failures += 1
            else:
                counters.ipv6_fragmentation_failures += 1
            stack.drop("ipv4" if v4 else "ipv6", "cannot_fragment")
            packet.status = STATUS_INVALID_PARAMETER
            stack.release_packet(packet)
            if packet.on_failed is not None:
                packet.on_failed(STATUS_INVALID_PARAMETER)
            return
        if v4:
            ip._ident = ident = (ip._ident + 1) & 0xFFFF
            counters.ipv4_sent += 1
            counters.ipv4_datagrams_fragmented += 1
        else:
            self._ident6 = ident = (self._ident6 + 1) & 0xFFFFFFFF
            counters.ipv6_sent += 1
            counters.ipv6_datagrams_fragmented += 1
        offsets = range(0, length, step)
        if v4:
            counters.ipv4_fragments_created += len(offsets)
        else:
            counters.ipv6_fragments_created += len(offsets)
        if packet.checksum_offload:  # the NIC cannot checksum a datagram it sees in pieces
            _software_checksum(packet)
        packet.fragments_left = len(offsets)  # set before the first send: a send may complete at once
        inline_length = packet.l4_length
        inline = packet.buf[packet.l4_offset:packet.l4_offset + inline_length]
        hop_limit = 255 if packet.protocol == IPPROTO_ICMPV6 and path.dst[0] == 0xFF else ip.default_ttl
        copied = 0
        sent_done: Callable[[TxPacket], None] = lambda fragment, parent=packet: self._fragment_done(parent)
        failed: Callable[[int], None] = lambda status, parent=packet: self._fragment_failed(parent, status)
        for start in offsets:
            end = min(start + step, length)
            more = end < length
            fragment = ip.new_packet(path, packet.protocol) if stack.mdl_pool.reserve(8) else None
            if fragment is None:  # no pool for this fragment: the datagram fails with its status
                self._fragment_failed(packet, STATUS_INSUFFICIENT_RESOURCES)
                continue
            if not v4:
                fragment.l4_offset += FRAGMENT_HEADER_LEN
            at = fragment.l4_offset
            if start < inline_length:  # L4 bytes in the original's header slot
                n = min(end, inline_length) - start
                fragment.buf[at:at + n] = inline[start:start + n]
                fragment.l4_length = n
                copied += n
            if end > inline_length:  # the rest: partial MDLs over the original's payload MDLs
                first = max(start, inline_length) - inline_length
                self._partial(packet.payload_mdls, first, end - inline_length - first, fragment)
            size = end - start
            if v4:
                emit_ipv4(fragment.buf, ETH_HEADER, src=path.src, dst=path.dst, protocol=packet.protocol,
                          payload_length=size, ttl=ip.default_ttl, identification=ident, more_fragments=more,
                          fragment_offset=start)
            else:
                emit_ipv6(fragment.buf, ETH_HEADER, src=path.src, dst=path.dst, next_header=IPPROTO_FRAGMENT,
                          payload_length=FRAGMENT_HEADER_LEN + size, hop_limit=hop_limit)
                emit_fragment_header(fragment.buf, ETH_HEADER + 40, next_header=packet.protocol,
                                     fragment_offset=start, more=more, identification=ident)
            fragment.owner = packet.owner
            fragment.on_complete = sent_done
            fragment.on_failed = failed
            ip.resolve_and_send(fragment)
        if copied:
            self.kernel.copies.count(copied, COPY_REASON_FRAGMENTATION)

    def _partial(self, mdls: list[Mdl], offset: int, length: int, fragment: TxPacket) -> None:
        pool = self.stack.mdl_pool
        fragment.payload_length = length
        for mdl in mdls:
            if length <= 0:
                break
            count = mdl.byte_count
            if offset >= count:
                offset -= count
                continue
            take = min(count - offset, length)
            target = pool.get()
            IoBuildPartialMdl(mdl, target, mdl.virtual_address + offset, take)
            fragment.payload_mdls.append(target)
            length -= take
            offset = 0

    def _fragment_done(self, parent: TxPacket) -> None:
        parent.fragments_left -= 1
        if parent.fragments_left == 0:
            self._finish(parent)

    def _fragment_failed(self, parent: TxPacket, status: int) -> None:
        if parent.status == STATUS_SUCCESS:
            parent.status = status
        self._fragment_done(parent)

    def _finish(self, parent: TxPacket) -> None:
        """Every fragment is back: the original (its slot, its MDLs) goes too, and its sender hears."""
        self.stack.release_packet(parent)
        if parent.status == STATUS_SUCCESS:
            if parent.on_complete is not None:
                parent.on_complete(parent)
        elif parent.on_failed is not None:
            parent.on_failed(parent.status)

    # -- inspection ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {f"ipv{t.version}": {"datagrams": len(t.entries), "bytes_held": t.bytes_held}
                for t in (self.v4, self.v6)}


# --- hand-off routines ------------------------------------------------------------------------

@kroutine("tcpip")
def IppFragmentPackets(fragmentation: IpFragmentation, packet: TxPacket) -> None:
    fragmentation.fragment(packet)


@kroutine("tcpip")
def Ipv4pReassembleDatagram(ip: IpLayer, rx: RxFrame, iface: Interface, datagram: memoryview) -> None:
    """A whole datagram again: into the normal IPv4 receive path, as if it had arrived in one frame."""
    ip.counters.ipv4_received -= 1  # counted once already, as its fragments
    ip._receive_v4(rx, iface, datagram)


@kroutine("tcpip")
def Ipv6pReassembleDatagram(ip: IpLayer, rx: RxFrame, iface: Interface, datagram: memoryview) -> None:
    ip.counters.ipv6_received -= 1
    ip._receive_v6(rx, iface, datagram, iface.mac)


@kroutine("tcpip")
def IppReassemblyTimeout(fragmentation: IpFragmentation, table: ReassemblyTable, entry: Reassembly) -> None:
    fragmentation.timed_out(table, entry)
