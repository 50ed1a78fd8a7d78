"""TCP header (RFC 9293) and options: MSS, window scale, SACK (RFC 2018),
timestamps (RFC 7323), NOP/EOL; unknown options are skipped by their length."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from stack.wire.checksum import (
    AddressLike,
    BytesLike,
    Payload,
    as_chunks,
    pseudo_header_sum,
    transport_checksum,
    transport_checksum_ok,
)
from .errors import BAD_CHECKSUM, BAD_HEADER_LENGTH, BAD_OPTION, TRUNCATED, WireError
from .ipv4 import IPPROTO_TCP

TCP_HEADER_LEN = 20
TCP_MAX_OPTIONS_LEN = 40

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMPS = 8

_HEADER = struct.Struct("!HHIIBBHHH")
_HEADER_NOP_NOP_TS = struct.Struct("!HHIIBBHHHBBBBII")  # the fixed header, then NOP NOP TS
_TSVAL_TSECR = struct.Struct("!II")
_NOP_NOP_TS = bytes((OPT_NOP, OPT_NOP, OPT_TIMESTAMPS, 10))
_LAYER = "tcp"
# tcpdump's letters, in tcpdump's order.
_FLAG_LETTERS = ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (ACK, "."), (URG, "U"), (ECE, "E"), (CWR, "W"))


@dataclass(frozen=True, slots=True)
class TcpOptions:
    mss: int | None = None
    wscale: int | None = None  # shift count as sent; RFC 7323 caps its use at 14
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()  # (left edge, right edge) pairs
    timestamps: tuple[int, int] | None = None  # (TSval, TSecr)
    unknown_kinds: tuple[int, ...] = ()  # kinds that were skipped, for display

    def __bool__(self) -> bool:
        return (self.mss is not None or self.wscale is not None or self.sack_permitted
                or bool(self.sack_blocks) or self.timestamps is not None or bool(self.unknown_kinds))


NO_OPTIONS = TcpOptions()


@dataclass(frozen=True, slots=True)
class TcpHeader:
    src_port: int
    dst_port: int
    seq: int
    ack: int
    data_offset: int  # header length in 32-bit words, as on the wire
    flags: int
    window: int  # raw field, not scaled
    checksum: int
    urgent: int
    options: TcpOptions = NO_OPTIONS

    @property
    def header_length(self) -> int:
        """Header length in bytes (data_offset * 4)."""
        return self.data_offset * 4

    def has(self, flags: int) -> bool:
        """True when every bit in ``flags`` is set."""
        return self.flags & flags == flags


def format_flags(flags: int) -> str:
    """tcpdump's flag letters: "S", "S.", "P.", "F.", "R", "none" for no flags."""
    letters = "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)
    return letters or "none"


