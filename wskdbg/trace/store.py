"""Columnar storage and progressive filtering for WPP trace lines and bus events.

Pure data structure: no Textual here, so the REPL, session runner and tests can
use it too.  The TUI's trace view (``trace_view.py``) renders from it.

Layout (why it is fast at a million lines):

* Every record becomes one *display line* (WPP default prefix shape).  Lines
  are kept per block of 4096 as one "\\n"-joined string with an offsets array
  (no per-line objects: the garbage collector has nothing to walk, which
  matters at a million lines), plus one byte per record for provider id, flag
  id, host id and level in ``bytearray`` columns.  A provider/flag/host/level test is then a
  ``bytes.translate`` of a column slice with a 256-entry 0/1 table (C speed),
  masks are ANDed through ``int.from_bytes``, and ``itertools.compress`` turns
  the mask into positions.
* The text test runs over a per-block lowercase buffer (lines joined by "\\n",
  built once per sealed block and cached): one ``in`` rejects a block with no
  hit, ``str.find`` walks sparse hits, and dense hits are tested line by line
  through ``map(operator.contains, ...)``.
* A filtered view (``TraceSelection``) is evaluated block by block (4096
  records) outwards from an anchor (the end of the trace when following, or
  the record at the top of the screen), so the first screenful after a filter
  change costs one or two blocks whatever the store's size; the rest is
  finished in small time-boxed steps (``advance``).  New records arriving
  while a filter is active are tested once, when they arrive.

Positions are absolute: the n-th record ever appended has position n, also
after a bounded store has dropped its oldest records.
"""


from __future__ import annotations

import operator
import time
from array import array
from bisect import bisect_left, bisect_right
from itertools import accumulate, compress, repeat
from typing import Iterable, Iterator, Sequence

from .filter import TraceFilter, TraceFilterError, _lowered
from .record import _PREFIX_FORMAT, LEVEL_NAMES, TraceRecord, _clean, _clock, format_trace_line

__all__ = [
    "BLOCK_SIZE",
    "LEVEL_NAMES",
    "TraceFilter",
    "TraceFilterError",
    "TraceRecord",
    "TraceSelection",
    "TraceStore",
    "TraceStoreError",
    "format_trace_line",
]

BLOCK_SIZE = 4096
"""Records per evaluation block (and per cached lowercase text buffer)."""
_MAX_IDS = 255  # ids live in one byte; 0 means "no flag"


class TraceStoreError(ValueError):
    """A record or argument the trace store cannot accept."""


# --------------------------------------------------------------------------
# The store


class _Names:
    """Interned names for one byte column (id 0 is reserved for "none")."""

    __slots__ = ("ids", "names", "kind")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.ids: dict[str | None, int] = {None: 0}
        self.names: list[str | None] = [None]

    def intern(self, name: str) -> int:
        if len(self.names) > _MAX_IDS:
            raise TraceStoreError(f"more than {_MAX_IDS} distinct {self.kind} names")
        ident = len(self.names)
        self.ids[name] = ident
        self.names.append(name)
        return ident

    def table(self, wanted: frozenset[str]) -> bytes:
        """A translate table: 1 at the ids whose name is in ``wanted``."""
        lowered = _lowered(wanted)
        return bytes(
            int(name is not None and name.lower() in lowered) for name in self.names
        ).ljust(256, b"\0")


def _and_masks(left: bytes, right: bytes) -> bytes:
    both = int.from_bytes(left, "little") & int.from_bytes(right, "little")
    return both.to_bytes(len(left), "little")


def _line_offsets(lines: list[str]) -> array:
    """Start of each line in "\n".join(lines), plus len(joined) + 1."""
    return array("q", accumulate(map(len, lines), lambda total, n: total + n + 1, initial=0))


def _level_table(max_level: int) -> bytes:
    return bytes(int(1 <= value <= max_level) for value in range(256))


