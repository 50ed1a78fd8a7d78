"""The TCP core's own segment record.  The glue converts it to and from the
wire format (stack.tcpip.wire.tcp); the core never sees bytes of headers."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import TcpSegmentError
from .seq import SEQ_MASK

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20

_FLAG_LETTERS = ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (URG, "U"), (ACK, "."))


@dataclass(slots=True)
class TcpSegment:
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int  # the raw 16-bit field as on the wire (not scaled)
    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    timestamps: tuple[int, int] | None = None  # (TSval, TSecr)
    sack_blocks: tuple[tuple[int, int], ...] = ()
    payload: tuple[memoryview, ...] = ()  # scatter-gather chunks, never joined by the core
    # Wire segments this one stands for: >1 when the NIC coalesced them (RSC, an
    # NDIS_RSC_NBL_INFO CoalescedSegCount; delayed ACK counts each of them), or on the way out
    # when the core built one large send (TSO, TcpConnection.tso_size) that the NIC cuts into
    # that many MSS-sized segments.
    segments: int = 1
    # Where the payload's bytes live, for the receive buffer to keep next to them: (the payload
    # tuple this describes, one location per chunk - the glue's physical addresses).  Whoever
    # replaces `payload` (with a copy) voids it without a word: the core uses it only while
    # `payload` is still that very tuple.
    payload_at: tuple[tuple[memoryview, ...], tuple[int, ...]] | None = None

    @property
    def payload_len(self) -> int:
        chunks = self.payload
        if not chunks:
            return 0
        if len(chunks) == 1:
            return len(chunks[0])
        return sum(map(len, chunks))

    @property
    def seg_len(self) -> int:
        """Sequence space the segment occupies: payload plus one each for SYN and FIN."""
        return self.payload_len + (self.flags & SYN) // SYN + (self.flags & FIN)

    def has(self, flags: int) -> bool:
        return self.flags & flags == flags

    def validate(self) -> None:
        """Raise TcpSegmentError if a field cannot appear on the wire.

        The glue's parser already guarantees this; crafted segments (tests,
        scripts) should call it before handing a segment to the core."""
        for name in ("src_port", "dst_port", "window"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
                raise TcpSegmentError(f"{name}={value!r} is not a 16-bit value")
        for name in ("seq", "ack"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= SEQ_MASK:
                raise TcpSegmentError(f"{name}={value!r} is not a 32-bit value")
        if not isinstance(self.flags, int) or not 0 <= self.flags <= 0xFF:
            raise TcpSegmentError(f"flags={self.flags!r} is not an 8-bit value")
        if self.mss is not None and not 0 < self.mss <= 0xFFFF:
            raise TcpSegmentError(f"mss={self.mss!r} out of range")
        if self.wscale is not None and not 0 <= self.wscale <= 0xFF:
            raise TcpSegmentError(f"wscale={self.wscale!r} out of range")
        if self.timestamps is not None and (
            len(self.timestamps) != 2 or not all(0 <= t <= SEQ_MASK for t in self.timestamps)
        ):
            raise TcpSegmentError(f"timestamps={self.timestamps!r} are not two 32-bit values")
        for chunk in self.payload:
            if not isinstance(chunk, memoryview):
                raise TcpSegmentError(f"payload chunk of type {type(chunk).__name__}, expected memoryview")

    def describe(self) -> str:
        """tcpdump-like one-liner, for logs and test failure messages."""
        flags = "".join(letter for bit, letter in _FLAG_LETTERS if self.flags & bit) or "none"
        text = f"{self.src_port}>{self.dst_port} [{flags}] seq={self.seq} ack={self.ack} win={self.window}"
        if self.payload_len:
            text += f" len={self.payload_len}"
        if self.mss is not None:
            text += f" mss={self.mss}"
        if self.wscale is not None:
            text += f" wscale={self.wscale}"
        if self.sack_permitted:
            text += " sackOK"
        if self.timestamps is not None:
            text += f" TS={self.timestamps[0]}/{self.timestamps[1]}"
        if self.sack_blocks:
            text += " sack=" + ",".join(f"{a}-{b}" for a, b in self.sack_blocks)
        return text


def rst_for_unexpected(seg: TcpSegment) -> TcpSegment | None:
    """The reset answering a segment that belongs to no connection
    (RFC 9293 section 3.10.7.1): never answer a RST; if the segment carries
    an ACK the reset takes its sequence number from SEG.ACK, otherwise it is
    <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>."""
    if seg.flags & RST:
        return None
    if seg.flags & ACK:
        return TcpSegment(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
    return TcpSegment(seg.dst_port, seg.src_port, 0, (seg.seq + seg.seg_len) & SEQ_MASK, RST | ACK, 0)
