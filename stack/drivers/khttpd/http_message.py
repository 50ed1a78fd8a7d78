"""The messages of khttpd's HTTP core (http.py): what `HttpServerConnection.next_request` hands
the driver (a `Request`, a `ProtocolFailure`, or NEED_DATA / PAUSED / PEER_CLOSED), and what a
response is made of before the connection frames it: reason phrases, the IMF-fixdate `Date`,
the small HTML error page, and each response field checked once as bytes.

Values only, no connection state: the driver, the response cache and the tests read these
without a connection at hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, final

from stack.drivers.khttpd import http1
from stack.drivers.khttpd.accesslog import LAB_EPOCH_UNIX, MONTH_NAMES, WEEKDAY_NAMES, virtual_utc
from stack.drivers.khttpd.paths import HttpError, ResolvedPath

SERVER_SOFTWARE: Final = "khttpd/1.0"
MAX_HEAD_SIZE: Final = 16 * 1024  # request line + headers; more is 431
MAX_BODY_SIZE: Final = 64 * 1024  # request bodies (dynamic POST only); more is 413
STATIC_METHODS: Final = ("GET", "HEAD")
DYNAMIC_METHODS: Final = ("GET", "HEAD", "POST")
DYNAMIC_PREFIXES: Final = ("/cgi/", "/app/")
DYNAMIC_EXTENSIONS: Final = (".dyn",)
# Room for the method, two spaces and " HTTP/1.1\r\n" around a maximal target.
_REQUEST_LINE_SLACK: Final = 64
# Only these errors leave the connection usable: the request was well framed
# and harmless. Anything else is answered and then the connection is closed.
_KEEP_ALIVE_ERRORS: Final = frozenset({404, 405})

REASON_PHRASES: Final[dict[int, str]] = {
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    304: "Not Modified",
    307: "Temporary Redirect",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}

# Response headers the connection writes itself; callers may not add them.
_MANAGED_HEADERS: Final = frozenset(
    {b"server", b"date", b"content-type", b"content-length", b"connection", b"transfer-encoding"}
)


def reason_phrase(status: int) -> str:
    return REASON_PHRASES.get(status, "Unknown")


# IMF-fixdates already written, by Unix second: every response within one virtual second has the
# same Date (and the validators' Last-Modified is always second 0).
_DATES: dict[int, str] = {}
_DATES_LIMIT = 64


def http_date(now_s: float, epoch_unix: int = LAB_EPOCH_UNIX) -> str:
    """IMF-fixdate of a virtual clock reading: ``Thu, 01 Jan 2026 00:00:01 GMT``."""
    if (now_s.__class__ is float or now_s.__class__ is int) and 0 <= now_s < math.inf:
        text = _DATES.get(epoch_unix + int(now_s))
        if text is not None:
            return text
    t = virtual_utc(now_s, epoch_unix)  # checks the clock reading
    text = (
        f"{WEEKDAY_NAMES[t.tm_wday]}, {t.tm_mday:02d} {MONTH_NAMES[t.tm_mon - 1]} "
        f"{t.tm_year:04d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )
    if len(_DATES) >= _DATES_LIMIT:
        _DATES.clear()
    _DATES[epoch_unix + int(now_s)] = text
    return text


def is_dynamic(
    path: str,
    prefixes: Iterable[str] = DYNAMIC_PREFIXES,
    extensions: Iterable[str] = DYNAMIC_EXTENSIONS,
) -> bool:
    """True for URL paths that the user-mode server answers, not the docroot.

    ``path`` is a normalized URL path with a leading slash ("/app/hello").
    A prefix matches with or without its trailing slash ("/app" too).
    """
    for prefix in prefixes:
        if path.startswith(prefix) or path == prefix.rstrip("/"):
            return True
    name = path.rsplit("/", 1)[-1].lower()
    return any(name.endswith(extension) for extension in extensions)


def error_body(status: int) -> bytes:
    """The small HTML page sent with an error status. Never echoes request data."""
    title = f"{status} {reason_phrase(status)}"
    return (
        "<!DOCTYPE html>\n"
        f"<html><head><title>{title}</title></head>\n"
        f"<body><h1>{title}</h1><hr><address>{SERVER_SOFTWARE}</address></body></html>\n"
    ).encode("ascii")


@final
class NeedData:
    """next_request(): nothing complete yet; receive more bytes first."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


