"""The sender's SACK scoreboard (RFC 2018, RFC 6675 sections 3 and 4).

Ranges are unwrapped sequence numbers (see seq.py), half-open [start, end),
sorted, disjoint and never adjacent.  Every query walks the ranges once, so
the cost is O(number of ranges), which stays small (MAX_RANGES at most).

RFC 6675 IsLost is monotone: the more is SACKed above a sequence number, the
likelier it is lost, so the scoreboard keeps one "loss frontier": an unSACKed
sequence number below it is lost, one at or above it is not.
"""

from __future__ import annotations

from typing import Iterable

from .seq import SEQ_MASK, unwrap

DUP_THRESH = 3  # RFC 6675 DupThresh
MAX_BLOCKS_PER_ACK = 4  # 40 option bytes carry at most four blocks (RFC 2018 section 3)
MAX_RANGES = 64  # a peer cannot make the scoreboard grow without bound


class Scoreboard:
    __slots__ = ("smss", "ranges", "sacked_bytes", "high_rxt", "_lost_below", "rack_frontier", "rack")

    def __init__(self, smss: int) -> None:
        self.smss = smss
        self.ranges: list[tuple[int, int]] = []
        self.sacked_bytes = 0
        self.high_rxt = 0  # one past the highest octet retransmitted in this episode (RFC 6675 HighRxt)
        self._lost_below = 0  # the loss frontier, see the module docstring
        # With RACK-TLP (rack.py) RACK decides what is lost, not DupThresh: the frontier is one past
        # the highest octet RACK marked lost (RFC 8985 is "an alternative to the DupAck threshold").
        self.rack_frontier: int | None = None
        # ... and its per-record LOST flags say which holes NextSeg resends and what pipe leaves out
        # (as Linux's per-skb LOST/RETRANS bits): a Rack (rack.py) with lost_holes() and pipe().
        self.rack = None

    @property
    def high_sacked(self) -> int:
        """One past the highest SACKed octet; 0 when nothing is SACKed."""
        return self.ranges[-1][1] if self.ranges else 0

    def clear(self) -> None:
        self.ranges = []
        self.sacked_bytes = 0
        self._lost_below = 0
        if self.rack_frontier is not None:
            self.rack_frontier = 0

    def set_rack_frontier(self, frontier: int) -> None:
        """RACK-TLP mode: everything unSACKed below `frontier` is lost (IsLost by RACK)."""
        self.rack_frontier = frontier
        self._lost_below = frontier

    def take(self, wire_blocks: Iterable[tuple[int, int]], una: int, snd_max: int) -> bool:
        """Record an ACK's SACK blocks (32-bit wire values) once SND.UNA is `una`.
        Returns True when the ACK SACKed data not SACKed before."""
        self.trim(una)
        before = self.sacked_bytes
        changed = False
        for i, (wire_start, wire_end) in enumerate(wire_blocks):
            if i == MAX_BLOCKS_PER_ACK:
                break
            start = unwrap(wire_start, una)
            end = start + ((wire_end - wire_start) & SEQ_MASK)
            if end <= una or end > snd_max or start >= end:
                continue  # a D-SACK of acknowledged data, or a block for data never sent
            self._insert(max(start, una), end)
            changed = True
        if changed:
            self._recount()
        return self.sacked_bytes > before

    def trim(self, una: int) -> None:
        """SND.UNA advanced to `una`: forget what the cumulative ACK now covers."""
        if self.ranges and self.ranges[0][0] < una:
            self.ranges = [(max(s, una), e) for s, e in self.ranges if e > una]
            self._recount()

    def _insert(self, start: int, end: int) -> None:
        merged: list[tuple[int, int]] = []
        placed = False
        for s, e in self.ranges:
            if e < start:
                merged.append((s, e))
            elif s > end:
                if not placed:
                    merged.append((start, end))
                    placed = True
                merged.append((s, e))
            else:  # overlapping or adjacent: absorb
                start = min(start, s)
                end = max(end, e)
        if not placed:
            merged.append((start, end))
        # Forgetting the highest ranges only makes the sender more conservative.
        self.ranges = merged[:MAX_RANGES]

    def _recount(self) -> None:
        self.sacked_bytes = sum(e - s for s, e in self.ranges)
        if self.rack_frontier is not None:
            self._lost_below = self.rack_frontier
            return
        # IsLost (RFC 6675 section 4): DupThresh discontiguous SACKed ranges, or more than
        # (DupThresh - 1) * SMSS SACKed bytes, above the sequence number.  Walking down from
        # the top, the first range where either holds gives the frontier.
        threshold = (DUP_THRESH - 1) * self.smss
        above = 0
        frontier = 0
        for count, (s, e) in enumerate(reversed(self.ranges), 1):
            above += e - s
            if above > threshold or count >= DUP_THRESH:
                frontier = s
                break
        self._lost_below = frontier

    def is_lost(self, seq: int) -> bool:
        """RFC 6675 IsLost for an unSACKed sequence number."""
        return seq < self._lost_below

    def is_sacked(self, seq: int) -> bool:
        return any(s <= seq < e for s, e in self.ranges)

    def first_unsacked(self, seq: int) -> tuple[int, int | None]:
        """The first unSACKed sequence number at or above `seq`, and where the next
        SACKed range above it starts (None when none does)."""
        for s, e in self.ranges:
            if e <= seq:
                continue
            if s <= seq:
                seq = e
                continue
            return seq, s
        return seq, None

    def sacked_between(self, lo: int, hi: int) -> int:
        """SACKed bytes in [lo, hi)."""
        total = 0
        for s, e in self.ranges:
            if s >= hi:
                break
            a = s if s > lo else lo
            b = e if e < hi else hi
            if b > a:
                total += b - a
        return total

    def pipe(self, una: int, snd_max: int) -> int:
        """RFC 6675 SetPipe: unSACKed octets in flight that are not lost, plus those
        retransmitted in this episode (counted again if not lost)."""
        if self.rack is not None:
            return self.rack.pipe()
        lost = self._lost_below
        rxt = self.high_rxt
        total = 0
        pos = una
        for s, e in (*self.ranges, (snd_max, snd_max)):
            if s > pos:  # the hole [pos, s)
                a = pos if pos > lost else lost
                if s > a:
                    total += s - a
                b = s if s < rxt else rxt
                if b > pos:
                    total += b - pos
            if e > pos:
                pos = e
        return total

    def next_seg(self, una: int, new_data: bool) -> tuple[int, int] | None:
        """RFC 6675 NextSeg for retransmissions: rule 1 (the first lost hole above
        HighRxt), or rule 3 (the first unSACKed hole above HighRxt) when rule 2 (new
        data, `new_data`) cannot send.  Returns (seq, length) or None.  With RACK, rule 1's
        "lost" is RACK's LOST flag, wherever the hole lies: a lost retransmission below HighRxt goes
        out again, a retransmission still in flight never does."""
        if self.rack is not None:
            lost = self.rack.first_lost()
            if lost is not None:
                return lost[0], min(self.smss, lost[1] - lost[0])
            if new_data:
                return None
            seq, next_sacked = self.first_unsacked(self.high_rxt if self.high_rxt > una else una)
            return None if next_sacked is None else (seq, min(self.smss, next_sacked - seq))
        seq, next_sacked = self.first_unsacked(self.high_rxt if self.high_rxt > una else una)
        if next_sacked is None:
            return None  # nothing SACKed above: rules 1.b and 3 both fail
        if seq < self._lost_below or not new_data:
            return seq, min(self.smss, next_sacked - seq)
        return None
