"""khttpd access log in Common Log Format, stamped with virtual time.

``10.0.0.2 - - [01/Jan/2026:00:00:01 +0000] "GET /index.html HTTP/1.1" 200 1234``

Time is the emulated machine's virtual clock, never the host's: ``now_s`` is
seconds since the lab's boot, and boot is ``LAB_EPOCH_UNIX``
(2026-01-01T00:00:00Z) unless the caller passes another epoch (pass 0 when
``now_s`` is already Unix time). Same seed, same log, byte for byte.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

LAB_EPOCH_UNIX = 1_767_225_600  # 2026-01-01T00:00:00Z: virtual second 0

MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
               "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")  # fmt: skip
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def virtual_utc(now_s: float, epoch_unix: int = LAB_EPOCH_UNIX) -> time.struct_time:
    """Broken-down UTC time of a virtual clock reading (whole seconds)."""
    if not isinstance(now_s, (int, float)) or not math.isfinite(now_s) or now_s < 0:
        raise ValueError(f"virtual time must be a finite number >= 0, got {now_s!r}")
    # gmtime is pure arithmetic on its argument; it never reads the host clock.
    return time.gmtime(epoch_unix + int(now_s))


def clf_date(now_s: float, epoch_unix: int = LAB_EPOCH_UNIX) -> str:
    """``01/Jan/2026:00:00:01 +0000``; month names fixed, not from the locale."""
    t = virtual_utc(now_s, epoch_unix)
    return (
        f"{t.tm_mday:02d}/{MONTH_NAMES[t.tm_mon - 1]}/{t.tm_year:04d}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def _escape_for_log(value: bytes | str) -> str:
    """Printable ASCII as is; quote, backslash and anything else escaped.

    The request line comes from the network: escaping keeps one request on one
    log line and stops a client from forging entries.
    """
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
    out: list[str] = []
    for byte in raw:
        if byte == 0x22:
            out.append('\\"')
        elif byte == 0x5C:
            out.append("\\\\")
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class AccessLogEntry:
    """One served request, as the driver saw it."""

    remote_addr: str
    now_s: float
    method: str | bytes
    target: str | bytes
    http_version: str  # "1.1" or "HTTP/1.1"
    status: int
    bytes_sent: int  # body bytes, headers excluded (CLF %b)
    ident: str = "-"
    user: str = "-"

    def line(self, epoch_unix: int = LAB_EPOCH_UNIX) -> str:
        version = self.http_version
        if not version.startswith("HTTP/"):
            version = "HTTP/" + version
        request_line = (
            f"{_escape_for_log(self.method)} {_escape_for_log(self.target)} "
            f"{_escape_for_log(version)}"
        )
        size = str(self.bytes_sent) if self.bytes_sent > 0 else "-"
        return (
            f"{self.remote_addr} {self.ident} {self.user} "
            f"[{clf_date(self.now_s, epoch_unix)}] \"{request_line}\" {self.status} {size}"
        )


def format_clf(
    remote_addr: str,
    now_s: float,
    method: str | bytes,
    target: str | bytes,
    http_version: str,
    status: int,
    bytes_sent: int,
    *,
    epoch_unix: int = LAB_EPOCH_UNIX,
) -> str:
    """One Common Log Format line (no trailing newline)."""
    entry = AccessLogEntry(remote_addr, now_s, method, target, http_version, status, bytes_sent)
    return entry.line(epoch_unix)


class AccessLog:
    """The last ``capacity`` requests, oldest first, for the debugger to show.

    Entries are kept as the driver logged them and formatted into CLF lines when read, as a
    trace consumer formats (the server pays for a line only when somebody looks at it)."""

    def __init__(self, capacity: int = 1024, epoch_unix: int = LAB_EPOCH_UNIX) -> None:
        if capacity <= 0:
            raise ValueError("access log capacity must be positive")
        self._entries: deque[AccessLogEntry] = deque(maxlen=capacity)
        self._epoch_unix = epoch_unix
        self.total = 0  # every line ever logged, including those rotated out

    def log(self, entry: AccessLogEntry) -> AccessLogEntry:
        self._entries.append(entry)
        self.total += 1
        return entry

    def lines(self) -> list[str]:
        epoch = self._epoch_unix
        return [entry.line(epoch) for entry in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.lines())
