"""khttpd's own HTTP/1.1 message parser and connection state machine (RFC 9112), server side.

A kernel-mode web server does not parse requests with a general-purpose user-mode library:
http.sys and the Linux khttpd/TUX each carry a small parser of their own for exactly what a
server reads (a request head, a Content-Length or chunked body) and writes (a response head,
a body of known length).  This is that parser for khttpd, written to be exactly as strict as
the h11 library it replaced — the same grammar, the same status for each malformed request,
the same connection states — which ``tests/stack/drivers/test_khttpd_http1_conformance.py``
holds it to byte for byte, split at every offset.

What goes in and comes out::

    p = Http1ServerParser(max_head_size)
    p.receive_data(data)              # b"" is the peer's FIN
    p.next_event()                    # RequestHead | bytearray (body data) | END_OF_MESSAGE |
                                      # CONNECTION_CLOSED | NEED_DATA | PAUSED; or ProtocolError
    p.send_response(status, reason, fields) -> bytes     # the response head
    p.send_data(data) -> list          # the body pieces to send: [data] with Content-Length
    p.send_end_of_message() -> bytes
    p.start_next_cycle()              # after DONE/DONE, for keep-alive

The two parties' states are h11's names (a reader of `!khttpd` or of h11's documentation sees
the same diagram): the client goes IDLE -> SEND_BODY -> DONE, the server IDLE -> SEND_RESPONSE
-> SEND_BODY -> DONE; either may become MUST_CLOSE, CLOSED or ERROR.  The tables below are the
whole diagram.

Rules a reader must know (RFC 9112 and RFC 9110, as h11 applies them):
- the head ends at the first empty line; lines end in LF with an optional CR before it; a line
  starting with a space or tab continues the field before it (obs-fold, unfolded with a space);
- Content-Length must be digits (repeats of one value collapse; different values are 400);
  Transfer-Encoding other than exactly ``chunked``, or twice, is 501; with both, chunked wins;
- HTTP/1.1 needs exactly one Host field; any request with two is 400;
- ``Connection: close`` or an HTTP/1.0 request ends keep-alive; ``Upgrade`` or CONNECT pauses the
  parser until the response says whether the protocol switches;
- a partial head over ``max_head_size`` bytes is 431, a FIN inside a message 400.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

# -- the grammar (RFC 9110 §5.6.2 token, §5.5 field values; RFC 9112 §3 request line) --------------
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_FIELD_VCHAR = rb"[^\x00\s]"
_FIELD_VALUE = rb"(?:" + _FIELD_VCHAR + rb"+(?:[ \t]+" + _FIELD_VCHAR + rb"+)*)?"
_HEADER_FIELD_RE: Final = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _FIELD_VALUE + rb")[ \t]*")
_REQUEST_LINE_RE: Final = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9]\.[0-9])")
_FIELD_NAME_RE: Final = re.compile(_TOKEN)
_FIELD_VALUE_RE: Final = re.compile(_FIELD_VALUE)
_OBS_FOLD_RE: Final = re.compile(rb"[ \t]+")
_CHUNK_HEADER_RE: Final = re.compile(rb"([0-9A-Fa-f]{1,20})(;.*)?[ \t]*\r\n")
_CONTENT_LENGTH_RE: Final = re.compile(rb"[0-9]+")
_CONTENT_LENGTH_MAX_DIGITS: Final = 20
_BLANK_LINE_RE: Final = re.compile(rb"\n\r?\n")

# -- states (h11's names) -------------------------------------------------------------------------
IDLE: Final = "IDLE"
SEND_RESPONSE: Final = "SEND_RESPONSE"
SEND_BODY: Final = "SEND_BODY"
DONE: Final = "DONE"
MUST_CLOSE: Final = "MUST_CLOSE"
CLOSED: Final = "CLOSED"
MIGHT_SWITCH_PROTOCOL: Final = "MIGHT_SWITCH_PROTOCOL"
SWITCHED_PROTOCOL: Final = "SWITCHED_PROTOCOL"
ERROR: Final = "ERROR"

# Event names, as the transition tables key them.
_REQUEST, _RESPONSE, _DATA, _EOM, _CLOSED = "Request", "Response", "Data", "EndOfMessage", "ConnectionClosed"
_SWITCH_UPGRADE, _SWITCH_CONNECT = "_SWITCH_UPGRADE", "_SWITCH_CONNECT"

# (state, event) -> next state, for each party; a missing pair is a protocol error.
_CLIENT_TRANSITIONS: Final[dict[str, dict[str, str]]] = {
    IDLE: {_REQUEST: SEND_BODY, _CLOSED: CLOSED},
    SEND_BODY: {_DATA: SEND_BODY, _EOM: DONE},
    DONE: {_CLOSED: CLOSED},
    MUST_CLOSE: {_CLOSED: CLOSED},
    CLOSED: {_CLOSED: CLOSED},
    MIGHT_SWITCH_PROTOCOL: {},
    SWITCHED_PROTOCOL: {},
    ERROR: {},
}
_SERVER_TRANSITIONS: Final[dict[str, dict[object, str]]] = {
    IDLE: {_CLOSED: CLOSED, _RESPONSE: SEND_BODY, (_REQUEST, "CLIENT"): SEND_RESPONSE},
    SEND_RESPONSE: {_RESPONSE: SEND_BODY, (_RESPONSE, _SWITCH_CONNECT): SWITCHED_PROTOCOL},
    SEND_BODY: {_DATA: SEND_BODY, _EOM: DONE},
    DONE: {_CLOSED: CLOSED},
    MUST_CLOSE: {_CLOSED: CLOSED},
    CLOSED: {_CLOSED: CLOSED},
    SWITCHED_PROTOCOL: {},
    ERROR: {},
}
# (client, server) -> what changes when both stand so.
_JOINT_TRANSITIONS: Final[dict[tuple[str, str], tuple[str | None, str | None]]] = {
    (MIGHT_SWITCH_PROTOCOL, SWITCHED_PROTOCOL): (SWITCHED_PROTOCOL, None),
    (CLOSED, DONE): (None, MUST_CLOSE),
    (CLOSED, IDLE): (None, MUST_CLOSE),
    (ERROR, DONE): (None, MUST_CLOSE),
    (DONE, CLOSED): (MUST_CLOSE, None),
    (IDLE, CLOSED): (MUST_CLOSE, None),
    (DONE, ERROR): (MUST_CLOSE, None),
}


class ProtocolError(Exception):
    """The peer (or, sending, the server itself) broke the protocol; `status` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class RequestHead(NamedTuple):
    """A parsed request line and header fields (names lower-cased, Content-Length and
    Transfer-Encoding values normalised)."""

    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    http_version: bytes


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA: Final = _Marker("NEED_DATA")
PAUSED: Final = _Marker("PAUSED")
END_OF_MESSAGE: Final = _Marker("EndOfMessage")
CONNECTION_CLOSED: Final = _Marker("ConnectionClosed")


