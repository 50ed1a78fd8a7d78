"""Send queue and receive reassembly.  Both hold memoryview *references* to
the caller's buffers and slice them; no payload byte is copied here (except
ReceiveBuffer.read_into, whose purpose is to copy).  The receive side also
keeps where each piece lives (its physical address, for the glue's indications)."""

from __future__ import annotations

from bisect import bisect_right
from typing import Sequence

_COMPACT_AT = 64
# The location of bytes that live nowhere in particular (stack.kernel.memory.NO_PHYSICAL_ADDRESS,
# kept as a literal: the core imports nothing outside itself).  Negative, and adding an offset
# keeps it so.
NOWHERE = -(1 << 62)


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


def slice_runs(views: Sequence[memoryview], at: Sequence[int], start: int,
               end: int) -> tuple[list[memoryview], list[int]]:
    """slice_views, and the location of each slice (`at` gives each view's)."""
    out: list[memoryview] = []
    out_at: list[int] = []
    pos = 0
    for view, where in zip(views, at):
        n = len(view)
        if pos + n > start:
            lo = start - pos if start > pos else 0
            hi = end - pos if end < pos + n else n
            if hi > lo:
                out.append(view if lo == 0 and hi == n else view[lo:hi])
                out_at.append(where + lo)
        pos += n
        if pos >= end:
            break
    return out, out_at


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
# What one held out-of-order piece costs beyond its payload, charged against the receive buffer's
# bound as Linux charges an skb's truesize to sk_rcvbuf: the window already limits held *bytes*;
# this keeps a peer that splits the window into 1-byte segments from holding millions of pieces.
PIECE_OVERHEAD = 256