class TraceStore:
    """Append-only trace lines with optional ring capacity.

    ``append``/``extend`` cost O(1) per record.  With ``capacity`` set, only the
    newest ``capacity`` records stay visible; storage is compacted in chunks.
    """

    def __init__(self, capacity: int | None = None, *, block_size: int = BLOCK_SIZE) -> None:
        if capacity is not None and capacity < 1:
            raise TraceStoreError(f"capacity must be positive, not {capacity}")
        if block_size < 1:
            raise TraceStoreError(f"block_size must be positive, not {block_size}")
        self.capacity = capacity
        self.block_size = block_size
        self._providers = _Names("provider")
        self._flags = _Names("flag")
        self._hosts = _Names("host")
        # Display lines: each full block is one "\n"-joined string plus line
        # offsets (no per-line objects, nothing for the GC to walk); the
        # newest, partial block is a plain list.
        self._sealed: list[tuple[str, array]] = []
        self._sealed_first = 0  # block number of _sealed[0]
        self._tail: list[str] = []
        self._tail_start = 0  # absolute position of _tail[0], block-aligned
        self._provider_col = bytearray()
        self._flag_col = bytearray()
        self._host_col = bytearray()
        self._level_col = bytearray()
        self._seq = array("q")
        self._time = array("q")
        self._cpu = array("H")
        self._pid = array("L")
        self._tid = array("L")
        self._text_start = array("L")
        self._base = 0  # absolute position of physical index 0
        self._first = 0  # first visible absolute position
        self._end = 0  # one past the last absolute position
        self._epoch = 0  # bumped by clear(); selections restart
        self._lower_cache: dict[int, tuple[str, array]] = {}
        self.max_line_length = 0

    # -- appending ---------------------------------------------------------

    def append(self, record: TraceRecord) -> None:
        self.extend((record,))

    def extend(self, records: Iterable[TraceRecord]) -> int:
        """Append records in order; returns how many were added."""
        batch = list(records)
        if not batch:
            return 0
        prefixes: list[str] = []
        lines: list[str] = []
        last_second, clock = -1, ""
        for record in batch:  # the one per-record Python loop; keep it lean
            if not isinstance(record, TraceRecord):
                raise TraceStoreError(f"expected TraceRecord, got {type(record).__name__}")
            if not 1 <= record.level <= 5:
                raise TraceStoreError(f"record {record.seq}: level {record.level} not in 1..5")
            seconds, nanos = divmod(record.time_ns, 1_000_000_000)
            if seconds != last_second:  # consecutive records share the second
                last_second, clock = seconds, _clock(seconds)
            prefix = _PREFIX_FORMAT % (
                record.cpu, record.pid, record.tid, clock, nanos, record.provider
            )
            prefixes.append(prefix)
            text = record.text
            lines.append(prefix + (text if text.isprintable() else _clean(text)))
        # Convert every column first: bad input must leave the store consistent.
        try:
            numbers = (
                array("q", [r.seq for r in batch]),
                array("q", [r.time_ns for r in batch]),
                array("H", [r.cpu for r in batch]),
                array("L", [r.pid for r in batch]),
                array("L", [r.tid for r in batch]),
                array("L", map(len, prefixes)),
            )
            levels = bytes([r.level for r in batch])
        except (OverflowError, TypeError) as error:
            raise TraceStoreError(f"bad numeric field in trace record: {error}") from None
        provider_ids = bytes(self._ids(self._providers, [r.provider for r in batch]))
        flag_ids = bytes(self._ids(self._flags, [r.flag for r in batch]))
        host_ids = bytes(self._ids(self._hosts, [r.host for r in batch]))
        self._provider_col += provider_ids
        self._flag_col += flag_ids
        self._host_col += host_ids
        self._level_col += levels
        for column, values in zip(
            (self._seq, self._time, self._cpu, self._pid, self._tid, self._text_start), numbers
        ):
            column.extend(values)
        self._tail.extend(lines)
        self._seal_blocks()
        self.max_line_length = max(self.max_line_length, max(map(len, lines)))
        self._end += len(batch)
        if self.capacity is not None and self._end - self._first > self.capacity:
            self._evict(self._end - self.capacity)
        return len(batch)

    def _seal_blocks(self) -> None:
        size, tail, done = self.block_size, self._tail, 0
        while len(tail) - done >= size:
            lines = tail[done : done + size]
            self._sealed.append(("\n".join(lines), _line_offsets(lines)))
            done += size
        if done:
            del tail[:done]
            self._tail_start += done

    @staticmethod
    def _ids(names: _Names, values: list) -> list[int]:
        ids = names.ids
        try:
            return [ids[value] for value in values]
        except KeyError:
            return [ids[v] if v in ids else names.intern(v) for v in values]

    def _evict(self, new_first: int) -> None:
        self._first = new_first
        gone = min(new_first // self.block_size - self._sealed_first, len(self._sealed))
        if gone > 0:
            del self._sealed[:gone]
            self._sealed_first += gone
        for block in [b for b in self._lower_cache if (b + 1) * self.block_size <= new_first]:
            del self._lower_cache[block]
        # Compact physically only in chunks so eviction stays O(1) amortised.
        dead = new_first - self._base
        if dead >= max(self.block_size, (self.capacity or 0) // 4):
            for column in (
                self._provider_col, self._flag_col, self._host_col,
                self._level_col, self._seq, self._time, self._cpu, self._pid,
                self._tid, self._text_start,
            ):
                del column[:dead]
            self._base = new_first

    def clear(self) -> None:
        """Drop everything (positions restart at 0)."""
        epoch = self._epoch
        self.__init__(self.capacity, block_size=self.block_size)  # type: ignore[misc]
        self._epoch = epoch + 1

    # -- reading -------------------------------------------------------------

    def __len__(self) -> int:
        return self._end - self._first

    @property
    def first_position(self) -> int:
        return self._first

    @property
    def end_position(self) -> int:
        return self._end

    def _index(self, position: int) -> int:
        if not self._first <= position < self._end:
            raise IndexError(f"trace position {position} not in [{self._first}, {self._end})")
        return position - self._base

    def line(self, position: int) -> str:
        self._index(position)  # range check
        if position >= self._tail_start:
            return self._tail[position - self._tail_start]
        block, line = divmod(position, self.block_size)
        text, offsets = self._sealed[block - self._sealed_first]
        return text[offsets[line] : offsets[line + 1] - 1]

    def level(self, position: int) -> int:
        return self._level_col[self._index(position)]

    def provider(self, position: int) -> str:
        return self._providers.names[self._provider_col[self._index(position)]]  # type: ignore[return-value]

    def text_start(self, position: int) -> int:
        """Column where the message text begins in ``line(position)``."""
        return self._text_start[self._index(position)]

    def record(self, position: int) -> TraceRecord:
        index = self._index(position)
        return TraceRecord(
            seq=self._seq[index],
            time_ns=self._time[index],
            host=self._hosts.names[self._host_col[index]],  # type: ignore[arg-type]
            provider=self._providers.names[self._provider_col[index]],  # type: ignore[arg-type]
            flag=self._flags.names[self._flag_col[index]],
            level=self._level_col[index],
            text=self.line(position)[self._text_start[index] :],
            cpu=self._cpu[index],
            pid=self._pid[index],
            tid=self._tid[index],
        )

    @property
    def provider_names(self) -> list[str]:
        return [name for name in self._providers.names if name is not None]

    @property
    def flag_names(self) -> list[str]:
        return [name for name in self._flags.names if name is not None]

    @property
    def host_names(self) -> list[str]:
        return [name for name in self._hosts.names if name is not None]

    def select(self, trace_filter: TraceFilter | None = None) -> TraceSelection:
        """A filtered view; call ``prime``/``advance``/``evaluate_all`` on it."""
        return TraceSelection(self, trace_filter or TraceFilter())

    # -- column scans used by selections -----------------------------------

    def _mask(self, start: int, stop: int, tables: list[tuple[bytearray, bytes]]) -> bytes | None:
        mask: bytes | None = None
        lo, hi = start - self._base, stop - self._base
        for column, table in tables:
            part = column[lo:hi].translate(table)
            mask = part if mask is None else _and_masks(mask, part)
        return mask

    def _lower_buffer(self, start: int, stop: int) -> tuple[str, array, int]:
        """Lowercase "\n"-joined lines covering [start, stop) (within one
        block), the start offset of each line plus a sentinel, and the
        absolute position of the buffer's first line."""
        if start >= self._tail_start:
            lines = [line.lower() for line in self._tail[start - self._tail_start : stop - self._tail_start]]
            return "\n".join(lines), _line_offsets(lines), start
        block = start // self.block_size
        cached = self._lower_cache.get(block)
        if cached is None:
            text, offsets = self._sealed[block - self._sealed_first]
            lowered = text.lower()
            if len(lowered) != len(text):
                # A few characters lowercase to two; keep line offsets exact.
                lines = [line.lower() for line in text.split("\n")]
                lowered, offsets = "\n".join(lines), _line_offsets(lines)
            cached = self._lower_cache[block] = (lowered, offsets)
        return cached[0], cached[1], block * self.block_size

    def _text_hits(self, start: int, stop: int, needle: str) -> list[int]:
        """Sorted positions in [start, stop) (one block at most) whose
        lowercase display line contains ``needle`` (already lowercase)."""
        buffer, offsets, origin = self._lower_buffer(start, stop)
        if needle not in buffer:
            return []
        first_line, last_line = start - origin, stop - origin
        window_start, window_stop = offsets[first_line], offsets[last_line] - 1
        hits_in_window = buffer.count(needle, window_start, window_stop)
        if hits_in_window * 4 >= last_line - first_line:
            # Dense: test each line in C rather than walk hits in Python.
            lines = buffer[window_start:window_stop].split("\n")
            return list(compress(range(start, stop), map(operator.contains, lines, repeat(needle))))
        hits: list[int] = []
        find = buffer.find
        at = find(needle, window_start, window_stop)
        while at >= 0:
            line = bisect_right(offsets, at) - 1
            hits.append(origin + line)
            at = find(needle, offsets[line + 1], window_stop)
        return hits


# --------------------------------------------------------------------------
# Filtered views


class TraceSelection(Sequence[int]):
    """The positions of a store that pass a filter, as rows 0..len-1.

    Evaluation is progressive: ``prime`` evaluates the blocks around an
    anchor, ``advance`` extends the evaluated range within a time budget,
    ``evaluate_all`` finishes it.  ``len`` and row numbers cover only the
    evaluated range until ``complete`` is true.  Call ``sync`` (the other
    methods do) after the store grew or dropped records.
    """

    def __init__(self, store: TraceStore, trace_filter: TraceFilter) -> None:
        self.store = store
        self._block = store.block_size
        self.filter = trace_filter
        self.identity = trace_filter.is_empty
        self._needle = trace_filter.text.lower() if trace_filter.text else None
        # Lines hold no control characters, so such a needle never matches.
        self._impossible = self._needle is not None and not self._needle.isprintable()
        self._epoch = store._epoch
        self._tables: list[tuple[bytearray, bytes]] = []
        self._tables_key: tuple[int, int, int] | None = None
        self.records_tested = 0  # how many records the filter has looked at
        self._reset(store.end_position)

    def _reset(self, anchor: int) -> None:
        store = self.store
        anchor = min(max(anchor, store.first_position), store.end_position)
        start = max(store.first_position, anchor // self._block * self._block)
        if anchor == store.end_position and anchor > store.first_position:
            start = max(store.first_position, (anchor - 1) // self._block * self._block)
        self._lo = self._hi = start  # evaluated absolute range [lo, hi)
        self._first_block = start // self._block
        self._blocks: list[array] = []  # matches per block, from _first_block
        self._starts: list[int] = []  # rows before each block
        self._count = 0

    # -- sizes ---------------------------------------------------------------

    def __len__(self) -> int:
        if self.identity:
            return len(self.store)
        return self._count

    @property
    def complete(self) -> bool:
        self.sync()
        if self.identity:
            return True
        return self._lo == self.store.first_position and self._hi == self.store.end_position

    @property
    def progress(self) -> float:
        """Evaluated share of the store, 0..1."""
        total = len(self.store)
        if self.identity or total == 0:
            return 1.0
        return (self._hi - self._lo) / total

    # -- rows and positions --------------------------------------------------

    def __getitem__(self, row):  # type: ignore[override]
        if isinstance(row, slice):
            return [self.position(r) for r in range(*row.indices(len(self)))]
        return self.position(row)

    def __iter__(self) -> Iterator[int]:
        if self.identity:
            return iter(range(self.store.first_position, self.store.end_position))
        return (position for block in self._blocks for position in block)

    def position(self, row: int) -> int:
        """Absolute store position shown at ``row``."""
        if row < 0:
            row += len(self)
        if not 0 <= row < len(self):
            raise IndexError(f"row {row} not in selection of {len(self)}")
        if self.identity:
            return self.store.first_position + row
        index = bisect_right(self._starts, row) - 1
        return self._blocks[index][row - self._starts[index]]

    def row_of(self, position: int) -> int:
        """First row whose position is >= ``position`` (``len`` if none)."""
        if self.identity:
            return min(max(position - self.store.first_position, 0), len(self))
        if position <= self._lo:
            return 0
        if position >= self._hi:
            return self._count
        index = position // self._block - self._first_block
        return self._starts[index] + bisect_left(self._blocks[index], position)

    # -- evaluation ------------------------------------------------------------

    def sync(self) -> None:
        """Follow the store: restart after clear(), drop evicted rows."""
        store = self.store
        if self._epoch != store._epoch:
            self._epoch = store._epoch
            self._reset(store.end_position)
            return
        first = store.first_position
        if self.identity or self._lo >= first:
            return
        if self._hi <= first:
            self._reset(first)
            return
        gone = first // self._block - self._first_block
        if gone:
            del self._blocks[:gone]
            self._first_block += gone
        head = self._blocks[0]
        del head[: bisect_left(head, first)]
        self._lo = first
        self._restart_rows()

    def _restart_rows(self) -> None:
        self._starts = list(accumulate(map(len, self._blocks), initial=0))
        self._count = self._starts.pop()

    def _column_tables(self) -> list[tuple[bytearray, bytes]]:
        store = self.store
        key = (len(store._providers.names), len(store._flags.names), len(store._hosts.names))
        if key != self._tables_key:
            tables: list[tuple[bytearray, bytes]] = []
            f = self.filter
            if f.providers is not None:
                tables.append((store._provider_col, store._providers.table(f.providers)))
            if f.flags is not None:
                tables.append((store._flag_col, store._flags.table(f.flags)))
            if f.hosts is not None:
                tables.append((store._host_col, store._hosts.table(f.hosts)))
            if f.max_level is not None:
                tables.append((store._level_col, _level_table(f.max_level)))
            self._tables, self._tables_key = tables, key
        return self._tables

    def _evaluate(self, start: int, stop: int) -> list[int] | range:
        """Positions in [start, stop) (within one block) that pass."""
        store = self.store
        self.records_tested += stop - start
        if self._impossible:
            return []
        mask = store._mask(start, stop, self._column_tables())
        if self._needle is None:
            if mask is None:
                return range(start, stop)
            return list(compress(range(start, stop), mask))
        if mask is not None and not mask.count(1):
            return []
        hits = store._text_hits(start, stop, self._needle)
        if mask is None or not hits:
            return hits
        return list(compress(hits, map(mask.__getitem__, map(operator.sub, hits, repeat(start)))))

    def _extend_forward(self) -> None:
        start = self._hi
        stop = min((start // self._block + 1) * self._block, self.store.end_position)
        hits = self._evaluate(start, stop)
        block = start // self._block
        if block - self._first_block < len(self._blocks):
            self._blocks[-1].extend(hits)  # the partly evaluated last block grows
        else:
            self._blocks.append(array("q", hits))
            self._starts.append(self._count)
        self._count += len(hits)
        self._hi = stop

    def _extend_backward(self) -> None:
        stop = self._lo
        start = max(self.store.first_position, (stop - 1) // self._block * self._block)
        hits = self._evaluate(start, stop)
        self._blocks.insert(0, array("q", hits))
        self._first_block = start // self._block
        self._lo = start
        self._restart_rows()

    def _step(self) -> bool:
        """Evaluate one block: forward first (new records), then backward;
        False when the whole store is evaluated."""
        store = self.store
        if self._hi < store.end_position:
            self._extend_forward()
            return True
        if self._lo > store.first_position:
            self._extend_backward()
            return True
        return False

    def prime(self, anchor: int | None, rows: int, budget_s: float = 0.010) -> None:
        """Restart around ``anchor`` (a position, or None for the end) and
        evaluate until ``rows`` rows exist on each side of it, the store is
        exhausted or ``budget_s`` has passed (at least one block is always
        evaluated); ``advance`` does the rest."""
        self.sync()
        if self.identity:
            return
        store = self.store
        self._reset(store.end_position if anchor is None else anchor)
        deadline = time.perf_counter() + budget_s
        if self._hi < store.end_position:
            self._extend_forward()
        if anchor is None:
            while self._hi < store.end_position:  # new records since _reset
                self._extend_forward()
            while (
                self._count < rows
                and self._lo > store.first_position
                and time.perf_counter() < deadline
            ):
                self._extend_backward()
            return
        while (
            self._count - self.row_of(anchor) < rows
            and self._hi < store.end_position
            and time.perf_counter() < deadline
        ):
            self._extend_forward()
        while (
            self.row_of(anchor) < rows
            and self._lo > store.first_position
            and time.perf_counter() < deadline
        ):
            self._extend_backward()

    def advance(self, budget_s: float = 0.008) -> bool:
        """Evaluate more blocks for up to ``budget_s``; True if rows changed."""
        self.sync()
        if self.identity:
            return False
        deadline = time.perf_counter() + budget_s
        changed = False
        while self._step():
            changed = True
            if time.perf_counter() >= deadline:
                break
        return changed

    def evaluate_all(self) -> None:
        self.sync()
        if not self.identity:
            while self._step():
                pass

    # -- search ----------------------------------------------------------------

    def search(self, text: str, start_row: int, backwards: bool = False) -> int | None:
        """Row of the nearest line containing ``text`` (case-insensitive),
        starting at ``start_row`` inclusive, going down (or up); None if none.
        Finishes the selection's evaluation first."""
        needle = text.lower()
        if not needle or "\n" in needle:
            return None
        self.evaluate_all()
        count = len(self)
        if count == 0:
            return None
        start_row = min(max(start_row, 0), count - 1)
        origin = self.position(start_row)
        store = self.store
        first_block = store.first_position // self._block
        last_block = (store.end_position - 1) // self._block
        step = -1 if backwards else 1
        block = origin // self._block
        while first_block <= block <= last_block:
            start = max(block * self._block, store.first_position)
            stop = min((block + 1) * self._block, store.end_position)
            members: array | None = None
            if not self.identity:
                members = self._blocks[block - self._first_block]
            if members is None or len(members):
                hits = store._text_hits(start, stop, needle)
                if members is not None and hits:
                    hits = sorted(set(hits).intersection(members))
                if backwards:
                    index = bisect_right(hits, origin) - 1
                    if index >= 0:
                        return self.row_of(hits[index])
                else:
                    index = bisect_left(hits, origin)
                    if index < len(hits):
                        return self.row_of(hits[index])
            block += step
        return None