@final
class Paused:
    """next_request(): a request is buffered but the current response is not done."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PAUSED"


@final
class PeerClosed:
    """next_request(): the client closed its side between requests."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PEER_CLOSED"


NEED_DATA: Final = NeedData()
PAUSED: Final = Paused()
PEER_CLOSED: Final = PeerClosed()


@dataclass(frozen=True, slots=True)
class ProtocolFailure:
    """The byte stream is unusable: answer ``status`` (with Connection: close) and close."""

    status: int
    reason: str  # why, for the debugger and the log; never sent to the client

    @property
    def phrase(self) -> str:
        return reason_phrase(self.status)


@dataclass(frozen=True, slots=True)
class Request:
    """One complete request (head and body), parsed and resolved."""

    method: str  # "GET"
    target: bytes  # the request-target exactly as sent
    path_result: ResolvedPath | HttpError
    headers: tuple[tuple[bytes, bytes], ...]  # names lower-cased, in order
    keep_alive: bool  # the client allows another request on this connection
    http_version: str  # "1.1" or "1.0"
    raw_head: bytes  # request line + headers + blank line, as received
    raw_body: bytes = b""  # body bytes as received (chunk framing intact)
    body: bytes = b""  # body with transfer framing removed
    dynamic: bool = False  # for the user-mode server: relay raw_head + raw_body
    error: HttpError | None = None  # answer this instead of serving the target

    @property
    def head_only(self) -> bool:
        return self.method == "HEAD"

    @property
    def path(self) -> ResolvedPath | None:
        return self.path_result if isinstance(self.path_result, ResolvedPath) else None

    @property
    def raw(self) -> bytes:
        """The whole request as received, for relaying to the user-mode server."""
        return self.raw_head + self.raw_body

    def header(self, name: bytes | str) -> bytes | None:
        """A header's value (repeated fields joined with ", "), or None."""
        key = (name.encode("ascii") if name.__class__ is str else name).lower()
        found = None  # a loop, not a list: most lookups (If-None-Match, Range...) find nothing
        for field, value in self.headers:
            if field == key:
                found = value if found is None else found + b", " + value
        return found


class HttpStateError(Exception):
    """The driver called the connection API out of order (e.g. body before header)."""


@final
class ZeroCopyBody:
    """Stands in for body bytes that the driver sends itself from MDLs.

    The Content-Length framing only calls ``len()`` on a body object and hands
    it back untouched, so this advances the framing state without any bytes.
    """

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return f"ZeroCopyBody({self.length})"


def _ascii(text: str | bytes) -> bytes:
    """A response field name or value as bytes (ASCII text, as HTTP fields are)."""
    if text.__class__ is bytes:
        return text  # type: ignore[return-value]
    if isinstance(text, str):
        return text.encode("ascii")
    if isinstance(text, int):
        raise TypeError("expected bytes-like object, not int")
    return bytes(text)


# Response fields already checked, as the caller spelled them -> (name, lower-case name, value) bytes:
# the same few are sent with every response.
_CHECKED_FIELDS: dict[tuple, tuple[bytes, bytes, bytes]] = {}
_CHECKED_FIELDS_LIMIT = 1024
_FRAMING_FIELDS: Final = frozenset({b"content-length", b"transfer-encoding"})
# Whole response headers already checked (the fields as passed -> their checked triples): a
# server answers the same file the same way within one virtual second.
_CHECKED_HEADS: dict[tuple, list[tuple[bytes, bytes, bytes]]] = {}
_CHECKED_HEADS_LIMIT = 256


def _check_field(field: tuple[str | bytes, str | bytes]) -> tuple[bytes, bytes, bytes]:
    """One response field as bytes, checked (token name, field value, framing rules); ValueError if bad."""
    name, value = _ascii(field[0]), _ascii(field[1])
    try:
        http1.validate_response_field(name, value)
        (triple,) = http1.normalize_fields([(name, value)])
    except http1.ProtocolError as exc:
        raise ValueError(f"invalid response header: {exc}") from exc
    try:
        if len(_CHECKED_FIELDS) >= _CHECKED_FIELDS_LIMIT:
            _CHECKED_FIELDS.clear()
        _CHECKED_FIELDS[field] = triple
    except TypeError:
        pass
    return triple


_REASON_BYTES: dict[int, bytes] = {}


def _reason_bytes(status: int) -> bytes:
    reason = _REASON_BYTES.get(status)
    if reason is None:
        reason = _REASON_BYTES[status] = reason_phrase(status).encode("ascii")
    return reason
