"""The time-wait TCB: what is left of a connection in TIME_WAIT once its full TCB is freed.

Windows' tcpip does not keep the whole TCB for 2*MSL: on entering TIME_WAIT it moves the
connection into a small time-wait TCB (TWTCB) in a table of its own and frees the rest.  This is
that record: the few numbers TIME_WAIT still needs (RFC 9293 3.10.7.4) to ACK a retransmitted
FIN, ignore a RST (RFC 1337) and answer anything else with an ACK - decided exactly as the full
core (connection.py `_seg_synchronized` in TIME_WAIT) decides, so that freeing the TCB changes
no segment on the wire."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .segment import ACK, FIN, RST, SYN, TcpSegment
from .seq import SEQ_MASK, unwrap

if TYPE_CHECKING:
    from .connection import TcpConnection

_TS_UNIT_NS = 1_000_000  # as connection.py: the TSval clock ticks once per millisecond
_HALF = 1 << 31


class TimeWaitTcb:
    """Sequence space and timestamps of one connection in TIME_WAIT, and when it expires."""

    __slots__ = ("local_port", "remote_port", "iss", "snd_una", "snd_max", "max_snd_wnd", "rcv_nxt", "rcv_adv", "window",
                 "ts_on", "ts_recent", "last_ack_sent", "invalid_ack_at", "config", "expires_at", "sack_blocks",
                 "segments_received", "segments_sent", "challenge_acks")

    def __init__(self, core: "TcpConnection") -> None:
        self.local_port = core.local_port
        self.remote_port = core.remote_port
        self.iss = core.iss
        self.snd_una = snd_una = core.snd_una
        snd_max = core.snd_max
        self.snd_max = snd_una if snd_max == snd_una else snd_max  # equal once our FIN is acknowledged: one int
        self.max_snd_wnd = core._max_snd_wnd
        self.rcv_nxt = core.rcv_nxt  # past the peer's FIN: nothing in TIME_WAIT moves it
        self.window = core._window_field()  # stable: RCV.NXT is fixed and nothing is left unread
        self.rcv_adv = core._rcv_adv
        self.ts_on = core._ts_on
        self.ts_recent = core._ts_recent
        self.last_ack_sent = core._last_ack_sent
        self.invalid_ack_at = core._invalid_ack_at
        self.config = core.config  # shared by the host's connections (2*MSL, challenge ACKs, ACK rate): not copied
        self.expires_at: int = core._tw_at if core._tw_at is not None else 0
        self.sack_blocks = tuple((s & SEQ_MASK, e & SEQ_MASK) for s, e in core._rcvbuf.sack_ranges(
            3 if core._ts_on else 4)) if core._sack_on and core._rcvbuf.has_ooo else ()
        self.segments_received = core.segments_received
        self.segments_sent = core.segments_sent
        self.challenge_acks = core.challenge_acks

    def on_segment(self, seg: TcpSegment, now: int) -> TcpSegment | None:
        """One segment for this 4-tuple: the ACK to send, or None.  A retransmitted FIN
        restarts the 2*MSL timer (`expires_at`); a RST is ignored."""
        self.segments_received += 1
        flags = seg.flags
        rcv_nxt = self.rcv_nxt
        seq = unwrap(seg.seq, rcv_nxt)
        plen = seg.payload_len
        seg_len = plen + (flags & SYN) // SYN + (flags & FIN)
        rcv_wnd = self.rcv_adv - rcv_nxt
        if seg_len == 0:
            ok = seq == rcv_nxt if rcv_wnd <= 0 else rcv_nxt <= seq < rcv_nxt + rcv_wnd
        elif rcv_wnd <= 0:
            ok = (seq == rcv_nxt and plen == 0 and flags & (FIN | SYN) == FIN) or (seq == rcv_nxt
                                                                                 and not flags & SYN)
        else:
            last = seq + seg_len - 1
            ok = rcv_nxt <= seq < rcv_nxt + rcv_wnd or rcv_nxt <= last < rcv_nxt + rcv_wnd
        timestamps = seg.timestamps
        if ok and timestamps is not None and self.ts_on and not flags & RST \
                and (timestamps[0] - self.ts_recent) & SEQ_MASK >= _HALF:
            ok = False  # PAWS (RFC 7323 5.3)
        if not ok:
            if flags & RST:
                return None
            ack = self._ack_invalid(seg_len, now)
            if flags & FIN:
                self.expires_at = now + self.config.time_wait_ns  # retransmitted FIN
            return ack
        if flags & RST:
            return None  # RFC 1337: no TIME-WAIT assassination
        if timestamps is not None and self.ts_on and seq <= self.last_ack_sent:
            self.ts_recent = timestamps[0]  # RFC 7323 4.3
        if flags & SYN:
            self.challenge_acks += 1  # RFC 5961 4.2
            return self._ack_invalid(seg_len, now)
        if not flags & ACK:
            return None
        ack = unwrap(seg.ack, self.snd_una)
        if ack > self.snd_max:
            return self._ack_invalid(plen, now)  # acknowledges something never sent
        if ack < self.snd_una - self.max_snd_wnd and self.config.challenge_ack:
            self.challenge_acks += 1  # RFC 5961 5.2
            return self._ack_invalid(plen, now)
        if flags & FIN:
            self.expires_at = now + self.config.time_wait_ns
            return self._ack(now)
        return None

    def _ack_invalid(self, seg_len: int, now: int) -> TcpSegment | None:
        """As the core: at most one ACK per invalid_ack_interval_ns for a dataless segment."""
        if seg_len == 0:
            last = self.invalid_ack_at
            if last is not None and now - last < self.config.invalid_ack_interval_ns:
                return None
            self.invalid_ack_at = now
        return self._ack(now)

    def _ack(self, now: int) -> TcpSegment:
        timestamps = ((self.iss + now // _TS_UNIT_NS) & SEQ_MASK, self.ts_recent) if self.ts_on else None
        self.last_ack_sent = self.rcv_nxt
        self.segments_sent += 1
        return TcpSegment(self.local_port, self.remote_port, self.snd_max & SEQ_MASK, self.rcv_nxt & SEQ_MASK, ACK,
                          self.window, None, None, False, timestamps, self.sack_blocks, ())
