"""Receive segment coalescing (RSC): the NIC merges in-order TCP data segments.

With RSC on, the receive engine looks at each TCP segment it has just
validated.  Consecutive data segments of one connection that arrive before
the driver next takes the receive completions (one DPC's worth) become one
*single coalesced unit* (SCU): the first segment is DMA'd whole into its
receive buffer as usual; each following one has only its payload DMA'd into
the next posted buffer.  When the driver takes the completions the NIC
finalises each SCU by rewriting the first buffer's headers so that they
describe the whole unit (IP length, latest ACK and window, PSH if any
segment had it), and the miniport indicates it as one NET_BUFFER whose MDL
chain runs through all those buffers - so NDIS and tcpip look at one header
for up to 64 KB of payload, the receive-side twin of LSO.

The rules follow "Rules for Coalescing TCP/IP Segments" and "Exception
Conditions that Terminate Coalescing" in the NDIS documentation, kept to
what this NIC can meet:

* only TCP over untagged IPv4 without options or fragments, or IPv6
  without extension headers, with both checksums verified good;
* flags ACK (and PSH) only - SYN, FIN, RST, URG, ECE, CWR end a unit;
* TCP options: none, or the timestamp option alone (NOP NOP TS);
* a segment joins only if its sequence number is the unit's next one, its
  ACK does not move backwards, its TSval does not move backwards, and
  TOS/traffic class, DF and the option layout match the unit's;
* zero-payload segments (pure ACKs) are never coalesced and end the unit;
* a unit never grows past the largest legal IP datagram (65535 bytes).

An exception ends the connection's current unit; the segment that raised
it is indicated on its own or starts a new unit.  The SCU keeps the first
segment's IP ID and timestamp option (RFC 7323: TS.Recent comes from the
earliest unacknowledged segment); the TCP checksum of the rewritten header
is not recomputed, which the indication says with TcpChecksumValueInvalid.
"""

from __future__ import annotations

import struct

from stack.wire.checksum import internet_checksum

TCP_ACK = 0x10
TCP_PSH = 0x08
_DATA_FLAGS = TCP_ACK | TCP_PSH
MAX_IP_DATAGRAM = 65535

# Receive checksum bits set on an SCU (the NDIS Receive view's bit positions).
RX_TCP_VALUE_INVALID = 1 << 7  # TcpChecksumValueInvalid
_TS_OPTION_PREFIX = b"\x01\x01\x08\x0a"  # NOP NOP kind=8 len=10

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")

# Why a unit ended, for the NIC's counters (what `!ndiskd.netadapter` shows).
END_NOT_NEXT = "out_of_order"
END_EXCEPTION = "exception"
END_FULL = "max_size"


class RscUnit:
    """One single coalesced unit in the making; the first segment's receive completion points at it."""

    __slots__ = ("flow", "ip_offset", "tcp_offset", "version", "header_length", "first_sg", "next_seq", "ack",
                 "window", "psh", "segments", "dup_acks", "ip_length", "ttl", "tsval_first", "tsval_last",
                 "shape", "extra", "extra_bytes")

    def __init__(self, flow: bytes, ip_offset: int, tcp_offset: int, version: int, header_length: int,
                 first_sg: list, next_seq: int, ack: int, window: int, psh: bool, ip_length: int, ttl: int,
                 tsval: int | None, shape: bytes) -> None:
        self.flow = flow
        self.ip_offset = ip_offset
        self.tcp_offset = tcp_offset
        self.version = version
        self.header_length = header_length  # Ethernet + IP + TCP header bytes of the first segment
        self.first_sg = first_sg
        self.next_seq = next_seq
        self.ack = ack
        self.window = window
        self.psh = psh
        self.segments = 1
        self.dup_acks = 0
        self.ip_length = ip_length  # IPv4 total length / IPv6 payload length + 40 of the unit so far
        self.ttl = ttl
        self.tsval_first = tsval
        self.tsval_last = tsval
        self.shape = shape  # what must match for a segment to join: TOS/TC, DF, TCP header length
        self.extra: list[tuple[object, int]] = []  # (receive buffer cookie, payload bytes) of joined segments
        self.extra_bytes = 0

    @property
    def timestamp_delta(self) -> int:
        """RscTcpTimestampDelta: newest minus oldest TSval of the coalesced segments."""
        if self.tsval_first is None or self.tsval_last is None:
            return 0
        return (self.tsval_last - self.tsval_first) & 0xFFFFFFFF


