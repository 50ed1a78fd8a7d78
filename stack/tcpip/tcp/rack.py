"""RACK-TLP loss detection (RFC 8985) as a sans-IO state machine.

Windows 10 / Server 2019 and later use it: the Microsoft networking blog "Algorithmic
improvements boost TCP performance on the Internet" (May 2021) lists RACK and TLP among the
loss-recovery work that shipped in tcpip.sys (Windows Server 2022), and RFC 8985 is written as
"an alternative to the DupAck threshold approach".  The connection (connection.py) feeds it
what it sends and what the peer acknowledges and asks it which segments are lost and when its
timers are due; this module never sends anything itself.

RACK ("Recent ACKnowledgment", RFC 8985 section 6): every transmission is timestamped.  A
segment is deemed lost once a segment sent after it has been delivered (cumulatively ACKed or
SACKed) and more than RACK.rtt + RACK.reo_wnd has passed since it was sent (6.2 Step 5).  The
reordering window reo_wnd is min(reo_wnd_mult * min_RTT / 4, SRTT); it is 0 while no reordering
was seen and DupThresh segments are SACKed or recovery runs (mimicking DupThresh), and grows by
one quarter min_RTT per round trip that sees a DSACK, for 16 recoveries (6.2 Step 4).

TLP ("Tail Loss Probe", section 7): when the ACK stream stops, a probe timeout
PTO = 2 * SRTT (+ the worst-case delayed ACK time when one segment is in flight, clamped to the
RTO) sends one segment - new data if the window allows, else the highest segment again - so
that the ACK it draws lets RACK find the loss instead of a retransmission timeout.  At most one
probe is outstanding (a TLP episode, TLP.end_seq); an ACK above TLP.end_seq that carries no
DSACK for it means the probe repaired a loss, and congestion control must react (7.4).

Sequence numbers are the connection's unwrapped ints; times are virtual nanoseconds.  The
transmit records are half-open [start, end) ranges in sequence order, one per segment or large
send as it left (a large send is split when part of it is SACKed or resent)."""

from __future__ import annotations

from bisect import bisect_right
from operator import itemgetter

from .scoreboard import DUP_THRESH
from .seq import SEQ_MASK, unwrap

# A transmit record: [start, end, xmit_ts, flags].
_START, _END, _TS, _FLAGS = 0, 1, 2, 3
RETRANSMITTED = 1  # Segment.retransmitted (RFC 8985 5.2)
LOST = 2  # Segment.lost
SACKED = 4  # delivered out of order
_KEY = itemgetter(_START)
_BY_TS = itemgetter(_TS)

WC_DEL_ACK_NS = 200_000_000  # RFC 8985 7.2 WCDelAckT: "The RECOMMENDED value ... is 200 ms"
NO_SRTT_PTO_NS = 1_000_000_000  # RFC 8985 7.2: PTO = 1 second before an RTT sample
REO_WND_PERSIST = 16  # RFC 8985 6.2 Step 4: "Reset the window after 16 DSACK-free recoveries"
_MS = 1_000_000


def is_dsack(blocks: tuple[tuple[int, int], ...], ack: int) -> tuple[int, int] | None:
    """RFC 2883 section 4: the first SACK block reports a duplicate when it lies below the
    cumulative ACK or inside the second block.  Returns its unwrapped range or None."""
    if not blocks:
        return None
    start = unwrap(blocks[0][0], ack)
    end = start + ((blocks[0][1] - blocks[0][0]) & SEQ_MASK)
    if end <= ack:
        return start, end
    if len(blocks) > 1:
        s2 = unwrap(blocks[1][0], ack)
        e2 = s2 + ((blocks[1][1] - blocks[1][0]) & SEQ_MASK)
        if s2 <= start and end <= e2:
            return start, end
    return None


def sent_after(t1: int, seq1: int, t2: int, seq2: int) -> bool:
    """RACK_sent_after (RFC 8985 6.2): sent later, or at the same time with a higher end."""
    return t1 > t2 or (t1 == t2 and seq1 > seq2)


