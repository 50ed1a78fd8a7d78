"""A trace line: one WPP message or one bus event, and the WPP display line it becomes.

Shared by the trace store (wskdbg.trace.store), its filter language (wskdbg.trace.filter) and
the views that show them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LEVEL_NAMES", "TraceRecord", "format_trace_line"]

# evntrace.h levels; a filter level keeps records whose level is <= it.
LEVEL_NAMES: dict[int, str] = {
    1: "CRITICAL",
    2: "ERROR",
    3: "WARNING",
    4: "INFORMATION",
    5: "VERBOSE",
}

# Control characters would break the one-line-per-record layout (and the
# "\n"-joined search buffers), so they are shown as spaces.
_CONTROL_TABLE = {code: " " for code in (*range(32), 127)}


@dataclass(slots=True)
class TraceRecord:
    """One WPP message or one stack event, already formatted."""

    seq: int
    time_ns: int
    host: str
    provider: str  # "echosrv", "tcpip", "event:irp", ...
    flag: str | None  # WPP flag name such as "TRCINFO"; None for events
    level: int  # 1..5, evntrace CRITICAL..VERBOSE
    text: str  # the formatted message
    cpu: int = 0
    pid: int = 4
    tid: int = 0


def _clock(seconds: int) -> str:
    """``hh:mm:ss`` padded so that with ``.nnnnnnnnn`` the stamp is 20 wide."""
    minutes, secs = divmod(seconds, 60)
    hours, mins = divmod(minutes, 60)
    return "%10s" % ("%02d:%02d:%02d" % (hours, mins, secs))


_PREFIX_FORMAT = "[%d]%04X.%04X::%s.%09d [%s]"  # WPP default: [CPU]PID.TID::time [provider]


def _prefix(record: TraceRecord) -> str:
    seconds, nanos = divmod(record.time_ns, 1_000_000_000)
    return _PREFIX_FORMAT % (
        record.cpu, record.pid, record.tid, _clock(seconds), nanos, record.provider
    )


def _clean(text: str) -> str:
    return text if text.isprintable() else text.translate(_CONTROL_TABLE)


def format_trace_line(record: TraceRecord) -> str:
    """The display line: ``[0]0004.0078::  00:00:01.234567890 [echosrv]text``."""
    return _prefix(record) + _clean(record.text)