def _option_fields(view: memoryview) -> tuple[int | None, int | None, bool, tuple[tuple[int, int], ...],
                                              tuple[int, int] | None, tuple[int, ...]]:
    """(mss, wscale, sack_permitted, sack_blocks, timestamps, unknown kinds) of the option bytes."""
    size = len(view)
    # Fast path: NOP NOP TS, what every established segment of a connection with timestamps carries.
    if size == 12 and view[:4] == _NOP_NOP_TS:
        return None, None, False, (), _TSVAL_TSECR.unpack_from(view, 4), ()
    mss = wscale = timestamps = None
    sack_permitted = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    unknown: list[int] = []
    i = 0
    while i < size:
        kind = view[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= size:
            raise WireError(_LAYER, BAD_OPTION, f"option {kind} has no length")
        length = view[i + 1]
        if length < 2 or i + length > size:
            raise WireError(_LAYER, BAD_OPTION, f"option {kind} length {length}")
        if kind == OPT_MSS:
            if length != 4:
                raise WireError(_LAYER, BAD_OPTION, f"mss length {length}")
            mss = (view[i + 2] << 8) | view[i + 3]
        elif kind == OPT_WSCALE:
            if length != 3:
                raise WireError(_LAYER, BAD_OPTION, f"wscale length {length}")
            wscale = view[i + 2]
        elif kind == OPT_SACK_PERMITTED:
            if length != 2:
                raise WireError(_LAYER, BAD_OPTION, f"sackOK length {length}")
            sack_permitted = True
        elif kind == OPT_SACK:
            if length < 10 or (length - 2) % 8:
                raise WireError(_LAYER, BAD_OPTION, f"sack length {length}")
            edges = struct.unpack_from(f"!{(length - 2) // 4}I", view, i + 2)
            sack_blocks = tuple(zip(edges[0::2], edges[1::2]))
        elif kind == OPT_TIMESTAMPS:
            if length != 10:
                raise WireError(_LAYER, BAD_OPTION, f"timestamps length {length}")
            timestamps = _TSVAL_TSECR.unpack_from(view, i + 2)
        else:
            unknown.append(kind)
        i += length
    return mss, wscale, sack_permitted, sack_blocks, timestamps, tuple(unknown)


def parse_tcp_options(buf: BytesLike) -> TcpOptions:
    """Decode the option bytes between the fixed header and the data offset."""
    return TcpOptions(*_option_fields(memoryview(buf)))


def _fixed_header(view: memoryview, src: AddressLike | None, dst: AddressLike | None,
                  verify_checksum: bool) -> tuple[int, ...]:
    """The fixed header's nine fields, after the length and checksum checks parse_tcp documents."""
    size = len(view)
    if size < TCP_HEADER_LEN:
        raise WireError(_LAYER, TRUNCATED, f"{size} bytes")
    fields = _HEADER.unpack_from(view, 0)
    data_offset = fields[4] >> 4
    header_length = data_offset * 4
    if data_offset < 5:
        raise WireError(_LAYER, BAD_HEADER_LENGTH, f"data offset {data_offset}")
    if header_length > size:
        raise WireError(_LAYER, TRUNCATED, f"header {header_length} > {size} bytes")
    if verify_checksum and src is not None and dst is not None:
        if not transport_checksum_ok(pseudo_header_sum(src, dst, IPPROTO_TCP, size), (view,)):
            raise WireError(_LAYER, BAD_CHECKSUM, f"checksum {fields[7]:#06x}")
    return fields


def parse_tcp(
    buf: BytesLike,
    src: AddressLike | None = None,
    dst: AddressLike | None = None,
    *,
    verify_checksum: bool = True,
) -> tuple[TcpHeader, memoryview]:
    """Parse a segment (the IP payload, already cut to the IP length).

    The checksum is verified when both IP addresses are given (4 or 16 bytes
    pick the pseudo-header).
    """
    view = memoryview(buf)
    src_port, dst_port, seq, ack, offset_byte, flags, window, checksum, urgent = _fixed_header(
        view, src, dst, verify_checksum)
    data_offset = offset_byte >> 4
    header_length = data_offset * 4
    options = parse_tcp_options(view[TCP_HEADER_LEN:header_length]) if data_offset > 5 else NO_OPTIONS
    header = TcpHeader(src_port, dst_port, seq, ack, data_offset, flags, window, checksum, urgent, options)
    return header, view[header_length:]


TcpSegmentFields = tuple[int, int, int, int, int, int, "int | None", "int | None", bool, "tuple[int, int] | None",
                         "tuple[tuple[int, int], ...]", memoryview]


def parse_tcp_segment(
    buf: BytesLike,
    src: AddressLike | None = None,
    dst: AddressLike | None = None,
    *,
    verify_checksum: bool = True,
) -> TcpSegmentFields:
    """parse_tcp for the per-segment receive path: the same checks and errors, but the
    fields as one flat tuple and no header records built - (src_port, dst_port, seq, ack,
    flags, window, mss, wscale, sack_permitted, timestamps, sack_blocks, payload)."""
    view = memoryview(buf)
    src_port, dst_port, seq, ack, offset_byte, flags, window, _, _ = _fixed_header(view, src, dst, verify_checksum)
    header_length = (offset_byte >> 4) * 4
    if header_length == TCP_HEADER_LEN:
        return src_port, dst_port, seq, ack, flags, window, None, None, False, None, (), view[TCP_HEADER_LEN:]
    mss, wscale, sack_permitted, sack_blocks, timestamps, _ = _option_fields(view[TCP_HEADER_LEN:header_length])
    return (src_port, dst_port, seq, ack, flags, window, mss, wscale, sack_permitted, timestamps, sack_blocks,
            view[header_length:])


def _options_length(mss: int | None, wscale: int | None, sack_permitted: bool,
                    sack_blocks: tuple[tuple[int, int], ...], timestamps: tuple[int, int] | None) -> int:
    length = 0
    if mss is not None:
        length += 4
    if wscale is not None:
        length += 4
    if timestamps is not None:
        length += 12  # SACKOK (or NOP NOP) + TS
    elif sack_permitted:
        length += 4
    if sack_blocks:
        length += 4 + 8 * len(sack_blocks)
    return length


def tcp_options_length(options: TcpOptions | None) -> int:
    """Bytes ``emit_tcp_options`` writes (always a multiple of 4)."""
    if not options:
        return 0
    return _options_length(options.mss, options.wscale, options.sack_permitted, options.sack_blocks,
                           options.timestamps)


def _emit_options(buf: bytearray | memoryview, pos: int, mss: int | None, wscale: int | None,
                  sack_permitted: bool, sack_blocks: tuple[tuple[int, int], ...],
                  timestamps: tuple[int, int] | None) -> int:
    if mss is not None:
        struct.pack_into("!BBH", buf, pos, OPT_MSS, 4, mss)
        pos += 4
    if wscale is not None:
        struct.pack_into("!BBBB", buf, pos, OPT_NOP, OPT_WSCALE, 3, wscale)
        pos += 4
    if timestamps is not None:
        if sack_permitted:
            struct.pack_into("!BB", buf, pos, OPT_SACK_PERMITTED, 2)
        else:
            struct.pack_into("!BB", buf, pos, OPT_NOP, OPT_NOP)
        tsval, tsecr = timestamps
        struct.pack_into("!BBII", buf, pos + 2, OPT_TIMESTAMPS, 10, tsval & 0xFFFFFFFF, tsecr & 0xFFFFFFFF)
        pos += 12
    elif sack_permitted:
        struct.pack_into("!BBBB", buf, pos, OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2)
        pos += 4
    if sack_blocks:
        count = len(sack_blocks)
        struct.pack_into("!BBBB", buf, pos, OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * count)
        edges = [edge & 0xFFFFFFFF for block in sack_blocks for edge in block]
        struct.pack_into(f"!{2 * count}I", buf, pos + 4, *edges)
        pos += 4 + 8 * count
    return pos


def emit_tcp_options(buf: bytearray | memoryview, offset: int, options: TcpOptions) -> int:
    """Write options in a conventional, 4-byte aligned order; returns the offset past them.

    Layout: MSS | NOP WS | (SACKOK TS) or (NOP NOP SACKOK) or (NOP NOP TS) | NOP NOP SACK.
    """
    return _emit_options(buf, offset, options.mss, options.wscale, options.sack_permitted, options.sack_blocks,
                         options.timestamps)


def tcp_header_length(options: TcpOptions | None = None) -> int:
    """Header bytes (20 plus options) that ``emit_tcp`` writes."""
    return TCP_HEADER_LEN + tcp_options_length(options)


def emit_tcp_header(
    buf: bytearray | memoryview,
    offset: int,
    src_port: int,
    dst_port: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    mss: int | None = None,
    wscale: int | None = None,
    sack_permitted: bool = False,
    sack_blocks: tuple[tuple[int, int], ...] = (),
    timestamps: tuple[int, int] | None = None,
    urgent: int = 0,
) -> int:
    """Write the header with the options given field by field, checksum field 0; returns the
    offset past it.  emit_tcp's per-segment core: no TcpOptions record is needed, and the two
    common shapes (no options; timestamps only) are written with one pack each."""
    if not 0 <= window <= 0xFFFF:
        raise ValueError(f"window field out of range: {window}")
    if mss is None and wscale is None and not sack_permitted and not sack_blocks:
        if timestamps is None:
            _HEADER.pack_into(buf, offset, src_port, dst_port, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50,
                              flags & 0xFF, window, 0, urgent)
            return offset + TCP_HEADER_LEN
        tsval, tsecr = timestamps
        _HEADER_NOP_NOP_TS.pack_into(buf, offset, src_port, dst_port, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x80,
                                     flags & 0xFF, window, 0, urgent, OPT_NOP, OPT_NOP, OPT_TIMESTAMPS, 10,
                                     tsval & 0xFFFFFFFF, tsecr & 0xFFFFFFFF)
        return offset + TCP_HEADER_LEN + 12
    options_length = _options_length(mss, wscale, sack_permitted, sack_blocks, timestamps)
    if options_length > TCP_MAX_OPTIONS_LEN:
        raise ValueError(f"TCP options need {options_length} bytes, at most 40 fit")
    header_length = TCP_HEADER_LEN + options_length
    _HEADER.pack_into(
        buf, offset, src_port, dst_port, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
        (header_length // 4) << 4, flags & 0xFF, window, 0, urgent,
    )
    if options_length:
        _emit_options(buf, offset + TCP_HEADER_LEN, mss, wscale, sack_permitted, sack_blocks, timestamps)
    return offset + header_length


def fill_tcp_checksum(buf: bytearray | memoryview, offset: int, end: int, payload: Payload,
                      src: AddressLike, dst: AddressLike) -> None:
    """Compute the checksum of the header at buf[offset:end] plus ``payload`` (read, never
    copied) and write it into the header's checksum field (which must be 0)."""
    chunks = as_chunks(payload)
    length = end - offset + sum(len(chunk) for chunk in chunks)
    header = memoryview(buf)[offset:end]
    checksum = transport_checksum(pseudo_header_sum(src, dst, IPPROTO_TCP, length), (header, *chunks))
    struct.pack_into("!H", buf, offset + 16, checksum)


def emit_tcp(
    buf: bytearray | memoryview,
    offset: int,
    *,
    src_port: int,
    dst_port: int,
    seq: int,
    ack: int = 0,
    flags: int,
    window: int,
    urgent: int = 0,
    options: TcpOptions | None = None,
    payload: Payload = (),
    src: AddressLike | None = None,
    dst: AddressLike | None = None,
) -> int:
    """Write the header and options at ``offset``; returns the offset past them.

    ``payload`` (one buffer or a list of chunks) is read for the checksum only,
    never copied. With both IP addresses the checksum is computed; without them
    the field is left 0 (for checksum offload to fill).
    """
    if options is None:
        options = NO_OPTIONS
    end = emit_tcp_header(buf, offset, src_port, dst_port, seq, ack, flags, window, options.mss, options.wscale,
                          options.sack_permitted, options.sack_blocks, options.timestamps, urgent)
    if src is not None and dst is not None:
        fill_tcp_checksum(buf, offset, end, payload, src, dst)
    return end


def build_tcp(
    src: AddressLike,
    dst: AddressLike,
    src_port: int,
    dst_port: int,
    seq: int,
    ack: int = 0,
    flags: int = ACK,
    window: int = 65535,
    *,
    options: TcpOptions | None = None,
    payload: BytesLike = b"",
    urgent: int = 0,
) -> bytes:
    """A whole segment (header, options, payload) with its checksum, for tests and tools."""
    header_length = tcp_header_length(options)
    out = bytearray(header_length + len(payload))
    out[header_length:] = payload
    emit_tcp(out, 0, src_port=src_port, dst_port=dst_port, seq=seq, ack=ack, flags=flags, window=window,
             urgent=urgent, options=options, payload=payload, src=src, dst=dst)
    return bytes(out)
