"""Send queue and receive reassembly.  Both hold memoryview *references* to
the caller's buffers and slice them; no payload byte is copied here (except
ReceiveBuffer.read_into, whose purpose is to copy)."""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from typing import Sequence

_COMPACT_AT = 64


def slice_views(views: Sequence[memoryview], start: int, end: int) -> list[memoryview]:
    """Bytes [start, end) of the concatenation of `views`, as slices."""
    out: list[memoryview] = []
    pos = 0
    for view in views:
        n = len(view)
        if pos + n > start:
            lo = start - pos if start > pos else 0
            hi = end - pos if end < pos + n else n
            if hi > lo:
                out.append(view if lo == 0 and hi == n else view[lo:hi])
        pos += n
        if pos >= end:
            break
    return out


class SendBuffer:
    """Bytes queued by send(), from SND.UNA onwards, addressed by unwrapped
    sequence number.  Each send() is one chunk carrying the caller's token."""

    __slots__ = ("_views", "_starts", "_tokens", "_head", "acked", "end")

    def __init__(self, start_seq: int) -> None:
        self._views: list[memoryview] = []
        self._starts: list[int] = []
        self._tokens: list[object] = []
        self._head = 0  # index of the first chunk not yet fully acknowledged
        self.acked = start_seq  # every byte before this is acknowledged
        self.end = start_seq  # sequence number after the last queued byte

    def __len__(self) -> int:
        """Bytes queued and not yet acknowledged."""
        return self.end - self.acked

    def append(self, data: memoryview, token: object) -> None:
        self._views.append(data)
        self._starts.append(self.end)
        self._tokens.append(token)
        self.end += len(data)

    def ack_to(self, seq: int) -> list[object]:
        """Everything before `seq` is acknowledged; returns the tokens of the
        chunks now completely acknowledged (None tokens are skipped)."""
        if seq > self.end:
            seq = self.end
        if seq < self.acked:
            return []
        self.acked = seq
        done: list[object] = []
        views, starts, tokens = self._views, self._starts, self._tokens
        head, count = self._head, len(views)
        while head < count and starts[head] + len(views[head]) <= seq:
            if tokens[head] is not None:
                done.append(tokens[head])
            views[head] = _EMPTY  # drop the reference so the caller's buffer can go
            head += 1
        self._head = head
        if head >= _COMPACT_AT and head * 2 >= count:
            del views[:head], starts[:head], tokens[:head]
            self._head = 0
        return done

    def slice(self, seq: int, length: int) -> tuple[memoryview, ...]:
        """Up to `length` queued bytes starting at sequence number `seq`."""
        views, starts = self._views, self._starts
        i = bisect_right(starts, seq, self._head) - 1
        if i < self._head:
            i = self._head
        out: list[memoryview] = []
        end = seq + length
        count = len(views)
        while i < count and seq < end:
            view = views[i]
            lo = seq - starts[i]
            n = len(view)
            if lo < n:
                hi = min(n, end - starts[i])
                out.append(view if lo == 0 and hi == n else view[lo:hi])
                seq = starts[i] + hi
            i += 1
        return tuple(out)


_EMPTY = memoryview(b"")