class Rack:
    """RACK and TLP state of one connection (RFC 8985 section 5.3's variables, same names)."""

    __slots__ = (
        "smss", "records", "xmit_ts", "end_seq", "xmit_retrans", "rtt", "min_rtt", "fack", "reordering_seen",
        "reo_wnd", "reo_wnd_mult", "reo_wnd_persist", "dsack_round", "segs_sacked", "_retrans_out",
        "_was_recovering", "lost_high", "reo_at",
        "tlp_end_seq", "tlp_is_retrans", "pto_at", "pto_ns",
        # counters
        "lost_marked", "tlp_probes", "tlp_recoveries", "rack_retransmissions", "dsacks",
    )

    def __init__(self, smss: int) -> None:
        self.smss = smss
        self.records: list[list[int]] = []
        self.xmit_ts = -1  # RACK.xmit_ts: send time of the most recently sent segment delivered
        self.end_seq = 0  # RACK.end_seq: its end
        self.xmit_retrans = False  # whether that segment was a retransmission (for same-instant ties)
        self.rtt = 0  # RACK.rtt: the RTT that segment measured
        self.min_rtt: int | None = None  # RACK.min_RTT (the minimum of every sample: the lab's path is fixed)
        self.fack = 0  # RACK.fack: the highest end delivered
        self.reordering_seen = False
        self.reo_wnd = 0
        self.reo_wnd_mult = 1
        self.reo_wnd_persist = REO_WND_PERSIST
        self.dsack_round: int | None = None
        self.segs_sacked = 0  # RACK.segs_sacked, in bytes (see _segs)
        self._retrans_out = 0  # records flagged RETRANSMITTED still outstanding
        self._was_recovering = False
        self.lost_high = 0  # one past the highest octet ever marked lost (the scoreboard's loss frontier)
        self.reo_at: int | None = None  # the RACK reordering timer (6.3)
        self.tlp_end_seq: int | None = None  # TLP.end_seq: a TLP episode is outstanding
        self.tlp_is_retrans = False
        self.pto_at: int | None = None  # the PTO timer (7.2)
        self.pto_ns = 0  # the PTO it was armed with (for the debugger)
        self.lost_marked = 0
        self.tlp_probes = 0
        self.tlp_recoveries = 0
        self.rack_retransmissions = 0
        self.dsacks = 0

    # ------------------------------------------------------------------ transmissions
    def on_send(self, start: int, end: int, now: int) -> None:
        """New data [start, end) left at `now` (RFC 8985 6.1: Segment.xmit_ts)."""
        records = self.records
        if records and records[-1][_END] > start:
            self._forget_from(start)  # a window probe the connection took back is sent again
        records.append([start, end, now, 0])

    def _forget_from(self, start: int) -> None:
        i = self._split(start)
        for r in self.records[i:]:
            if r[_FLAGS] & RETRANSMITTED:
                self._retrans_out -= 1
            if r[_FLAGS] & SACKED:
                self.segs_sacked -= self._segs(r)
        del self.records[i:]

    @staticmethod
    def _segs(r: list[int]) -> int:
        """Bytes a SACKed record adds to RACK.segs_sacked, which counts SACKed bytes: one large send
        and the segments it stands for (or two the glue joins into one frame) must count alike."""
        return r[_END] - r[_START]

    def on_retransmit(self, start: int, end: int, now: int) -> bool:
        """[start, end) went out again.  Returns True when RACK had marked (some of) it lost."""
        records = self.records
        i = self._split(start)
        self._split(end)
        was_lost = False
        n = len(records)
        while i < n and records[i][_START] < end:
            r = records[i]
            flags = r[_FLAGS]
            if flags & LOST:
                was_lost = True
            if not flags & RETRANSMITTED:
                self._retrans_out += 1
            r[_FLAGS] = (flags | RETRANSMITTED) & ~LOST
            r[_TS] = now
            i += 1
        if was_lost:
            self.rack_retransmissions += 1
        return was_lost

    def _split(self, seq: int) -> int:
        """Make `seq` a record boundary; returns the index of the record starting there (or
        of the first record above it, len(records) when none)."""
        records = self.records
        i = bisect_right(records, seq, key=_KEY) - 1
        if i < 0:
            return 0
        r = records[i]
        if r[_START] == seq:
            return i
        if seq >= r[_END]:
            return i + 1
        tail = [seq, r[_END], r[_TS], r[_FLAGS]]
        r[_END] = seq
        records.insert(i + 1, tail)
        if tail[_FLAGS] & RETRANSMITTED:
            self._retrans_out += 1
        return i + 1

    # ------------------------------------------------------------------ ACK processing (6.2)
    def on_ack(self, una: int, sacked: list[tuple[int, int]], dsack: bool, now: int,
               snd_nxt: int, recovering: bool, srtt_ns: int | None, ts_echo_ms: int | None = None) -> int:
        """Steps 1-5 of RFC 8985 6.2 for one ACK: `una` is SND.UNA after it, `sacked` its SACK
        blocks (unwrapped, above `una`), `dsack` whether it carried a DSACK, `recovering` whether
        fast or RTO recovery runs, `srtt_ns` the connection's SRTT, `ts_echo_ms` its TSecr as virtual milliseconds (or None).
        Returns how many records it newly marked lost; arms or clears the reordering timer."""
        records = self.records
        delivered: list[list[int]] = []
        # without resends or SACKs, what an ACK delivers is in send order already (Step 2's order)
        unordered = bool(sacked) or self._retrans_out > 0
        if records and records[0][_START] < una:
            k = self._split(una)
            for r in records[:k]:
                if r[_FLAGS] & SACKED:
                    self.segs_sacked -= self._segs(r)
                else:
                    delivered.append(r)
                if r[_FLAGS] & RETRANSMITTED:
                    self._retrans_out -= 1
            del records[:k]
        for start, end in sorted(sacked):
            i = self._split(start)
            self._split(end)
            n = len(records)
            while i < n and records[i][_START] < end:
                r = records[i]
                if not r[_FLAGS] & SACKED:
                    r[_FLAGS] = (r[_FLAGS] | SACKED) & ~LOST
                    self.segs_sacked += self._segs(r)
                    delivered.append(r)
                i += 1
        if unordered and len(delivered) > 1:
            delivered.sort(key=_BY_TS)  # "in ascending order of Segment.xmit_ts"
        for r in delivered:
            self._update(r, now, ts_echo_ms)  # Step 2
            self._detect_reordering(r)  # Step 3
        if sacked:
            self._coalesce_sacked()
        if dsack:
            self.dsacks += 1
        self._update_reo_wnd(una, dsack, snd_nxt, recovering, srtt_ns)  # Step 4
        return self._detect_loss(now)  # Step 5

    def _coalesce_sacked(self) -> None:
        """Join adjacent SACKed records with the same flags: SACK edges split records, and a
        SACKed record's send time no longer matters (RACK skips it; the cumulative ACK drops it
        undelivered), so the list stays about as long as the holes, bounding each ACK's work."""
        records = self.records
        kept: list[list[int]] = []
        prev: list[int] | None = None
        for r in records:
            flags = r[_FLAGS]
            if prev is not None and flags & SACKED and flags == prev[_FLAGS] and r[_START] == prev[_END]:
                prev[_END] = r[_END]
                if flags & RETRANSMITTED:
                    self._retrans_out -= 1
                continue
            kept.append(r)
            prev = r
        if len(kept) != len(records):
            records[:] = kept

    def _update(self, r: list[int], now: int, ts_echo_ms: int | None) -> None:
        """RACK_update(): take the delivered segment's send time unless its RTT is ambiguous."""
        xmit_ts = r[_TS]
        if r[_FLAGS] & RETRANSMITTED:
            # "If ACK.ts_option.echo_reply < Segment.xmit_ts" or "Now() - Segment.xmit_ts <
            # RACK.min_RTT": the ACK may be for the original transmission, not this one.
            if ts_echo_ms is not None and ts_echo_ms < xmit_ts // _MS:
                return
            if self.min_rtt is not None and now - xmit_ts < self.min_rtt:
                return
        rtt = now - xmit_ts
        if self.min_rtt is None or rtt < self.min_rtt:
            self.min_rtt = rtt  # Step 1
        self.rtt = rtt  # every unambiguous delivery (RFC 8985 6.2 Step 2), in send order: the latest's stays
        if sent_after(xmit_ts, r[_END], self.xmit_ts, self.end_seq):
            self.xmit_ts = xmit_ts
            self.end_seq = r[_END]
            self.xmit_retrans = bool(r[_FLAGS] & RETRANSMITTED)

    def _detect_reordering(self, r: list[int]) -> None:
        """RACK_detect_reordering(): delivered below the highest delivered, never resent."""
        end = r[_END]
        if end > self.fack:
            self.fack = end
        elif end < self.fack and not r[_FLAGS] & RETRANSMITTED:
            self.reordering_seen = True

    def _update_reo_wnd(self, una: int, dsack: bool, snd_nxt: int, recovering: bool, srtt_ns: int | None) -> None:
        """RACK_update_reo_wnd() (6.2 Step 4), DSACK-driven adaptation included."""
        if self.dsack_round is not None and una >= self.dsack_round:
            self.dsack_round = None
        if self.dsack_round is None and dsack:
            self.dsack_round = snd_nxt
            self.reo_wnd_mult += 1
            self.reo_wnd_persist = REO_WND_PERSIST
        elif self._was_recovering and not recovering:  # "exiting Fast or RTO recovery"
            self.reo_wnd_persist -= 1
            if self.reo_wnd_persist <= 0:
                self.reo_wnd_mult = 1
        self._was_recovering = recovering
        # "RACK.segs_sacked >= DupThresh", in bytes as RFC 6675's IsLost counts: more than
        # (DupThresh - 1) * SMSS octets SACKed
        if not self.reordering_seen and (recovering or self.segs_sacked > (DUP_THRESH - 1) * self.smss):
            self.reo_wnd = 0
        elif self.min_rtt is None:
            self.reo_wnd = 0
        else:
            wnd = self.reo_wnd_mult * self.min_rtt // 4
            self.reo_wnd = wnd if srtt_ns is None or wnd < srtt_ns else srtt_ns  # min(.., SRTT)

    def _detect_loss(self, now: int) -> int:
        """RACK_detect_loss(): mark lost what was sent before RACK.xmit_ts and has waited longer
        than RACK.rtt + RACK.reo_wnd; arm the reordering timer for the rest (6.2 Step 5, 6.3)."""
        if self.xmit_ts < 0:
            self.reo_at = None
            return 0
        rack_ts, rack_end, rack_retrans = self.xmit_ts, self.end_seq, self.xmit_retrans
        window = self.rtt + self.reo_wnd
        timeout = 0
        marked = 0
        in_order = not self._retrans_out  # then send times rise with the sequence: stop at the first later one
        for r in self.records:
            flags = r[_FLAGS]
            if flags & (SACKED | LOST):
                continue
            xmit_ts = r[_TS]
            # RACK_sent_after(RACK.xmit_ts, RACK.end_seq, ..): a resend at the same instant is
            # still later than the originals sent then.  Not in RFC 8985, whose clock always moves:
            # the lab's stands still across several ACKs and send passes, and without this rule
            # sessions/cubic-prr.wds resends two segments that were not lost (4 resends for 2 drops).
            # Resends at one instant leave in sequence order (NextSeg), so when RACK's segment is a
            # resend too the tie-break by end holds: a burst of resends whose head the receiver dropped
            # is caught by its delivered tail instead of waiting for the RTO (RFC 8985 6.2's lost
            # retransmission)
            if xmit_ts < rack_ts or (xmit_ts == rack_ts and r[_END] < rack_end
                                     and (rack_retrans or not flags & RETRANSMITTED)):
                remaining = xmit_ts + window - now
                if remaining <= 0:
                    self._mark_lost(r)
                    marked += 1
                elif remaining > timeout:
                    timeout = remaining
            elif in_order:
                break
        self.reo_at = now + timeout if timeout else None
        return marked

    def on_reo_timeout(self, now: int) -> int:
        """The reordering timer fired: RACK_detect_loss_and_arm_timer() (6.3)."""
        self.reo_at = None
        return self._detect_loss(now)

    def first_lost(self) -> tuple[int, int] | None:
        """The lowest record marked lost and not resent since (NextSeg rule 1 with RACK), or None."""
        for r in self.records:
            if r[_FLAGS] & LOST:
                return r[_START], r[_END]
        return None

    def pipe(self) -> int:
        """RFC 6675 pipe with RACK's marks: octets neither SACKed nor marked lost (a resent record
        counts once, its retransmission; Linux's packets_out - sacked_out - lost_out + retrans_out)."""
        total = 0
        for r in self.records:
            if not r[_FLAGS] & (SACKED | LOST):
                total += r[_END] - r[_START]
        return total

    def on_rto(self, now: int, una: int) -> None:
        """RACK_mark_losses_on_RTO() (RFC 8985 6.3): the segment at SND.UNA and every one not SACKed
        that has waited RACK.rtt + RACK.reo_wnd since it was sent is lost.  The episode and the
        timers end."""
        self.tlp_end_seq = None
        self.pto_at = self.reo_at = None
        deadline = now - self.rtt - self.reo_wnd
        for r in self.records:
            flags = r[_FLAGS]
            if not flags & (SACKED | LOST) and (r[_START] <= una or r[_TS] <= deadline):
                self._mark_lost(r)

    def _mark_lost(self, r: list[int]) -> None:
        r[_FLAGS] |= LOST
        self.lost_marked -= (r[_START] - r[_END]) // self.smss  # segments (a large send: several)
        if r[_END] > self.lost_high:
            self.lost_high = r[_END]

    def on_go_back(self) -> None:
        """A repeated timeout: the connection goes back and resends everything from SND.UNA,
        which updates each record's send time; no mark stands."""
        self.tlp_end_seq = None
        self.pto_at = self.reo_at = None
        self.lost_high = 0
        for r in self.records:
            r[_FLAGS] &= ~LOST

    # ------------------------------------------------------------------ TLP (section 7)
    def arm_pto(self, now: int, srtt_ns: int | None, one_segment: bool, rto_at: int | None) -> None:
        """TLP_calc_PTO() and start the PTO timer (7.2)."""
        if srtt_ns is None:
            pto = NO_SRTT_PTO_NS
        else:
            pto = 2 * srtt_ns
            if one_segment:
                pto += WC_DEL_ACK_NS
        at = now + pto
        if rto_at is not None and at > rto_at:
            at = rto_at  # "If Now() + PTO > TCP_RTO_expire(): PTO = TCP_RTO_expire() - Now()"
        self.pto_ns = at - now
        self.pto_at = at

    def on_probe_sent(self, snd_nxt: int, is_retrans: bool) -> None:
        """TLP_send_probe() went out: a TLP episode starts (7.3)."""
        self.tlp_probes += 1
        self.tlp_end_seq = snd_nxt
        self.tlp_is_retrans = is_retrans
        self.pto_at = None

    def tlp_on_ack(self, ack: int, dsack: tuple[int, int] | None, dupack_without_sack: bool) -> bool:
        """TLP_process_ack() (7.4.2).  Returns True when the probe repaired a loss and congestion
        control must react ("Invoke congestion control to reduce cwnd")."""
        end = self.tlp_end_seq
        if end is None or ack < end:
            return False
        if not self.tlp_is_retrans:
            self.tlp_end_seq = None  # a probe of new data was delivered
        elif dsack is not None and dsack[1] == end:
            self.tlp_end_seq = None  # the probe was a needless copy: no loss
        elif ack > end:
            self.tlp_end_seq = None  # the probe repaired a single loss
            self.tlp_recoveries += 1
            return True
        elif dupack_without_sack:
            self.tlp_end_seq = None  # original and probe both arrived
        return False

    def next_deadline(self) -> int | None:
        a, b = self.reo_at, self.pto_at
        if a is None:
            return b
        return a if b is None or a < b else b

    def snapshot(self) -> dict[str, object]:
        """What `!tcb` shows of RACK-TLP."""
        return {
            "xmit_ts": self.xmit_ts if self.xmit_ts >= 0 else None, "end_seq": self.end_seq,
            "rtt_ns": self.rtt, "min_rtt_ns": self.min_rtt, "reo_wnd_ns": self.reo_wnd,
            "reo_wnd_mult": self.reo_wnd_mult, "reordering_seen": self.reordering_seen,
            "reo_timer": self.reo_at, "pto": self.pto_at, "pto_ns": self.pto_ns,
            "tlp_end_seq": self.tlp_end_seq, "tlp_is_retrans": self.tlp_is_retrans,
            "lost_marked": self.lost_marked, "rack_retransmissions": self.rack_retransmissions,
            "tlp_probes": self.tlp_probes, "tlp_recoveries": self.tlp_recoveries, "dsacks": self.dsacks,
            "records": len(self.records),
        }
