"""Recordings of everything that entered the lab from outside while a bridge was attached.

A recording is a text file of JSON lines:

* line 1, the header: ``{"format": "wskdbg-bridge-recording", "version": 1, "seed": ..,
  "topology": .., "forwards": [..], "tap": {..} | null, "tick_ns": .., "start_event": ..,
  "start_ns": ..}``
* one line per input: ``[at_event, time_ns, kind, conn, arg, "base64 data"]`` -
  the input was injected when the scheduler had run ``at_event`` events, as an
  event at virtual time ``time_ns``;
* a last line ``{"end_event": .., "end_ns": ..}`` written on a clean detach.

A crashed run leaves no footer; its recording still replays up to its last input.
Lines are flushed as they are written so that a crash loses nothing already injected.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Iterable, Iterator

FORMAT = "wskdbg-bridge-recording"
VERSION = 1

# Input kinds.  Forwarded connections: accept, data, eof, reset, drain.  TAP: frame.
KIND_ACCEPT = "accept"  # conn = new id, arg = forward index
KIND_DATA = "data"  # conn, data = bytes the host peer sent
KIND_EOF = "eof"  # conn: the host peer shut down its sending side
KIND_RESET = "reset"  # conn: the host connection failed or was reset
KIND_DRAIN = "drain"  # conn, arg = bytes the host socket accepted from the lab (credit returned)
KIND_FRAME = "frame"  # data = one Ethernet frame read from the TAP
KINDS = frozenset({KIND_ACCEPT, KIND_DATA, KIND_EOF, KIND_RESET, KIND_DRAIN, KIND_FRAME})


class RecordingError(ValueError):
    """A recording file that cannot be read (names the line)."""


@dataclass(slots=True, frozen=True)
class BridgeInput:
    """One thing that entered the lab from outside."""

    at_event: int
    time_ns: int
    kind: str
    conn: int = 0
    arg: int = 0
    data: bytes = b""

    def to_line(self) -> str:
        payload = base64.b64encode(self.data).decode("ascii") if self.data else ""
        return json.dumps([self.at_event, self.time_ns, self.kind, self.conn, self.arg, payload],
                          separators=(",", ":"))


@dataclass(slots=True)
class RecordingHeader:
    seed: int
    topology: str = "default"
    forwards: list[str] = field(default_factory=list)
    tap: dict[str, Any] | None = None
    tick_ns: int = 1_000_000
    start_event: int = 0
    start_ns: int = 0
    note: str = ""
    wall_epoch_unix: int = 0  # Unix time of virtual 0 in the live run (khttpd's Date:), replayed as is

    def to_line(self) -> str:
        return json.dumps({"format": FORMAT, "version": VERSION, **asdict(self)}, separators=(",", ":"))


@dataclass(slots=True)
class Recording:
    header: RecordingHeader
    inputs: list[BridgeInput]
    end_event: int | None = None
    end_ns: int | None = None

    @property
    def complete(self) -> bool:
        return self.end_event is not None


class RecordingWriter:
    """Appends inputs to a recording file as they are injected."""

    def __init__(self, target: str | os.PathLike[str] | IO[str], header: RecordingHeader) -> None:
        if isinstance(target, (str, os.PathLike)):
            self._file: IO[str] = open(target, "w", encoding="ascii")
            self._owns = True
        else:
            self._file = target
            self._owns = False
        self.header = header
        self.count = 0
        self.closed = False
        self._file.write(header.to_line() + "\n")
        self._file.flush()

    def append(self, inp: BridgeInput) -> None:
        if self.closed:
            return
        self._file.write(inp.to_line() + "\n")
        self.count += 1
        # Frames and data come in bursts; flushing each line keeps a crash from losing them.
        self._file.flush()

    def close(self, end_event: int, end_ns: int) -> None:
        if self.closed:
            return
        self.closed = True
        self._file.write(json.dumps({"end_event": end_event, "end_ns": end_ns}, separators=(",", ":")) + "\n")
        self._file.flush()
        if self._owns:
            self._file.close()


def _parse_input(obj: Any, lineno: int) -> BridgeInput:
    if not (isinstance(obj, list) and len(obj) == 6):
        raise RecordingError(f"line {lineno}: an input is a list of 6 fields")
    at_event, time_ns, kind, conn, arg, payload = obj
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (at_event, time_ns, conn, arg)):
        raise RecordingError(f"line {lineno}: at_event, time_ns, conn and arg must be non-negative integers")
    if kind not in KINDS:
        raise RecordingError(f"line {lineno}: unknown input kind {kind!r}")
    if not isinstance(payload, str):
        raise RecordingError(f"line {lineno}: data must be a base64 string")
    try:
        data = base64.b64decode(payload, validate=True) if payload else b""
    except (binascii.Error, ValueError) as exc:
        raise RecordingError(f"line {lineno}: bad base64 data ({exc})") from None
    return BridgeInput(at_event, time_ns, kind, conn, arg, data)


def _parse_header(obj: Any) -> RecordingHeader:
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise RecordingError("line 1: not a wskdbg bridge recording")
    if obj.get("version") != VERSION:
        raise RecordingError(f"line 1: unsupported recording version {obj.get('version')!r}")
    try:
        header = RecordingHeader(
            seed=int(obj["seed"]), topology=str(obj.get("topology", "default")),
            forwards=[str(f) for f in obj.get("forwards", [])],
            tap=dict(obj["tap"]) if obj.get("tap") else None,
            tick_ns=int(obj.get("tick_ns", 1_000_000)), start_event=int(obj.get("start_event", 0)),
            start_ns=int(obj.get("start_ns", 0)), note=str(obj.get("note", "")),
            wall_epoch_unix=int(obj.get("wall_epoch_unix", 0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordingError(f"line 1: bad header ({exc})") from None
    if header.tick_ns <= 0:
        raise RecordingError("line 1: tick_ns must be positive")
    return header


def iter_lines(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise RecordingError(f"line {lineno}: not JSON ({exc.msg})") from None


def read_recording(source: str | os.PathLike[str] | IO[str]) -> Recording:
    """Read a recording; a missing footer (a crashed run) is allowed."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, encoding="ascii", errors="replace") as f:
            return _read(f)
    return _read(source)


def _read(f: IO[str]) -> Recording:
    rows = iter_lines(f)
    first = next(rows, None)
    if first is None:
        raise RecordingError("line 1: empty recording")
    rec = Recording(_parse_header(first[1]), [])
    last_event = rec.header.start_event
    for lineno, obj in rows:
        if rec.end_event is not None:
            raise RecordingError(f"line {lineno}: input after the end marker")
        if isinstance(obj, dict):
            try:
                rec.end_event, rec.end_ns = int(obj["end_event"]), int(obj["end_ns"])
            except (KeyError, TypeError, ValueError):
                raise RecordingError(f"line {lineno}: bad end marker") from None
            continue
        inp = _parse_input(obj, lineno)
        if inp.at_event < last_event:
            raise RecordingError(f"line {lineno}: inputs out of order (event {inp.at_event} < {last_event})")
        last_event = inp.at_event
        rec.inputs.append(inp)
    return rec
