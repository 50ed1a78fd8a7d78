"""Paravirtual offload pass-through: a large send crosses the virtual switch uncut.

Between two virtual NICs on one host, Hyper-V's vmswitch (netvsc) and
virtio-net (GSO/GRO) never cut a large send into wire frames and never
compute checksums nobody reads: the large send crosses the switch as one
unit marked "checksum partial", and the receiver is told the data is valid.
This module does the same for the lab, without changing what anything above
NDIS sees:

* The sending NIC still owns the segmentation *rules*: `LargeSend` knows
  each segment's sequence number, flags, IP identification and length
  exactly as `segment_lso` would have cut them; it builds a segment's frame
  (with its real checksums) only when the frame can be read by someone.
* The link and the switch account every segment as the frame it stands for
  (serialization time, queue depth, counters), so each segment still reaches
  the receiving NIC at the very nanosecond its frame would have.  What goes
  away is the per-frame switch event, the frames themselves and the
  checksum validation on receive (the receiver trusts "data valid").
* The receiving NIC handles each segment in its own event, as a frame: the
  receive filter, the posted buffer, RSC coalescing and the interrupt are
  the same code, so the NBLs, RSC info and timing above NDIS are identical.
  While nothing can tell events apart (no bus subscriber, no processor
  model, a run loop that would take the next segment's event next anyway),
  one event runs the segments due next back to back - this unit's and the
  other direction's - each at its own time and counted as an event
  (segrun.py, Scheduler.claim_next): fewer dispatches, the same sequence.
  A segment that joins an open RSC unit only has its payload DMA'd - straight
  from the sender's snapshot - so its frame and checksum are never made; a
  segment whose frame lands in a receive buffer whole (a unit's first) is
  built for real, so receive memory holds exactly what real frames leave.
  With a bus subscriber (the debugger) every segment's frame event carries
  its real frame too: the bus sequence is the same event for event.

The moment anything observes or perturbs the wire the path falls back to
real frames with real checksums: `passthrough_blocker` walks the path a
frame would take and names the first thing that needs real frames (a
capture tap, fault injection, a bridge or other plain frame sink, flooding,
a hold placed by the debugger, the switch turned off, a receiver without
receive checksum offload).  It is evaluated for every large send, so
starting a capture takes effect with the next one.  A unit that meets
something on the way the sender could not see (a link queue that would drop
one of its frames, a tap added while it travels) is cut into real frames at
that hop, each at its own time, and goes on as frames.
"""

from __future__ import annotations

import struct
from collections import Counter

from stack.wire.checksum import internet_checksum, transport_checksum

ETH_HEADER_LEN = 14
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = 0x8100
PROTO_TCP = 6
TCP_FIN = 0x01
TCP_PSH = 0x08
TCP_CWR = 0x80

# Why a large send went out as real frames (the counters `!nic` shows).
BLOCK_OFF = "off"  # turned off on the NIC (`!nic passthrough off`)
BLOCK_CAPTURE = "capture"  # a tap on a link end or a switch port
BLOCK_FAULT = "fault"  # fault injection on a link end
BLOCK_SINK = "frame_sink"  # a sink that only takes frames (the TAP bridge, --forward, a test sink)
BLOCK_FLOOD = "flood"  # the switch does not know the destination yet
BLOCK_QUEUE = "queue"  # a link queue would drop one of the unit's frames (drops are per frame)
BLOCK_RECEIVER = "receiver_offloads"  # the receiving NIC has no receive checksum offload to say "data valid" to
BLOCK_HOLD = "hold"  # the debugger watches frames (a breakpoint on a frame event, db on a frame buffer)

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


class OffloadError(ValueError):
    """A frame the offload engine cannot work on (not IPv4/IPv6 TCP, headers truncated)."""