class ReceiveBuffer:
    """In-order bytes waiting for read(), plus out-of-order pieces held until
    the gap before them fills.  Pieces never overlap: data already held wins."""

    __slots__ = ("_ready", "ready_bytes", "_ooo_starts", "_ooo_ends", "_ooo_views", "ooo_bytes", "max_pieces",
                 "latest_ooo")

    def __init__(self, max_pieces: int) -> None:
        self._ready: deque[memoryview] = deque()
        self.ready_bytes = 0
        self._ooo_starts: list[int] = []
        self._ooo_ends: list[int] = []
        self._ooo_views: list[memoryview] = []
        self.ooo_bytes = 0
        self.max_pieces = max_pieces
        self.latest_ooo: int | None = None  # start of the most recent out-of-order arrival (for SACK)

    # --- in-order side -------------------------------------------------
    def push(self, views: Sequence[memoryview]) -> None:
        for view in views:
            if len(view):
                self._ready.append(view)
                self.ready_bytes += len(view)

    def read(self, max_bytes: int) -> list[memoryview]:
        out: list[memoryview] = []
        ready = self._ready
        left = max_bytes
        while ready and left > 0:
            view = ready[0]
            if len(view) <= left:
                ready.popleft()
                out.append(view)
                left -= len(view)
            else:
                out.append(view[:left])
                ready[0] = view[left:]
                left = 0
        self.ready_bytes -= max_bytes - left
        return out

    def peek(self, max_bytes: int) -> list[memoryview]:
        """The first `max_bytes` in-order bytes as views, left in the buffer."""
        out: list[memoryview] = []
        left = max_bytes
        for view in self._ready:
            if left <= 0:
                break
            if len(view) <= left:
                out.append(view)
                left -= len(view)
            else:
                out.append(view[:left])
                left = 0
        return out

    def read_into(self, target: memoryview) -> int:
        """Copy in-order bytes into `target`; returns how many."""
        pos = 0
        for view in self.read(len(target)):
            target[pos:pos + len(view)] = view
            pos += len(view)
        return pos

    # --- out-of-order side --------------------------------------------
    @property
    def has_ooo(self) -> bool:
        return bool(self._ooo_starts)

    def insert(self, start: int, views: Sequence[memoryview]) -> bool:
        """Hold bytes that begin at unwrapped sequence `start` (beyond RCV.NXT).
        Returns False if anything was dropped because the piece bound is hit."""
        complete = True
        pos = start
        for view in views:
            n = len(view)
            if n and not self._insert_piece(pos, pos + n, view):
                complete = False
            pos += n
        self.latest_ooo = start
        return complete

    def _insert_piece(self, s: int, e: int, view: memoryview) -> bool:
        starts, ends, views = self._ooo_starts, self._ooo_ends, self._ooo_views
        i = bisect_right(starts, s) - 1
        if i >= 0 and ends[i] > s:  # overlaps the piece before: keep the old bytes
            if ends[i] >= e:
                return True
            view = view[ends[i] - s:]
            s = ends[i]
        i += 1
        while s < e:
            if i < len(starts) and starts[i] < e:
                if starts[i] > s:
                    if not self._add(i, s, starts[i], view[:starts[i] - s]):
                        return False
                    i += 1
                skip_to = ends[i]
                if skip_to >= e:
                    return True
                view = view[skip_to - s:]
                s = skip_to
                i += 1
            else:
                return self._add(i, s, e, view)
        return True

    def _add(self, i: int, s: int, e: int, view: memoryview) -> bool:
        if len(self._ooo_starts) >= self.max_pieces:
            return False
        self._ooo_starts.insert(i, s)
        self._ooo_ends.insert(i, e)
        self._ooo_views.insert(i, view)
        self.ooo_bytes += e - s
        return True

    def take_contiguous(self, rcv_nxt: int) -> int:
        """Move held pieces that now continue the in-order stream; returns the new RCV.NXT."""
        starts, ends, views = self._ooo_starts, self._ooo_ends, self._ooo_views
        taken = 0
        while taken < len(starts) and starts[taken] <= rcv_nxt:
            s, e, view = starts[taken], ends[taken], views[taken]
            self.ooo_bytes -= e - s
            if e > rcv_nxt:
                self.push((view[rcv_nxt - s:],) if rcv_nxt > s else (view,))
                rcv_nxt = e
            taken += 1
        if taken:
            del starts[:taken], ends[:taken], views[:taken]
        return rcv_nxt

    def drop_ooo(self) -> None:
        self._ooo_starts.clear()
        self._ooo_ends.clear()
        self._ooo_views.clear()
        self.ooo_bytes = 0

    def ooo_ranges(self) -> list[tuple[int, int]]:
        """Held data as merged [start, end) ranges, ascending."""
        ranges: list[tuple[int, int]] = []
        for s, e in zip(self._ooo_starts, self._ooo_ends):
            if ranges and ranges[-1][1] == s:
                ranges[-1] = (ranges[-1][0], e)
            else:
                ranges.append((s, e))
        return ranges

    def sack_ranges(self, limit: int) -> list[tuple[int, int]]:
        """RFC 2018 section 4: the block holding the latest arrival first, then the others."""
        ranges = self.ooo_ranges()
        latest = self.latest_ooo
        if latest is not None:
            for k, (s, e) in enumerate(ranges):
                if s <= latest < e:
                    if k:
                        ranges.insert(0, ranges.pop(k))
                    break
        return ranges[:limit]
