"""khttpd's HTTP connection as it was over the h11 library: the oracle the conformance test holds
khttpd's own parser (stack/drivers/khttpd/http1.py) to.  Only the class body is kept; the request,
failure and marker types are the driver's, so results compare with ==."""

from __future__ import annotations

from collections.abc import Collection, Iterable

import h11

from stack.drivers.khttpd.accesslog import LAB_EPOCH_UNIX
from stack.drivers.khttpd.http import (
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
    SERVER_SOFTWARE,
    STATIC_METHODS,
    HttpStateError,
    NeedData,
    Paused,
    PeerClosed,
    ProtocolFailure,
    Request,
    ZeroCopyBody,
    error_body,
    http_date,
    is_dynamic,
    reason_phrase,
)
from stack.drivers.khttpd.paths import (
    MAX_TARGET_LENGTH,
    DocrootLookup,
    HttpError,
    ResolvedPath,
    docroot_has,
    normalize_request_target,
)


# Validated response heads by (status, fields): the same file served again within one second of
# virtual time has the same head, and h11 validates every field of a new Response.  Events are
# immutable, so one can be sent any number of times.
_RESPONSE_EVENTS: dict[tuple, h11.Response] = {}
_RESPONSE_EVENTS_LIMIT = 256


def _response_event(status: int, fields: list[tuple[str | bytes, str | bytes]]) -> h11.Response:
    key = (status, tuple(fields))
    response = _RESPONSE_EVENTS.get(key)
    if response is None:
        try:
            response = h11.Response(status_code=status, reason=reason_phrase(status), headers=fields)
        except h11.LocalProtocolError as exc:
            raise ValueError(f"invalid response header: {exc}") from exc
        if len(_RESPONSE_EVENTS) >= _RESPONSE_EVENTS_LIMIT:
            _RESPONSE_EVENTS.clear()
        _RESPONSE_EVENTS[key] = response
    return response


def _state_name(state: object) -> str:
    return getattr(state, "__name__", repr(state))