class LargeSend:
    """One LSO v2 send: the snapshot the NIC gathered, and how it is cut into MSS-sized segments.

    `frame(i, checksums=True)` is byte for byte the i-th frame `segment_lso`
    returns; with ``checksums=False`` the TCP checksum field keeps what the
    transport left there (the pseudo-header seed: "checksum partial")."""

    __slots__ = ("data", "mss", "ip", "tcp", "ipv4", "ihl", "headers_end", "count", "seq", "flags", "ident",
                 "pseudo_base", "ip_len_fixed", "payload_length", "dst", "_rsc", "rx_run")

    def __init__(self, data: bytes, mss: int, tcp_header_offset: int = 0) -> None:
        if mss <= 0:
            raise OffloadError(f"bad MSS {mss}")
        n = len(data)
        if n < ETH_HEADER_LEN:
            raise OffloadError("frame shorter than an Ethernet header")
        ethertype = _U16.unpack_from(data, 12)[0]
        ip = ETH_HEADER_LEN
        if ethertype == ETHERTYPE_VLAN:
            if n < ETH_HEADER_LEN + 4:
                raise OffloadError("truncated VLAN tag")
            ethertype = _U16.unpack_from(data, 16)[0]
            ip += 4
        if ethertype == ETHERTYPE_IPV4:
            if n < ip + 20:
                raise OffloadError("truncated IPv4 header")
            ihl = (data[ip] & 0x0F) * 4
            if data[ip + 9] != PROTO_TCP:
                raise OffloadError("LSO needs TCP")
            tcp = tcp_header_offset or ip + ihl
            ipv4 = True
            self.ident = _U16.unpack_from(data, ip + 4)[0]
            src_addr, dst_addr = data[ip + 12:ip + 16], data[ip + 16:ip + 20]
        elif ethertype == ETHERTYPE_IPV6:
            if n < ip + 40:
                raise OffloadError("truncated IPv6 header")
            ihl = 40
            tcp = tcp_header_offset or ip + 40
            ipv4 = False
            self.ident = 0
            src_addr, dst_addr = data[ip + 8:ip + 24], data[ip + 24:ip + 40]
        else:
            raise OffloadError(f"LSO of ethertype {ethertype:#06x}")
        if n < tcp + 20:
            raise OffloadError("truncated TCP header")
        thl = (data[tcp + 12] >> 4) * 4
        if thl < 20 or n < tcp + thl:
            raise OffloadError("bad TCP header length")
        self.data = data
        self.mss = mss
        self.ip = ip
        self.tcp = tcp
        self.ipv4 = ipv4
        self.ihl = ihl
        self.headers_end = tcp + thl
        self.payload_length = n - self.headers_end
        self.count = max(1, -(-self.payload_length // mss))
        self.seq = _U32.unpack_from(data, tcp + 4)[0]
        self.flags = data[tcp + 13]
        # The pseudo-header sum without its length word (pseudo_header_sum_v4/v6 are the same sum).
        self.pseudo_base = int.from_bytes(src_addr, "big") + int.from_bytes(dst_addr, "big") + PROTO_TCP
        self.ip_len_fixed = tcp - ip - ihl  # bytes between the IP header and the TCP header
        self.dst = data[:6]
        self._rsc: tuple | None = None  # what the receiver's RSC engine read from segment 0 (see rsc_segment)
        self.rx_run = None  # the receiving NIC's segrun.SegmentRun for it, made by its first pump

    def segment_payload(self, i: int) -> int:
        """Payload bytes of segment `i`."""
        if i < self.count - 1:
            return self.mss
        return self.payload_length - i * self.mss

    def frame_length(self, i: int) -> int:
        return self.headers_end + self.segment_payload(i)

    def frame_lengths(self) -> list[int]:
        h = self.headers_end
        mss = self.mss
        lengths = [h + mss] * (self.count - 1)
        lengths.append(h + self.payload_length - (self.count - 1) * mss)
        return lengths

    def frame(self, i: int, checksums: bool = True) -> bytes:
        """The i-th wire frame (headers fixed up as LSO v2 does)."""
        data = self.data
        ip = self.ip
        tcp = self.tcp
        end = self.headers_end
        mss = self.mss
        start = end + i * mss
        chunk_len = self.segment_payload(i)
        chunk = memoryview(data)[start:start + chunk_len]
        hdr = bytearray(data[:end])
        seg_len = end - tcp + chunk_len + self.ip_len_fixed  # bytes after the IP header
        if self.ipv4:
            ihl = self.ihl
            _U16.pack_into(hdr, ip + 2, ihl + seg_len)
            _U16.pack_into(hdr, ip + 4, (self.ident + i) & 0xFFFF)
            hdr[ip + 10] = hdr[ip + 11] = 0
            _U16.pack_into(hdr, ip + 10, internet_checksum(memoryview(hdr)[ip:ip + ihl]))
        else:
            _U16.pack_into(hdr, ip + 4, seg_len)
        _U32.pack_into(hdr, tcp + 4, (self.seq + i * mss) & 0xFFFFFFFF)
        f = self.flags
        if i != self.count - 1:
            f &= ~(TCP_FIN | TCP_PSH)
        if i != 0:
            f &= ~TCP_CWR
        hdr[tcp + 13] = f
        if checksums:
            value = self.pseudo_base + (end - tcp) + chunk_len
            pseudo = value % 0xFFFF or (0xFFFF if value else 0)  # folded, as pseudo_header_sum_v4/v6
            hdr[tcp + 16] = hdr[tcp + 17] = 0
            _U16.pack_into(hdr, tcp + 16, transport_checksum(pseudo, (memoryview(hdr)[tcp:], chunk)))
        hdr += chunk  # the payload is copied once, straight into the frame
        return bytes(hdr)

    def rsc_first(self):
        """What rsc.classify reads from segment 0's frame (None: not a coalescing candidate), read once."""
        if self._rsc is None:
            from .rsc import classify  # the receive engine's rules, applied once per unit
            self._rsc = (classify(self.frame(0, False))[0],)
        return self._rsc[0]

    def classify_first(self, frame: bytes) -> tuple:
        """rsc.classify of segment 0's frame, built by the caller (with or without its TCP checksum:
        classify reads neither checksum); kept for rsc_first."""
        from .rsc import classify
        result = classify(frame)
        if self._rsc is None:
            self._rsc = (result[0],)
        return result

    def rsc_segment(self, i: int):
        """What rsc.classify would read from segment i's frame, without building it (None: no candidate).

        Segment 0's frame is classified once; the others differ only in
        sequence number, lengths and PSH (LSO leaves every other field as is)."""
        if self._rsc is None:
            from .rsc import classify  # the receive engine's rules, applied once per unit
            self._rsc = (classify(self.frame(0, False))[0],)
        first = self._rsc[0]
        if first is None:
            return None
        if i == 0:
            return first
        payload = self.segment_payload(i)
        grow = payload - first.payload_length
        return type(first)(first.flow, first.ip_offset, first.tcp_offset, first.version, first.header_length,
                           (self.seq + i * self.mss) & 0xFFFFFFFF, first.ack, first.window,
                           i == self.count - 1 and bool(self.flags & TCP_PSH), payload, first.ip_length + grow,
                           first.ttl, first.tsval, first.shape)

    def frames(self, checksums: bool = True) -> list[bytes]:
        return [self.frame(i, checksums) for i in range(self.count)]


class PassThroughCounters:
    """Per sending NIC: large sends that crossed uncut, and why others went out as frames."""

    __slots__ = ("units", "segments", "fallbacks")

    def __init__(self) -> None:
        self.units = 0
        self.segments = 0
        self.fallbacks: Counter = Counter()