# The request fields that decide framing, keep-alive and protocol switches.
_CONNECTION_FIELDS: Final = frozenset({b"connection", b"upgrade", b"transfer-encoding", b"content-length"})


def _comma_values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """The lower-cased, comma-separated values of every `name` field (Connection, Upgrade...)."""
    out = []
    for field, value in headers:
        if field == name:
            for item in value.lower().split(b","):
                item = item.strip()
                if item:
                    out.append(item)
    return out


def normalize_fields(fields: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes, bytes]]:
    """(raw name, lower name, value) for each field, with RFC 9112 §6's framing rules applied:
    one Content-Length value (digits), Transfer-Encoding only ``chunked`` and only once."""
    out = []
    seen_length = None
    saw_transfer_encoding = False
    for raw, value in fields:
        name = raw.lower()
        if name == b"content-length":
            lengths = {length.strip() for length in value.split(b",")}
            if len(lengths) != 1:
                raise ProtocolError("conflicting Content-Length headers")
            value = lengths.pop()
            if not _CONTENT_LENGTH_RE.fullmatch(value) or len(value) > _CONTENT_LENGTH_MAX_DIGITS:
                raise ProtocolError("bad Content-Length")
            if seen_length is None:
                seen_length = value
                out.append((raw, name, value))
            elif seen_length != value:
                raise ProtocolError("conflicting Content-Length headers")
        elif name == b"transfer-encoding":
            if saw_transfer_encoding:
                raise ProtocolError("multiple Transfer-Encoding headers", 501)
            value = value.lower()
            if value != b"chunked":
                raise ProtocolError("Only Transfer-Encoding: chunked is supported", 501)
            saw_transfer_encoding = True
            out.append((raw, name, value))
        else:
            out.append((raw, name, value))
    return out