class RscSegment:
    """What the engine read from a coalescing candidate's headers."""

    __slots__ = ("flow", "ip_offset", "tcp_offset", "version", "header_length", "seq", "ack", "window", "psh",
                 "payload_length", "ip_length", "ttl", "tsval", "shape")

    def __init__(self, flow: bytes, ip_offset: int, tcp_offset: int, version: int, header_length: int, seq: int,
                 ack: int, window: int, psh: bool, payload_length: int, ip_length: int, ttl: int,
                 tsval: int | None, shape: bytes) -> None:
        self.flow = flow
        self.ip_offset = ip_offset
        self.tcp_offset = tcp_offset
        self.version = version
        self.header_length = header_length
        self.seq = seq
        self.ack = ack
        self.window = window
        self.psh = psh
        self.payload_length = payload_length
        self.ip_length = ip_length
        self.ttl = ttl
        self.tsval = tsval
        self.shape = shape


def classify(frame: bytes) -> tuple[RscSegment | None, bytes | None]:
    """(candidate, flow) for a frame whose checksums the NIC has verified.

    A TCP segment that may not be coalesced returns (None, its flow) - it
    still ends the flow's open unit; a frame that is not TCP at all returns
    (None, None)."""
    n = len(frame)
    if n < 54:
        return None, None
    if frame[12] == 0x08 and frame[13] == 0x00:
        if frame[23] != 6:
            return None, None
        ip = 14
        ver_ihl = frame[14]
        flow = frame[26:34] + frame[34:38]  # addresses and ports
        if ver_ihl != 0x45:  # IP options (or not IPv4 at all) are an exception
            return None, flow
        flags_frag = _U16.unpack_from(frame, 20)[0]
        if flags_frag & 0x3FFF:  # a fragment
            return None, flow
        ip_length = _U16.unpack_from(frame, 16)[0]
        tos = frame[15]
        if tos & 0x03 == 0x03:  # ECN CE: must reach TCP on its own
            return None, flow
        ttl = frame[22]
        shape_ip = bytes((4, tos, flags_frag >> 8))
        tcp = 34
        end = 14 + ip_length
        version = 4
    elif frame[12] == 0x86 and frame[13] == 0xDD:
        if n < 74 or frame[20] != 6:  # next header TCP: no extension headers
            return None, None
        ip = 14
        flow = frame[22:54] + frame[54:58]
        first = _U32.unpack_from(frame, 14)[0]
        if (first >> 20) & 0x03 == 0x03:  # ECN CE
            return None, flow
        payload_length = _U16.unpack_from(frame, 18)[0]
        ip_length = payload_length + 40
        ttl = frame[21]
        shape_ip = bytes((6, (first >> 20) & 0xFF, 0))
        tcp = 54
        end = 54 + payload_length
        version = 6
    else:
        return None, None
    if end > n or end - tcp < 20:
        return None, flow
    flags = frame[tcp + 13]
    if flags & ~_DATA_FLAGS or not flags & TCP_ACK:
        return None, flow
    data_offset = (frame[tcp + 12] >> 4) * 4
    tsval = None
    if data_offset == 32:
        if frame[tcp + 20:tcp + 24] != _TS_OPTION_PREFIX:
            return None, flow
        tsval = _U32.unpack_from(frame, tcp + 24)[0]
    elif data_offset != 20:
        return None, flow
    header_length = tcp + data_offset
    payload_length = end - header_length
    if payload_length <= 0:
        return None, flow
    seq, ack = struct.unpack_from("!II", frame, tcp + 4)
    window = _U16.unpack_from(frame, tcp + 14)[0]
    return RscSegment(flow, ip, tcp, version, header_length, seq, ack, window, bool(flags & TCP_PSH),
                      payload_length, ip_length, ttl, tsval, shape_ip + bytes((data_offset,))), flow