class H11ServerConnection:
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
        # h11 raises 431 itself when an incomplete head outgrows this.
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_size)
        # Mirror of the bytes h11 holds but has not turned into events yet:
        # h11 does not hand back raw heads, and the dynamic relay needs them.
        self._unparsed = bytearray()
        self._peer_eof = False
        self._head: h11.Request | None = None
        self._raw_head = b""
        self._body = bytearray()
        self._failure: ProtocolFailure | None = None
        self._current: Request | None = None
        # Method of the head parsed in this cycle, known even when the request
        # failed before becoming a Request (h11 frames HEAD replies bodiless).
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
            self._h11.receive_data(b"")
            return
        if self._peer_eof:
            raise HttpStateError("data received after the peer closed its side")
        self._h11.receive_data(data)
        self._unparsed += data

    def next_request(self) -> Request | NeedData | Paused | PeerClosed | ProtocolFailure:
        """Parse as far as the buffered bytes allow.

        Returns a complete Request, NEED_DATA, PAUSED (the previous response is
        not finished), PEER_CLOSED (clean close between requests) or a
        ProtocolFailure. After a failure every call returns the same failure.
        """
        if self._failure is not None:
            return self._failure
        while True:
            if self._head is None and self._h11.their_state is h11.IDLE:
                if self._request_line_too_long():
                    return self._fail(414, "request line longer than the target limit")
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                return self._fail(exc.error_status_hint, str(exc))
            if event is h11.NEED_DATA:
                return NEED_DATA
            if event is h11.PAUSED:
                return PAUSED
            kind = type(event)
            if kind is h11.Request:
                failure = self._start_request(event)  # type: ignore[arg-type]
                if failure is not None:
                    return failure
            elif kind is h11.Data:
                self._body += event.data  # type: ignore[union-attr]
                if len(self._body) > self._max_body_size:
                    return self._fail(413, f"request body over {self._max_body_size} bytes")
            elif kind is h11.EndOfMessage:
                return self._finish_request()
            elif kind is h11.ConnectionClosed:
                return PEER_CLOSED

    def _request_line_too_long(self) -> bool:
        window = self._max_target_length + _REQUEST_LINE_SLACK
        if len(self._unparsed) <= window:
            return False
        return self._unparsed.find(b"\n", 0, window) == -1

    def _take_parsed_bytes(self) -> bytes:
        """Cut from the mirror the bytes h11 consumed for the last event."""
        remaining = len(self._h11.trailing_data[0])
        consumed = len(self._unparsed) - remaining
        taken = bytes(self._unparsed[:consumed])
        del self._unparsed[:consumed]
        return taken

    def _start_request(self, head: h11.Request) -> ProtocolFailure | None:
        self._head = head
        self._cycle_method = bytes(head.method)
        self._raw_head = self._take_parsed_bytes()
        self._body = bytearray()
        # h11 only bounds heads that arrive in pieces; a whole one can be huge.
        if len(self._raw_head) > self._max_head_size:
            return self._fail(431, f"request head over {self._max_head_size} bytes")
        if not head.http_version.startswith(b"1."):
            return self._fail(505, f"HTTP/{head.http_version.decode('ascii')} not supported")
        names = {name for name, _ in head.headers}
        self._close_after_response = b"content-length" in names and b"transfer-encoding" in names
        return None

    def _finish_request(self) -> Request:
        head = self._head
        assert head is not None, "h11 ends a message only after starting one"
        raw_body = self._take_parsed_bytes()
        method = head.method.decode("ascii")  # h11 guarantees a token
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
        agree, because h11 frames a HEAD response as having no body. For HEAD,
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
        # h11 swaps keep-alive for close when the client cannot keep alive.
        fields.append(("Connection", "keep-alive" if keep_alive else "close"))
        response = _response_event(status, fields)
        wire = b"".join(self._send(response))
        if self._http10_keep_alive and keep_alive:
            # h11 closes every HTTP/1.0 connection; this one the client asked to keep.
            wire = wire.replace(b"\r\nConnection: close\r\n", b"\r\nConnection: keep-alive\r\n", 1)
        else:
            self._http10_keep_alive = False
        return wire

    def body_passthrough(self, length: int) -> ZeroCopyBody:
        """Account for ``length`` body bytes that the driver sends from MDLs.

        May be called several times (one per MDL chain sent). Returns the
        placeholder h11 passed through, for the curious.
        """
        if not isinstance(length, int) or length < 0:
            raise ValueError(f"body length must be an int >= 0, got {length!r}")
        placeholder = ZeroCopyBody(length)
        pieces = self._send(h11.Data(data=placeholder))  # type: ignore[arg-type]
        if len(pieces) != 1 or pieces[0] is not placeholder:
            # Only Content-Length framing sends a body verbatim; we always set it.
            self._h11.send_failed()
            raise HttpStateError("response framing would wrap the body; zero copy impossible")
        return placeholder

    def body_bytes(self, data: bytes) -> bytes:
        """Frame a small in-memory body (error pages, relayed dynamic replies)."""
        return b"".join(self._send(h11.Data(data=bytes(data))))

    def end_response(self) -> bytes:
        """Finish the response; the returned bytes (b"" with Content-Length) go last."""
        tail = b"".join(self._send(h11.EndOfMessage()))
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

    def _send(self, event: h11.Event) -> list[bytes]:
        try:
            pieces = self._h11.send_with_data_passthrough(event)
        except h11.LocalProtocolError as exc:
            raise HttpStateError(f"cannot send {type(event).__name__} now: {exc}") from exc
        return pieces or []

    # ------------------------------------------------------- cycle control

    def start_next_cycle(self) -> None:
        """After a keep-alive response: get ready to parse the next request."""
        if self.should_close:
            raise HttpStateError("connection must close; no next cycle")
        if self._http10_keep_alive:
            # h11 ended in MUST_CLOSE: a fresh parser takes the bytes it had not used yet.
            if self._h11.our_state is not h11.MUST_CLOSE:
                raise HttpStateError("response cycle not finished")
            self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_head_size)
            if self._unparsed:
                self._h11.receive_data(bytes(self._unparsed))
            if self._peer_eof:
                self._h11.receive_data(b"")
        else:
            try:
                self._h11.start_next_cycle()
            except h11.LocalProtocolError as exc:
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
        if self._http10_keep_alive and self._h11.our_state is h11.MUST_CLOSE \
                and self._h11.their_state is h11.MUST_CLOSE:
            return False  # a finished HTTP/1.0 keep-alive exchange: start_next_cycle goes on
        closing = (h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)
        return self._h11.our_state in closing or self._h11.their_state in closing

    @property
    def current_request(self) -> Request | None:
        """The request being answered, until start_next_cycle()."""
        return self._current

    @property
    def failure(self) -> ProtocolFailure | None:
        return self._failure

    @property
    def buffered_bytes(self) -> int:
        """Received bytes not yet parsed (pipelined requests wait here)."""
        return len(self._unparsed)

    @property
    def states(self) -> dict[str, str]:
        """h11's client and server states by name, for the debugger."""
        return {
            "client": _state_name(self._h11.their_state),
            "server": _state_name(self._h11.our_state),
        }