def _decode_fields(lines: list[bytearray]) -> list[tuple[bytes, bytes]]:
    """Header lines -> (name, value), obs-fold lines joined to the field before them."""
    folded: list[bytearray] = []
    for line in lines:
        match = _OBS_FOLD_RE.match(line)
        if match:
            if not folded:
                raise ProtocolError("continuation line at start of headers")
            folded[-1] += b" "
            folded[-1] += line[match.end():]
        else:
            folded.append(line)
    out = []
    for line in folded:
        match = _HEADER_FIELD_RE.fullmatch(line)
        if match is None:
            raise ProtocolError(f"illegal header line: {line!r}")
        out.append((match.group(1), match.group(2)))
    return out


def validate_response_field(name: bytes, value: bytes) -> None:
    """A response field the server is about to send must be a token and a field value."""
    if not _FIELD_NAME_RE.fullmatch(name):
        raise ProtocolError(f"Illegal header name {name!r}")
    if not _FIELD_VALUE_RE.fullmatch(value):
        raise ProtocolError(f"Illegal header value {value!r}")


class Http1ServerParser:
    """One connection's HTTP/1.1 state, server side (see the module docstring)."""

    def __init__(self, max_head_size: int) -> None:
        self.max_head_size = max_head_size
        self.buffer = bytearray()  # received and not yet parsed
        self.closed = False  # the peer's FIN arrived
        self._consumed: list[bytearray] = []  # parsed bytes not yet taken (take_consumed)
        self._consumed_len = 0  # their length: asked after every receive, and a body fed a byte at a time has many pieces
        self.client = IDLE
        self.server = IDLE
        self.keep_alive = True
        self._switch_proposals: set[str] = set()
        self.request_method: bytes | None = None
        self.client_http_version: bytes | None = None
        # Body framing, set on entering SEND_BODY: ("content-length", n) / ("chunked", 0) / ("http/1.0", 0)
        self._body_length = self._body_remaining = 0
        self._chunked = False
        self._chunk_left = 0
        self._chunk_discard = b""
        self._chunk_trailer = False
        self._send_framing = ""
        self._send_remaining = 0

    # -- the state machine --------------------------------------------------------------------------
    def _fire_state_transitions(self) -> None:
        if self.keep_alive and not self._switch_proposals and self.client != MIGHT_SWITCH_PROTOCOL and (
                (self.client, self.server) not in _JOINT_TRANSITIONS):
            return  # the usual case: nothing follows from the states as they stand
        while True:
            client, server = self.client, self.server
            if self._switch_proposals and self.client == DONE:
                self.client = MIGHT_SWITCH_PROTOCOL
            if not self._switch_proposals and self.client == MIGHT_SWITCH_PROTOCOL:
                self.client = DONE
            if not self.keep_alive:
                if self.client == DONE:
                    self.client = MUST_CLOSE
                if self.server == DONE:
                    self.server = MUST_CLOSE
            change = _JOINT_TRANSITIONS.get((self.client, self.server))
            if change is not None:
                self.client = change[0] or self.client
                self.server = change[1] or self.server
            if (self.client, self.server) == (client, server):
                return

    def _client_event(self, event: str) -> None:
        new = _CLIENT_TRANSITIONS[self.client].get(event)
        if new is None:
            raise ProtocolError(f"can't handle event type {event} when role=CLIENT and state={self.client}")
        self.client = new

    def _server_event(self, event: object) -> None:
        new = _SERVER_TRANSITIONS[self.server].get(event)
        if new is None:
            name = event[0] if isinstance(event, tuple) else event
            raise ProtocolError(f"can't handle event type {name} when role=SERVER and state={self.server}")
        self.server = new

    def _error(self, client: bool) -> None:
        if client:
            self.client = ERROR
        else:
            self.server = ERROR
        self._fire_state_transitions()

    # -- receiving ----------------------------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            if self.closed:
                raise RuntimeError("received close, then received more data?")
            self.buffer += data
        else:
            self.closed = True

    def next_event(self) -> object:
        """The next request head, body piece, END_OF_MESSAGE or CONNECTION_CLOSED; NEED_DATA or
        PAUSED; raises ProtocolError (and the client's state becomes ERROR)."""
        if self.client == ERROR:
            raise ProtocolError("Can't receive data when peer state is ERROR")
        try:
            event = self._extract_event()
            if event is NEED_DATA:
                if len(self.buffer) > self.max_head_size:
                    raise ProtocolError("Receive buffer too long", 431)
                if self.closed:
                    raise ProtocolError("peer unexpectedly closed connection")
            elif event is not PAUSED:
                self._process_client_event(event)
            return event
        except ProtocolError:
            self._error(client=True)
            raise

    def _extract_event(self) -> object:
        state = self.client
        buffer = self.buffer
        if state == DONE and buffer:
            return PAUSED
        if state == MIGHT_SWITCH_PROTOCOL or state == SWITCHED_PROTOCOL:
            return PAUSED
        if state == IDLE:
            event = self._read_head()
        elif state == SEND_BODY:
            event = self._read_body()
        else:  # DONE, MUST_CLOSE, CLOSED: nothing more may come
            if buffer:
                raise ProtocolError("Got data when expecting EOF")
            event = None
        if event is None:
            if not buffer and self.closed:
                if state == SEND_BODY:
                    if self._chunked:
                        raise ProtocolError("peer closed connection without sending complete message body "
                                            "(incomplete chunked read)")
                    raise ProtocolError("peer closed connection without sending complete message body "
                                        f"(received {self._body_length - self._body_remaining} bytes, "
                                        f"expected {self._body_length})")
                return CONNECTION_CLOSED
            return NEED_DATA
        return event

    def _take(self, count: int) -> bytearray:
        out = self.buffer[:count]
        del self.buffer[:count]
        self._consumed.append(out)
        self._consumed_len += len(out)
        return out

    @property
    def consumed_bytes(self) -> int:
        """How many parsed bytes wait in take_consumed (a body read so far)."""
        return self._consumed_len

    def take_consumed(self) -> bytes:
        """The raw bytes parsed since the last call (a request head, or a body with its framing)."""
        consumed = self._consumed
        raw = bytes(consumed[0]) if len(consumed) == 1 else b"".join(consumed)
        consumed.clear()
        self._consumed_len = 0
        return raw

    def _extract_lines(self) -> list[bytearray] | None:
        """Everything up to the first empty line, as lines without their CR LF (None: not yet)."""
        buffer = self.buffer
        if buffer[:1] == b"\n":
            self._take(1)
            return []
        if buffer[:2] == b"\r\n":
            self._take(2)
            return []
        match = _BLANK_LINE_RE.search(buffer)
        if match is None:
            return None
        lines = self._take(match.end()).split(b"\n")
        for line in lines:
            if line.endswith(b"\r"):
                del line[-1]
        del lines[-2:]
        return lines

    def _read_head(self) -> RequestHead | None:
        lines = self._extract_lines()
        if lines is None:
            if self.buffer and self.buffer[0] < 0x21:
                raise ProtocolError("illegal request line")
            return None
        if not lines:
            raise ProtocolError("no request line received")
        match = _REQUEST_LINE_RE.fullmatch(lines[0])
        if match is None:
            raise ProtocolError(f"illegal request line: {lines[0]!r}")
        method, target, version = match.groups()
        fields = normalize_fields(_decode_fields(lines[1:]))
        hosts = sum(1 for _, name, _ in fields if name == b"host")
        if version == b"1.1" and hosts == 0:
            raise ProtocolError("Missing mandatory Host: header")
        if hosts > 1:
            raise ProtocolError("Found multiple Host: headers")
        return RequestHead(method, target, [(name, value) for _, name, value in fields], version)

    def _process_client_event(self, event: object) -> None:
        if isinstance(event, RequestHead):
            fields = [field for field in event.headers if field[0] in _CONNECTION_FIELDS]
            if event.method == b"CONNECT":
                self._switch_proposals.add(_SWITCH_CONNECT)
                self._fire_state_transitions()
            if fields and _comma_values(fields, b"upgrade"):
                self._switch_proposals.add(_SWITCH_UPGRADE)
                self._fire_state_transitions()
            self._client_event(_REQUEST)
            self._server_event((_REQUEST, "CLIENT"))
            self._fire_state_transitions()
            self.request_method = event.method
            self.client_http_version = event.http_version
            if event.http_version < b"1.1" or (fields and b"close" in _comma_values(fields, b"connection")):
                self.keep_alive = False
                self._fire_state_transitions()
            self._start_request_body(fields)
        elif event is END_OF_MESSAGE:
            self._client_event(_EOM)
            self._fire_state_transitions()
        elif event is CONNECTION_CLOSED:
            self._client_event(_CLOSED)
            self._fire_state_transitions()
        else:  # body data
            self._client_event(_DATA)
            self._fire_state_transitions()

    def _start_request_body(self, headers: list[tuple[bytes, bytes]]) -> None:
        self._chunked = bool(headers) and bool(_comma_values(headers, b"transfer-encoding"))
        self._chunk_left, self._chunk_discard, self._chunk_trailer = 0, b"", False
        lengths = _comma_values(headers, b"content-length") if headers else None
        self._body_length = self._body_remaining = 0 if self._chunked or not lengths else int(lengths[0])

    def _read_body(self) -> object:
        if self._chunked:
            return self._read_chunked()
        if self._body_remaining == 0:
            return END_OF_MESSAGE
        data = self._take(self._body_remaining)
        if not data:
            return None
        self._body_remaining -= len(data)
        return data

    def _read_chunked(self) -> object:
        if self._chunk_trailer:
            lines = self._extract_lines()
            if lines is None:
                return None
            normalize_fields(_decode_fields(lines))  # trailer fields obey the framing rules too
            return END_OF_MESSAGE
        if self._chunk_discard:
            data = self._take(len(self._chunk_discard))
            if not data:
                return None
            if data != self._chunk_discard[:len(data)]:
                raise ProtocolError(f"malformed chunk footer: {data!r} (expected {self._chunk_discard!r})")
            self._chunk_discard = self._chunk_discard[len(data):]
            if self._chunk_discard:
                return None
        if self._chunk_left == 0:
            end = self.buffer.find(b"\r\n")
            if end == -1:
                return None
            header = self._take(end + 2)
            match = _CHUNK_HEADER_RE.fullmatch(header)
            if match is None:
                raise ProtocolError(f"illegal chunk header: {header!r}")
            self._chunk_left = int(match.group(1), 16)
            if self._chunk_left == 0:
                self._chunk_trailer = True
                return self._read_chunked()
        data = self._take(self._chunk_left)
        if not data:
            return None
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            self._chunk_discard = b"\r\n"
        return data

    # -- sending ------------------------------------------------------------------------------------
    def send_response(self, status: int, reason: bytes, fields: list[tuple[bytes, bytes, bytes]]) -> bytes:
        """The status line and header fields (from `normalize_fields`, their names and values
        checked with `validate_response_field` by the caller).  Connection:
        close replaces keep-alive when the connection cannot be kept (RFC 9112 §9.6)."""
        if self.server == ERROR:
            raise ProtocolError("Can't send data when our state is ERROR")
        try:
            return self._send_response(status, reason, fields)
        except ProtocolError:
            self._error(client=False)
            raise

    def _send_response(self, status: int, reason: bytes, fields: list[tuple[bytes, bytes, bytes]]) -> bytes:
        method = self.request_method
        length: bytes | None = None  # the Content-Length value, if any
        chunked = False
        connection: list[tuple[bytes, bytes]] = []
        for _, name, value in fields:  # one pass: the fields that frame the body and the connection
            if name == b"content-length":
                if length is None:
                    length = value
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"connection":
                connection.append((name, value))
        # Framed as a GET would be (a HEAD answer says what the GET would send).
        framing, _ = self._body_framing(b"GET" if method == b"HEAD" else method, status, chunked, length)
        need_close = False
        if framing == "chunked" or framing == "http/1.0":
            fields = [field for field in fields if field[1] != b"content-length" and field[1] != b"transfer-encoding"]
            length, chunked = None, False
            if self.client_http_version is None or self.client_http_version < b"1.1":
                if method != b"HEAD":
                    need_close = True
            else:
                fields.append((b"Transfer-Encoding", b"transfer-encoding", b"chunked"))
                chunked = True
        if not self.keep_alive or need_close:
            tokens = set(_comma_values(connection, b"connection"))
            tokens.discard(b"keep-alive")
            tokens.add(b"close")
            fields = [field for field in fields if field[1] != b"connection"]
            connection = [(b"connection", token) for token in sorted(tokens)]
            fields += [(b"Connection", b"connection", token) for token in sorted(tokens)]
        # The state machine first (a Response in the wrong state changes nothing), then the bytes.
        switch = _SWITCH_CONNECT in self._switch_proposals and 200 <= status < 300
        if not switch:
            self._switch_proposals = set()
        self._server_event((_RESPONSE, _SWITCH_CONNECT) if switch else _RESPONSE)
        self._fire_state_transitions()
        if connection and b"close" in _comma_values(connection, b"connection"):
            self.keep_alive = False
            self._fire_state_transitions()
        if self.server == SEND_BODY:
            self._send_framing, self._send_remaining = self._body_framing(method, status, chunked, length)
        wire = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        hosts = [b"%s: %s\r\n" % (raw, value) for raw, name, value in fields if name == b"host"]
        if hosts:  # a Host field goes first, as h11 writes it
            wire += hosts
            wire += [b"%s: %s\r\n" % (raw, value) for raw, name, value in fields if name != b"host"]
        else:
            wire += [b"%s: %s\r\n" % (raw, value) for raw, _, value in fields]
        wire.append(b"\r\n")
        return b"".join(wire)

    @staticmethod
    def _body_framing(method: bytes | None, status: int, chunked: bool, length: bytes | None) -> tuple[str, int]:
        """RFC 9112 §6.3: how the response body is delimited (and its length)."""
        if status == 204 or status == 304 or method == b"HEAD" or (method == b"CONNECT" and 200 <= status < 300):
            return "content-length", 0
        if chunked:
            return "chunked", 0
        if length is not None:
            return "content-length", int(length)
        return "http/1.0", 0

    def send_data(self, data: bytes | object) -> list:
        """The pieces that carry `data` (anything with a length) as body bytes."""
        if self.server == ERROR:
            raise ProtocolError("Can't send data when our state is ERROR")
        try:
            self._server_event(_DATA)
            self._fire_state_transitions()
            framing = self._send_framing
            length = len(data)  # type: ignore[arg-type]
            if framing == "content-length":
                self._send_remaining -= length
                if self._send_remaining < 0:
                    raise ProtocolError("Too much data for declared Content-Length")
                return [data]
            if framing == "chunked":
                return [b"%x\r\n" % length, data, b"\r\n"] if length else []
            return [data]
        except ProtocolError:
            self._error(client=False)
            raise

    def send_end_of_message(self) -> bytes:
        if self.server == ERROR:
            raise ProtocolError("Can't send data when our state is ERROR")
        try:
            framing = self._send_framing if self.server == SEND_BODY else ""
            self._server_event(_EOM)
            self._fire_state_transitions()
            if framing == "content-length" and self._send_remaining != 0:
                raise ProtocolError("Too little data for declared Content-Length")
            return b"0\r\n\r\n" if framing == "chunked" else b""
        except ProtocolError:
            self._error(client=False)
            raise

    def send_failed(self) -> None:
        self._error(client=False)

    def start_next_cycle(self) -> None:
        if (self.client, self.server) != (DONE, DONE):
            raise ProtocolError(f"not in a reusable state. self.states={{CLIENT: {self.client}, "
                                f"SERVER: {self.server}}}")
        self.client = self.server = IDLE
        self.request_method = None
        self.client_http_version = None
