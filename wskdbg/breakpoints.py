"""Breakpoints: code breakpoints on routine entries and event breakpoints on the bus.

A code breakpoint (`bp`, `bu`, `bm`) names a routine, `module!Routine`; it hits
on the `RoutineEntered` hand-off of that routine.  An event breakpoint (`bp /e`)
names an event kind (or a prefix of one: `irp` covers `irp.dispatch`,
`irp.complete` ...) plus field predicates, and hits on any matching event.
Both share pass counts, conditions, command strings and enable state.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Iterable

from stack.kernel.events import Event, RoutineEntered

MAX_BREAKPOINTS = 32


class BreakpointError(ValueError):
    pass


@dataclass(slots=True)
class Breakpoint:
    id: int
    kind: str  # "code" or "event"
    expression: str  # as shown by bl: `echosrv!WskSampleAcceptEvent` or `tcp.state ESTABLISHED`
    symbol: str = ""  # canonical module!Routine for code breakpoints
    symbolic: bool = False  # bu / bm: stays set when the module unloads
    from_bm: bool = False
    host: str | None = None  # /h: only on this host
    address: int = 0  # resolved address (0: deferred)
    enabled: bool = True
    passes: int = 1
    passes_left: int = 1
    one_shot: bool = False
    condition: str | None = None
    command: str | None = None
    max_depth: int | None = None  # /c: only when the call depth is below this
    min_depth: int | None = None  # /C: only when the call depth is above this
    event_kind: str = ""
    predicates: list[tuple[str, str]] = field(default_factory=list)  # (field or "", value)
    hits: int = 0

    @property
    def module(self) -> str:
        return self.symbol.partition("!")[0]

    def matches_event(self, ev: Event) -> bool:
        """Kind and field predicates only (depth, host, passes and condition are checked by the engine)."""
        if self.kind == "code":
            return isinstance(ev, RoutineEntered) and ev.symbol.lower() == self.symbol.lower()
        kind = ev.kind
        want = self.event_kind
        if want not in ("*", kind) and not kind.startswith(want + "."):
            return False
        return all(_predicate_holds(ev, name, value) for name, value in self.predicates)


def _field_values(ev: Event) -> dict[str, Any]:
    names = getattr(ev, "__dataclass_fields__", {})
    return {n: getattr(ev, n) for n in names if n not in ("seq", "time_ns", "depth")}


def _words_of(value: Any) -> set[str]:
    """The spellings a value may be written as in a predicate (lower case)."""
    out: set[str] = set()
    if isinstance(value, bool):
        out.add(str(value).lower())
        out.add(str(int(value)))
    elif isinstance(value, int):
        out.update({str(value), f"{value:x}", f"0x{value:x}", f"0n{value}"})
    elif isinstance(value, (tuple, list)):
        for item in value:
            out |= _words_of(item)
    elif value is not None:
        text = str(value).lower()
        out.add(text)
        out.update(w.strip(",:()[]") for w in text.split())
    return out


def _derived_words(ev: Event, fields: dict[str, Any]) -> set[str]:
    """Names a reader would search for: IRP major names, NTSTATUS names, the description's words."""
    words: set[str] = set()
    if "major" in fields:
        from stack.kernel.irp import major_name
        words.add(major_name(int(fields["major"])).lower())
    if "status" in fields and isinstance(fields["status"], int):
        from stack.kernel.ntstatus import status_name
        words.add(status_name(fields["status"]).lower())
    try:
        words.update(w.strip(",:()[]").lower() for w in ev.describe().split())
    except Exception:  # a describe() that fails must not stop matching on fields
        pass
    return words


def _predicate_holds(ev: Event, name: str, value: str) -> bool:
    fields = _field_values(ev)
    wanted = value.lower()
    if name:
        key = name.lower()
        candidates = [v for f, v in fields.items() if f.lower() == key or f.lower().endswith("_" + key)
                      or f.lower().endswith(key)]
        if not candidates:
            return False
        for v in candidates:
            if wanted in _words_of(v) or _number_equal(v, value):
                return True
            if key == "major" and isinstance(v, int):
                from stack.kernel.irp import major_name
                if major_name(v).lower() == wanted:
                    return True
        return False
    for v in fields.values():
        if wanted in _words_of(v) or _number_equal(v, value):
            return True
    return wanted in _derived_words(ev, fields) or any(fnmatch.fnmatchcase(w, wanted)
                                                        for w in _derived_words(ev, fields) if "*" in wanted)