def start_unit(seg: RscSegment, first_sg: list) -> RscUnit:
    return RscUnit(seg.flow, seg.ip_offset, seg.tcp_offset, seg.version, seg.header_length, first_sg,
                   (seg.seq + seg.payload_length) & 0xFFFFFFFF, seg.ack, seg.window, seg.psh, seg.ip_length,
                   seg.ttl, seg.tsval, seg.shape)


def joins(unit: RscUnit, seg: RscSegment) -> str | None:
    """None when `seg` may join `unit`, else why the unit ends here."""
    if seg.seq != unit.next_seq or seg.shape != unit.shape:
        return END_NOT_NEXT if seg.seq != unit.next_seq else END_EXCEPTION
    if (seg.ack - unit.ack) & 0x80000000:  # the ACK moved backwards
        return END_EXCEPTION
    if seg.tsval is not None and (seg.tsval - unit.tsval_last) & 0x80000000:
        return END_EXCEPTION
    if unit.ip_length + seg.payload_length > MAX_IP_DATAGRAM:
        return END_FULL
    return None


def joins_next(unit: RscUnit, first: RscSegment, seq: int, n: int) -> str | None:
    """joins() for a segment that is `first` with another sequence number and `n` payload bytes - a
    large send's later segment (LSO copies every other header field) - without building it."""
    if seq != unit.next_seq or first.shape != unit.shape:
        return END_NOT_NEXT if seq != unit.next_seq else END_EXCEPTION
    if (first.ack - unit.ack) & 0x80000000:
        return END_EXCEPTION
    if first.tsval is not None and (first.tsval - unit.tsval_last) & 0x80000000:
        return END_EXCEPTION
    if unit.ip_length + n > MAX_IP_DATAGRAM:
        return END_FULL
    return None


def add_next(unit: RscUnit, first: RscSegment, n: int, psh: bool, cookie: object) -> None:
    """add() for the segment joins_next() let in."""
    unit.next_seq = (unit.next_seq + n) & 0xFFFFFFFF
    unit.ack = first.ack
    unit.window = first.window
    if psh:
        unit.psh = True
    unit.segments += 1
    unit.ip_length += n
    if first.ttl < unit.ttl:
        unit.ttl = first.ttl
    if first.tsval is not None:
        unit.tsval_last = first.tsval
    unit.extra.append((cookie, n))
    unit.extra_bytes += n


def add(unit: RscUnit, seg: RscSegment, cookie: object) -> None:
    """Account a joined segment (its payload is already in the buffer `cookie` names)."""
    add_next(unit, seg, seg.payload_length, seg.psh, cookie)


def finalize_header(unit: RscUnit, header: memoryview) -> None:
    """Rewrite the first segment's headers (a view of its receive buffer) to describe the whole unit."""
    ip = unit.ip_offset
    tcp = unit.tcp_offset
    if unit.version == 4:
        _U16.pack_into(header, ip + 2, unit.ip_length)
        header[ip + 8] = unit.ttl
        header[ip + 10] = header[ip + 11] = 0
        _U16.pack_into(header, ip + 10, internet_checksum(header[ip:ip + 20]))
    else:
        _U16.pack_into(header, ip + 4, unit.ip_length - 40)
        header[ip + 7] = unit.ttl
    _U32.pack_into(header, tcp + 8, unit.ack)
    if unit.psh:
        header[tcp + 13] |= TCP_PSH
    _U16.pack_into(header, tcp + 14, unit.window)
