"""The sans-IO HTTP/1.1 core of khttpd, over its own parser (http1.py): one connection's
state (`HttpServerConnection`). What it hands back and builds from (`Request`,
`ProtocolFailure`, reason phrases, `Date`, error pages) is in http_message.py.

The driver owns sockets, IRPs and MDLs; this module owns the protocol. It
takes received bytes and gives back parsed requests, and it builds response
header bytes while keeping the framing state right. The body of a static
file never passes through here: the driver sends it from the cache manager's
pages (an MDL chain) and only tells this module how long it was
(``body_passthrough``), which advances the framing with a zero-copy placeholder. That
is the zero-copy lesson of the thesis: header bytes in one small buffer, file
bytes left where the cache put them.

A request/response cycle, as the driver runs it::

    conn.receive(data)                       # bytes from a WSK receive
    item = conn.next_request()
    if item is NEED_DATA: post another receive
    if isinstance(item, ProtocolFailure):    # malformed, 414, 431, 505, 413
        send conn.build_error_response(item, now_s=t); close
    if isinstance(item, Request):
        if item.error:                       # 400/404/405/414 for this target
            send conn.build_error_response(item.error, now_s=t)
        elif item.dynamic:                   # relay item.raw_head + item.raw_body
            ...
        else:
            send conn.build_response_header(200, now_s=t, content_length=n,
                                            content_type=content_type_for(path))
            if not item.head_only: send the file's MDL; conn.body_passthrough(n)
            conn.end_response()
        if conn.should_close: close  else: conn.start_next_cycle(); loop

Pipelined requests wait in the receive buffer (``next_request`` answers
PAUSED) until the current response is ended and the next cycle started.

Two things the parser does not do, done here: an HTTP/1.0 request with ``Connection:
keep-alive`` is kept alive (the parser closes every 1.0 connection, as h11 does; here the
response says keep-alive and a fresh parser takes over the bytes that follow), and a
request carrying both Content-Length and Transfer-Encoding is answered and then
the connection is closed (RFC 9112 §6.1: such a message may be a smuggling attempt).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Final

from stack.drivers.khttpd import http1
from stack.drivers.khttpd.http1 import Http1ServerParser, RequestHead

from stack.drivers.khttpd.accesslog import LAB_EPOCH_UNIX
from stack.drivers.khttpd.paths import (
    MAX_TARGET_LENGTH,
    DocrootLookup,
    HttpError,
    ResolvedPath,
    docroot_has,
    normalize_request_target,
)
# The messages and the response vocabulary live in http_message.py; they are imported from
# here too (the driver, the response cache and the tests name them as http.X).
from stack.drivers.khttpd.http_message import (  # noqa: F401
    _CHECKED_FIELDS,
    _CHECKED_HEADS,
    _CHECKED_HEADS_LIMIT,
    _FRAMING_FIELDS,
    _KEEP_ALIVE_ERRORS,
    _MANAGED_HEADERS,
    _REQUEST_LINE_SLACK,
    DYNAMIC_EXTENSIONS,
    DYNAMIC_METHODS,
    DYNAMIC_PREFIXES,
    MAX_BODY_SIZE,
    MAX_HEAD_SIZE,
    NEED_DATA,
    PAUSED,
    PEER_CLOSED,
    REASON_PHRASES,
    SERVER_SOFTWARE,
    STATIC_METHODS,
    HttpStateError,
    NeedData,
    Paused,
    PeerClosed,
    ProtocolFailure,
    Request,
    ZeroCopyBody,
    _check_field,
    _reason_bytes,
    error_body,
    http_date,
    is_dynamic,
    reason_phrase,
)


class HttpServerConnection:
    """One client connection's HTTP state: parse requests, frame responses."""

    def __init__(
        self,
        docroot: DocrootLookup,
        *,
        server_names: Collection[str] | None = None,
        max_head_size: int = MAX_HEAD_SIZE,
        max_target_length: int = MAX_TARGET_LENGTH,
        max_body_size: int = MAX_BODY_SIZE,
        dynamic_prefixes: Iterable[str] = DYNAMIC_PREFIXES,
        dynamic_extensions: Iterable[str] = DYNAMIC_EXTENSIONS,
    ) -> None:
        if max_head_size <= 0 or max_target_length <= 0 or max_body_size < 0:
            raise ValueError("HTTP size limits must be positive")
        self._docroot = docroot
        self._server_names = server_names
        self._max_head_size = max_head_size
        self._max_target_length = max_target_length
        self._max_body_size = max_body_size
        self._dynamic_prefixes = tuple(dynamic_prefixes)
        self._dynamic_extensions = tuple(dynamic_extensions)
        # The parser answers 431 itself when an incomplete head outgrows this.
        self._p = Http1ServerParser(max_head_size)
        self._peer_eof = False
        self._head: RequestHead | None = None
        self._raw_head = b""
        self._body = bytearray()
        self._failure: ProtocolFailure | None = None
        self._current: Request | None = None
        # Method of the head parsed in this cycle, known even when the request
        # failed before becoming a Request (a HEAD reply is framed bodiless).
        self._cycle_method: bytes | None = None
        self._http10_keep_alive = False  # this cycle: an HTTP/1.0 client asked to keep the connection
        self._close_after_response = False  # this cycle: Content-Length with Transfer-Encoding (RFC 9112 §6.1)
        self.requests_parsed = 0
        self.responses_completed = 0

    # ------------------------------------------------------------ receiving

    def receive(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the socket. Empty data means the peer sent FIN."""
        if not data:
            self._peer_eof = True
            self._p.receive_data(b"")
            return
        if self._peer_eof:
            raise HttpStateError("data received after the peer closed its side")
        self._p.receive_data(data)

    def next_request(self) -> Request | NeedData | Paused | PeerClosed | ProtocolFailure:
        """Parse as far as the buffered bytes allow.

        Returns a complete Request, NEED_DATA, PAUSED (the previous response is
        not finished), PEER_CLOSED (clean close between requests) or a
        ProtocolFailure. After a failure every call returns the same failure.
        """
        if self._failure is not None:
            return self._failure
        parser = self._p
        while True:
            if self._head is None and parser.client == http1.IDLE:
                if self._request_line_too_long():
                    return self._fail(414, "request line longer than the target limit")
            try:
                event = parser.next_event()
            except http1.ProtocolError as exc:
                return self._fail(exc.status, str(exc))
            if event is http1.NEED_DATA:
                return NEED_DATA
            if event is http1.PAUSED:
                return PAUSED
            if event is http1.END_OF_MESSAGE:
                return self._finish_request()
            if event is http1.CONNECTION_CLOSED:
                return PEER_CLOSED
            if event.__class__ is RequestHead:
                failure = self._start_request(event)  # type: ignore[arg-type]
                if failure is not None:
                    return failure
            else:  # a piece of the request body
                self._body += event  # type: ignore[operator]
                if len(self._body) > self._max_body_size:
                    return self._fail(413, f"request body over {self._max_body_size} bytes")

    def _request_line_too_long(self) -> bool:
        window = self._max_target_length + _REQUEST_LINE_SLACK
        buffer = self._p.buffer
        if len(buffer) <= window:
            return False
        return buffer.find(b"\n", 0, window) == -1

    def _start_request(self, head: RequestHead) -> ProtocolFailure | None:
        self._head = head
        self._cycle_method = bytes(head.method)
        self._raw_head = self._p.take_consumed()
        self._body = bytearray()
        # The parser only bounds heads that arrive in pieces; a whole one can be huge.
        if len(self._raw_head) > self._max_head_size:
            return self._fail(431, f"request head over {self._max_head_size} bytes")
        if not head.http_version.startswith(b"1."):
            return self._fail(505, f"HTTP/{head.http_version.decode('ascii')} not supported")
        names = {name for name, _ in head.headers}
        self._close_after_response = b"content-length" in names and b"transfer-encoding" in names
        return None

    def _finish_request(self) -> Request:
        head = self._head
        assert head is not None, "a message ends only after it started"
        raw_body = self._p.take_consumed()
        method = head.method.decode("ascii")  # the grammar guarantees a token
        normalized = normalize_request_target(
            head.target,
            server_names=self._server_names,
            max_target_length=self._max_target_length,
        )
        dynamic = isinstance(normalized, ResolvedPath) and is_dynamic(
            normalized.url_path, self._dynamic_prefixes, self._dynamic_extensions
        )
        path_result: ResolvedPath | HttpError = normalized
        error: HttpError | None = None
        allowed = DYNAMIC_METHODS if dynamic else STATIC_METHODS
        if isinstance(normalized, HttpError):
            error = normalized
        elif method not in allowed:
            error = HttpError(405, f"{method} is not allowed here")
        elif not dynamic and not docroot_has(self._docroot, normalized.fs_path):
            error = HttpError(404, f"{normalized.url_path} is not in the document root")
            path_result = error
        connection_tokens = {
            token.strip().lower()
            for field, value in head.headers
            if field == b"connection"
            for token in value.split(b",")
        }
        keep_alive = b"close" not in connection_tokens and (
            head.http_version >= b"1.1" or b"keep-alive" in connection_tokens)
        self._http10_keep_alive = keep_alive and head.http_version < b"1.1"
        if self._close_after_response:
            keep_alive = False
        request = Request(
            method=method,
            target=bytes(head.target),
            path_result=path_result,
            headers=tuple((bytes(k), bytes(v)) for k, v in head.headers),
            keep_alive=keep_alive,
            http_version=head.http_version.decode("ascii"),
            raw_head=self._raw_head,
            raw_body=raw_body,
            body=bytes(self._body),
            dynamic=dynamic,
            error=error,
        )
        self._head = None
        self._raw_head = b""
        self._body = bytearray()
        self._current = request
        self.requests_parsed += 1
        return request

    def _fail(self, status: int, reason: str) -> ProtocolFailure:
        self._failure = ProtocolFailure(status, reason)
        return self._failure

    # ------------------------------------------------------------- sending

    def build_response_header(
        self,
        status: int,
        *,
        now_s: float | str,
        content_length: int | None,
        content_type: str | None = None,
        headers: Iterable[tuple[str | bytes, str | bytes]] = (),
        keep_alive: bool = True,
        head_only: bool | None = None,
        epoch_unix: int = LAB_EPOCH_UNIX,
    ) -> bytes:
        """Status line and headers, as bytes to send before the body.

        ``now_s`` is the virtual clock in seconds (or a ready Date string).
        ``head_only`` defaults to "the request was HEAD"; when given it must
        agree, because a HEAD response is framed as having no body. For HEAD,
        Content-Length still says what a GET would send.
        """
        if content_length is not None and (not isinstance(content_length, int) or content_length < 0):
            raise ValueError(f"content_length must be an int >= 0 (or None for a 304), got {content_length!r}")
        if not 200 <= status <= 599:
            raise ValueError(f"final response status must be 200..599, got {status}")
        is_head = self._cycle_method == b"HEAD"
        if head_only is not None and head_only != is_head:
            method = self._cycle_method.decode("ascii") if self._cycle_method else "none"
            raise HttpStateError(f"head_only={head_only} but the request method was {method}")
        date = now_s if isinstance(now_s, str) else http_date(now_s, epoch_unix)
        fields: list[tuple[str | bytes, str | bytes]] = [
            ("Server", SERVER_SOFTWARE),
            ("Date", date),
        ]
        if content_type is not None:
            fields.append(("Content-Type", content_type))
        if content_length is not None:
            fields.append(("Content-Length", str(content_length)))
        for name, value in headers:
            lowered = (name.encode("ascii") if isinstance(name, str) else name).lower()
            if lowered in _MANAGED_HEADERS:
                raise ValueError(f"header {name!r} is set by the connection itself")
            fields.append((name, value))
        if self._failure is not None or self._close_after_response:
            keep_alive = False
        # The parser swaps keep-alive for close when the client cannot keep alive.
        fields.append(("Connection", "keep-alive" if keep_alive else "close"))
        wire = self._send_response(status, fields)
        if self._http10_keep_alive and keep_alive:
            # HTTP/1.0 ends keep-alive unless both sides ask; this client asked, and so do we.
            wire = wire.replace(b"\r\nConnection: close\r\n", b"\r\nConnection: keep-alive\r\n", 1)
        else:
            self._http10_keep_alive = False
        return wire

    def _send_response(self, status: int, fields: list[tuple[str | bytes, str | bytes]]) -> bytes:
        # A whole header checked before (the same file within one virtual second): its fields as
        # they were checked, without a lookup per field.
        key = tuple(fields)
        try:
            normalized = _CHECKED_HEADS.get(key)
        except TypeError:  # a bytearray value: checked, not remembered
            key, normalized = None, None
        if normalized is None:
            normalized = self._checked_fields(fields)
            if key is not None:
                if len(_CHECKED_HEADS) >= _CHECKED_HEADS_LIMIT:
                    _CHECKED_HEADS.clear()
                _CHECKED_HEADS[key] = normalized
        try:
            return self._p.send_response(status, _reason_bytes(status), list(normalized))
        except http1.ProtocolError as exc:
            raise HttpStateError(f"cannot send Response now: {exc}") from exc

    @staticmethod
    def _checked_fields(fields: list[tuple[str | bytes, str | bytes]]) -> list[tuple[bytes, bytes, bytes]]:
        """The response's fields as (raw name, lower-case name, value) bytes, checked; ValueError if bad."""
        checked = _CHECKED_FIELDS
        normalized = []
        framing = 0
        for field in fields:
            try:
                triple = checked.get(field)
            except TypeError:  # a bytearray value: checked, not remembered
                triple = None
            if triple is None:
                triple = _check_field(field)
            normalized.append(triple)
            if triple[1] in _FRAMING_FIELDS:
                framing += 1
        if framing > 1:  # several framing fields must also agree with each other
            try:
                normalized = http1.normalize_fields([(raw, value) for raw, _, value in normalized])
            except http1.ProtocolError as exc:
                raise ValueError(f"invalid response header: {exc}") from exc
        return normalized

    def body_passthrough(self, length: int) -> ZeroCopyBody:
        """Account for ``length`` body bytes that the driver sends from MDLs.

        May be called several times (one per MDL chain sent). Returns the
        placeholder the framing passed through, for the curious.
        """
        if not isinstance(length, int) or length < 0:
            raise ValueError(f"body length must be an int >= 0, got {length!r}")
        placeholder = ZeroCopyBody(length)
        pieces = self._send_data(placeholder)
        if len(pieces) != 1 or pieces[0] is not placeholder:
            # Only Content-Length framing sends a body verbatim; we always set it.
            self._p.send_failed()
            raise HttpStateError("response framing would wrap the body; zero copy impossible")
        return placeholder

    def body_bytes(self, data: bytes) -> bytes:
        """Frame a small in-memory body (error pages, relayed dynamic replies)."""
        return b"".join(self._send_data(bytes(data)))

    def _send_data(self, data: object) -> list:
        try:
            return self._p.send_data(data)
        except http1.ProtocolError as exc:
            raise HttpStateError(f"cannot send Data now: {exc}") from exc

    def end_response(self) -> bytes:
        """Finish the response; the returned bytes (b"" with Content-Length) go last."""
        try:
            tail = self._p.send_end_of_message()
        except http1.ProtocolError as exc:
            raise HttpStateError(f"cannot send EndOfMessage now: {exc}") from exc
        self.responses_completed += 1
        return tail

    def build_error_response(
        self,
        error: int | HttpError | ProtocolFailure,
        *,
        now_s: float | str,
        keep_alive: bool | None = None,
        headers: Iterable[tuple[str | bytes, str | bytes]] = (),
    ) -> bytes:
        """A whole error response (header, HTML body unless HEAD, end).

        405 carries ``Allow``. The connection stays open only for 404 and 405
        after a complete request, unless ``keep_alive`` says otherwise; it
        always closes after a ProtocolFailure. 503 with no request read is how
        the driver refuses a connection over its limit.
        """
        status = error if isinstance(error, int) else error.status
        if keep_alive is None:
            keep_alive = (
                not isinstance(error, ProtocolFailure)
                and self._failure is None
                and status in _KEEP_ALIVE_ERRORS
            )
        extra = list(headers)
        if status == 405:
            dynamic = self._current is not None and self._current.dynamic
            extra.append(("Allow", ", ".join(DYNAMIC_METHODS if dynamic else STATIC_METHODS)))
        body = error_body(status)
        head = self.build_response_header(
            status,
            now_s=now_s,
            content_length=len(body),
            content_type="text/html; charset=utf-8",
            headers=extra,
            keep_alive=keep_alive,
        )
        is_head = self._cycle_method == b"HEAD"
        sent_body = b"" if is_head else self.body_bytes(body)
        return head + sent_body + self.end_response()

    # ------------------------------------------------------- cycle control

    def start_next_cycle(self) -> None:
        """After a keep-alive response: get ready to parse the next request."""
        if self.should_close:
            raise HttpStateError("connection must close; no next cycle")
        parser = self._p
        if self._http10_keep_alive:
            # HTTP/1.0 ended in MUST_CLOSE: a fresh parser takes the bytes not parsed yet.
            if parser.server != http1.MUST_CLOSE:
                raise HttpStateError("response cycle not finished")
            self._p = Http1ServerParser(self._max_head_size)
            if parser.buffer:
                self._p.receive_data(bytes(parser.buffer))
            if self._peer_eof:
                self._p.receive_data(b"")
        else:
            try:
                parser.start_next_cycle()
            except http1.ProtocolError as exc:
                raise HttpStateError(f"response cycle not finished: {exc}") from exc
        self._current = None
        self._cycle_method = None
        self._http10_keep_alive = False
        self._close_after_response = False

    @property
    def should_close(self) -> bool:
        """True when the connection must be closed once the current response is sent."""
        if self._failure is not None or self._close_after_response:
            return True
        parser = self._p
        if self._http10_keep_alive and parser.server == http1.MUST_CLOSE and parser.client == http1.MUST_CLOSE:
            return False  # a finished HTTP/1.0 keep-alive exchange: start_next_cycle goes on
        return parser.server in _CLOSING or parser.client in _CLOSING

    @property
    def current_request(self) -> Request | None:
        """The request being answered, until start_next_cycle()."""
        return self._current

    @property
    def failure(self) -> ProtocolFailure | None:
        return self._failure

    @property
    def buffered_bytes(self) -> int:
        """Received bytes not yet parsed into a whole request (pipelined requests wait here)."""
        return len(self._p.buffer) + self._p.consumed_bytes

    @property
    def states(self) -> dict[str, str]:
        """The client's and the server's HTTP/1.1 states by name (h11's names), for the debugger."""
        return {"client": self._p.client, "server": self._p.server}


_CLOSING: Final = (http1.MUST_CLOSE, http1.CLOSED, http1.ERROR)