def _number_equal(v: Any, text: str) -> bool:
    if not isinstance(v, int) or isinstance(v, bool):
        return False
    t = text.strip().lower().replace("`", "")
    try:
        if t.startswith("0n"):
            return v == int(t[2:], 10)
        if t.startswith("0x"):
            return v == int(t[2:], 16)
        return v == int(t, 10) or v == int(t, 16)
    except ValueError:
        return False


class BreakpointTable:
    """The numbered breakpoints, with a fast index from routine name to code breakpoints."""

    def __init__(self) -> None:
        self._items: dict[int, Breakpoint] = {}
        self._by_symbol: dict[str, list[Breakpoint]] = {}
        self._event_bps: list[Breakpoint] = []

    def __iter__(self):
        return iter(sorted(self._items.values(), key=lambda b: b.id))

    def __len__(self) -> int:
        return len(self._items)

    def get(self, bp_id: int) -> Breakpoint | None:
        return self._items.get(bp_id)

    def next_id(self) -> int:
        i = 0
        while i in self._items:
            i += 1
        return i

    def add(self, bp: Breakpoint) -> Breakpoint:
        if bp.id not in self._items and len(self._items) >= MAX_BREAKPOINTS:
            raise BreakpointError(f"Too many breakpoints: kernel mode allows at most {MAX_BREAKPOINTS}")
        self._items[bp.id] = bp
        self._reindex()
        return bp

    def find_code(self, symbol: str, host: str | None) -> Breakpoint | None:
        for bp in self._items.values():
            if bp.kind == "code" and bp.symbol.lower() == symbol.lower() and bp.host == host:
                return bp
        return None

    def remove(self, ids: Iterable[int]) -> list[int]:
        gone = []
        for i in ids:
            if self._items.pop(i, None) is not None:
                gone.append(i)
        self._reindex()
        return gone

    def set_enabled(self, ids: Iterable[int], enabled: bool) -> list[int]:
        done = []
        for i in ids:
            bp = self._items.get(i)
            if bp is not None:
                bp.enabled = enabled
                done.append(i)
        self._reindex()
        return done

    def _reindex(self) -> None:
        self._by_symbol = {}
        self._event_bps = []
        for bp in self._items.values():
            if not bp.enabled:
                continue
            if bp.kind == "code":
                self._by_symbol.setdefault(bp.symbol.lower(), []).append(bp)
            else:
                self._event_bps.append(bp)
        for lst in self._by_symbol.values():
            lst.sort(key=lambda b: b.id)
        self._event_bps.sort(key=lambda b: b.id)

    def candidates(self, ev: Event) -> list[Breakpoint]:
        """Enabled breakpoints whose kind and predicates match `ev` (cheap when none are set)."""
        out: list[Breakpoint] = []
        if self._by_symbol and isinstance(ev, RoutineEntered):
            out.extend(self._by_symbol.get(ev.symbol.lower(), ()))
        if self._event_bps:
            out.extend(bp for bp in self._event_bps if bp.matches_event(ev))
        return out

    def ids_from_spec(self, text: str) -> list[int]:
        """`*`, `1`, `1 3`, `1,3`, `1-3` (decimal, as WinDbg's breakpoint IDs)."""
        text = text.strip()
        if not text:
            raise BreakpointError("a breakpoint ID, list, range or * is required")
        if text == "*":
            return sorted(self._items)
        ids: list[int] = []
        for part in text.replace(",", " ").split():
            lo, sep, hi = part.partition("-")
            try:
                a = int(lo, 10)
                b = int(hi, 10) if sep else a
            except ValueError:
                raise BreakpointError(f"Syntax error at '{part}'") from None
            if b < a or b - a > 1024:
                raise BreakpointError(f"bad breakpoint range '{part}'")
            ids.extend(range(a, b + 1))
        return ids