class ReceiveBuffer:
    """In-order bytes waiting for read(), plus out-of-order pieces held until
    the gap before them fills.  Pieces never overlap: data already held wins.

    Next to each view the buffer keeps where its bytes live: an opaque integer
    location that the glue supplies (the physical address of the receive buffer
    the NIC wrote, so an indication can describe the bytes with an MDL over those
    very pages), or a negative number when they live nowhere in particular (a
    copy).  The buffer only ever adds offsets to a location when it slices."""

    __slots__ = ("_views", "_at", "ready_bytes", "_ooo_starts", "_ooo_ends", "_ooo_views", "_ooo_at", "ooo_bytes",
                 "max_charge", "latest_ooo")

    def __init__(self, max_charge: int) -> None:
        """`max_charge`: bound on held out-of-order bytes plus PIECE_OVERHEAD per piece (the
        connection passes twice its largest receive window, so in-window data always fits)."""
        # The in-order bytes: views, and each one's location at the same index (two lists, so an
        # RSC unit's dozens of views are queued and read by whole-list steps, no tuple per view).
        self._views: list[memoryview] = []
        self._at: list[int] = []
        self.ready_bytes = 0
        self._ooo_starts: list[int] = []
        self._ooo_ends: list[int] = []
        self._ooo_views: list[memoryview] = []
        self._ooo_at: list[int] = []  # location of each held piece
        self.ooo_bytes = 0
        self.max_charge = max_charge
        self.latest_ooo: int | None = None  # start of the most recent out-of-order arrival (for SACK)

    # --- in-order side -------------------------------------------------
    def push(self, views: Sequence[memoryview], at: Sequence[int] | None = None, nbytes: int | None = None) -> None:
        """Queue in-order `views`; `at` gives each one's location (None: nowhere); `nbytes`, when the
        caller knows it, is how many bytes they hold (not summed again)."""
        if at is None:
            at = (NOWHERE,) * len(views)
        if all(views):  # (a memoryview is true when it holds bytes): the usual case, no empty view
            self._views.extend(views)
            self._at.extend(at)
        else:  # empty views hold nothing: they are not queued
            kept = [(where, view) for where, view in zip(at, views) if view]
            self._views.extend(view for _, view in kept)
            self._at.extend(where for where, _ in kept)
        self.ready_bytes += sum(map(len, views)) if nbytes is None else nbytes

    def read(self, max_bytes: int) -> list[memoryview]:
        views = self._views
        if max_bytes >= self.ready_bytes:  # everything (the usual case): the list itself, no view cut
            self._views = []
            self._at = []
            self.ready_bytes = 0
            return views
        if max_bytes <= 0:
            return []
        # Count the views the read takes whole (one compare per view, no call), then take them
        # in one slice; the view the read ends inside is cut.
        whole = 0
        left = max_bytes
        for view in views:
            n = len(view)
            if n > left:
                break
            left -= n
            whole += 1
        out = views[:whole]
        at = self._at
        if left:
            view = views[whole]
            out.append(view[:left])
            views[whole] = view[left:]
            at[whole] += left
        del views[:whole], at[:whole]
        self.ready_bytes -= max_bytes
        return out

    def peek(self, max_bytes: int) -> list[tuple[int, memoryview]]:
        """The first `max_bytes` in-order bytes as runs (location, view), left in the buffer."""
        out: list[tuple[int, memoryview]] = []
        left = max_bytes
        for run in zip(self._at, self._views):
            if left <= 0:
                break
            n = len(run[1])
            if n <= left:
                out.append(run)
                left -= n
            else:
                out.append((run[0], run[1][:left]))
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

    def insert(self, start: int, views: Sequence[memoryview], at: Sequence[int] | None = None) -> bool:
        """Hold bytes that begin at unwrapped sequence `start` (beyond RCV.NXT); `at` as for push.
        Returns False if anything was dropped because the buffer's charge bound is hit."""
        complete = True
        pos = start
        if at is None:
            at = (NOWHERE,) * len(views)
        for view, where in zip(views, at):
            n = len(view)
            if n and not self._insert_piece(pos, pos + n, view, where):
                complete = False
            pos += n
        self.latest_ooo = start
        return complete

    def _insert_piece(self, s: int, e: int, view: memoryview, where: int) -> bool:
        starts, ends = self._ooo_starts, self._ooo_ends
        i = bisect_right(starts, s) - 1
        if i >= 0 and ends[i] > s:  # overlaps the piece before: keep the old bytes
            if ends[i] >= e:
                return True
            view = view[ends[i] - s:]
            where += ends[i] - s
            s = ends[i]
        i += 1
        while s < e:
            if i < len(starts) and starts[i] < e:
                if starts[i] > s:
                    if not self._add(i, s, starts[i], view[:starts[i] - s], where):
                        return False
                    i += 1
                skip_to = ends[i]
                if skip_to >= e:
                    return True
                view = view[skip_to - s:]
                where += skip_to - s
                s = skip_to
                i += 1
            else:
                return self._add(i, s, e, view, where)
        return True

    def _add(self, i: int, s: int, e: int, view: memoryview, where: int) -> bool:
        if self.ooo_bytes + e - s + (len(self._ooo_starts) + 1) * PIECE_OVERHEAD > self.max_charge:
            return False
        self._ooo_starts.insert(i, s)
        self._ooo_ends.insert(i, e)
        self._ooo_views.insert(i, view)
        self._ooo_at.insert(i, where)
        self.ooo_bytes += e - s
        return True

    def take_contiguous(self, rcv_nxt: int) -> int:
        """Move held pieces that now continue the in-order stream; returns the new RCV.NXT."""
        starts, ends, views, at = self._ooo_starts, self._ooo_ends, self._ooo_views, self._ooo_at
        taken = 0
        while taken < len(starts) and starts[taken] <= rcv_nxt:
            s, e, view, where = starts[taken], ends[taken], views[taken], at[taken]
            self.ooo_bytes -= e - s
            if e > rcv_nxt:
                if rcv_nxt > s:
                    self.push((view[rcv_nxt - s:],), (where + rcv_nxt - s,))
                else:
                    self.push((view,), (where,))
                rcv_nxt = e
            taken += 1
        if taken:
            del starts[:taken], ends[:taken], views[:taken], at[:taken]
        return rcv_nxt

    def drop_ooo(self) -> None:
        self._ooo_starts.clear()
        self._ooo_ends.clear()
        self._ooo_views.clear()
        self._ooo_at.clear()
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
