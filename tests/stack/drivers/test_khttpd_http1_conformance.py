"""khttpd's own HTTP/1.1 parser (stack/drivers/khttpd/http1.py) against h11, the library it replaced.

Each byte stream below — well-formed requests, malformed ones, request smuggling, oversized heads,
chunked and Content-Length bodies, pipelining, HTTP/1.0 keep-alive, Upgrade and CONNECT, FIN in
the middle — is fed to the driver's connection and to the same connection over h11
(khttpd_h11_reference.py), whole, split at every offset, and in arbitrary pieces.  Both are driven
the way the driver drives them (answer each request, start the next cycle while the connection
may stay open) and must agree on everything: each request, each failure's status and reason,
every response byte, every state-machine error, the connection states and what stays buffered.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.drivers.khttpd.http import HttpServerConnection, HttpStateError, ProtocolFailure, Request
from tests.stack.drivers.khttpd_h11_reference import H11ServerConnection

DOCROOT = {"index.html": b"<html></html>", "about.txt": b"about", "files/4KB.bin": b""}
HOST = b"Host: 10.0.0.1\r\n"

CORPUS: list[bytes] = [
    # well formed
    b"GET /index.html HTTP/1.1\r\n" + HOST + b"\r\n",
    b"HEAD /index.html HTTP/1.1\r\n" + HOST + b"\r\n",
    b"GET /index.html HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n",
    b"GET /index.html HTTP/1.1\r\n" + HOST + b"Connection: keep-alive, Close\r\n\r\n",
    b"GET /index.html HTTP/1.0\r\n\r\n",
    b"GET /index.html HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /about.txt HTTP/1.0\r\n"
    b"Connection: keep-alive\r\n\r\n",
    b"GET /index.html HTTP/1.1\n" + b"Host: h\n\n",
    b"GET /index.html HTTP/1.1\r\nHost:h\r\nX-Folded: a\r\n  b\r\n\tc\r\n\r\n",
    b"GET /index.html HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Spaces:   v  \r\n\r\n",
    b"GET http://10.0.0.1/about.txt HTTP/1.1\r\n" + HOST + b"\r\n",
    b"GET /missing.txt HTTP/1.1\r\n" + HOST + b"\r\nGET /index.html HTTP/1.1\r\n" + HOST + b"\r\n",
    b"DELETE /index.html HTTP/1.1\r\n" + HOST + b"\r\nGET /about.txt HTTP/1.1\r\n" + HOST + b"\r\n",
    b"GET /index.html HTTP/1.1\r\n" + HOST + b"\r\nGET /about.txt HTTP/1.1\r\n" + HOST + b"\r\n",
    b"GET /index.html HTTP/1.2\r\n\r\n",
    b"POST /app/x HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\n\r\nhelloGET /index.html HTTP/1.1\r\n" + HOST
    + b"\r\n",
    b"POST /app/x HTTP/1.1\r\n" + HOST + b"Content-Length: 5, 5\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /app/x HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: Chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n3  \r\n abc\r\n0\r\nX-Trailer: t\r\n\r\n",
    b"POST /app/x HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /index.html HTTP/1.1\r\n" + HOST + b"Content-Length: 3\r\n\r\nabc",
    b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /index.html HTTP/1.1\r\n"
    b"Host: h\r\n\r\n",
    b"CONNECT 10.0.0.1:443 HTTP/1.1\r\n" + HOST + b"\r\n",
    b"\r\nGET /index.html HTTP/1.1\r\n" + HOST + b"\r\n",
    # malformed: the request line
    b"\nGET / HTTP/1.1\r\n\r\n",
    b" GET / HTTP/1.1\r\n\r\n",
    b"GET  / HTTP/1.1\r\n" + HOST + b"\r\n",
    b"GET / HTTP/1.1 \r\n" + HOST + b"\r\n",
    b"GET /\x7f HTTP/1.1\r\n" + HOST + b"\r\n",
    b"GET / HTTP/11\r\n" + HOST + b"\r\n",
    b"GE(T / HTTP/1.1\r\n" + HOST + b"\r\n",
    b"GET / HTTP/2.0\r\n" + HOST + b"\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
    b"GET /../../etc/passwd HTTP/1.1\r\n" + HOST + b"\r\n",
    b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\n" + HOST + b"\r\n",
    b"GET /index.html%00.txt HTTP/1.1\r\n" + HOST + b"\r\n",
    # malformed: header fields
    b"GET / HTTP/1.1\r\n  Host: h\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nBad\x01Name: v\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"v" * 20000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X-Filler: 0123456789abcdef\r\n" * 700,
    # request smuggling and body framing
    b"POST /app/x HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /app/x HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"POST /app/x HTTP/1.1\r\n" + HOST + b"Content-Length: 5, 6\r\n\r\nhello!",
    b"POST /app/x HTTP/1.1\r\n" + HOST + b"Content-Length: -5\r\n\r\n",
    b"POST /app/x HTTP/1.1\r\n" + HOST + b"Content-Length: 0x10\r\n\r\n",
    b"POST /app/x HTTP/1.1\r\n" + HOST + b"Content-Length: 123456789012345678901\r\n\r\n",
    b"POST /app/x HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: gzip, chunked\r\n\r\n",
    b"POST /app/x HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST /app/x HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /app/x HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    b"POST /app/x HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: x\r\n\r\n",
    b"POST /app/x HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n0\r\n  folded\r\n\r\n",
    b"POST /app/x HTTP/1.1\r\n" + HOST + b"Content-Length: 70000\r\n\r\n" + b"x" * 70000,
    b"POST /app/x HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 30 + b"\r\n",
    # garbage
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    b"\x00\x00\x00",
    b"hello world\r\n\r\n",
]


class Trace:
    """Drives one connection as the driver does and records everything it says."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.log: list[Any] = []
        self.done = False

    def _try(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            result = fn()
        except (HttpStateError, ValueError) as exc:
            self.log.append((what, type(exc).__name__, str(exc)))
            return None
        self.log.append((what, result))
        return result

    def feed(self, data: bytes) -> None:
        if self.done:
            return
        self._try("receive", lambda: self.conn.receive(data))
        self.pump()

    def pump(self) -> None:
        conn = self.conn
        while not self.done:
            item = conn.next_request()
            self.log.append(("item", item, conn.states, conn.buffered_bytes))
            if isinstance(item, ProtocolFailure):
                self._try("error", lambda: conn.build_error_response(item, now_s=1))
                self.log.append(("after", conn.states, conn.should_close))
                self.done = True
                return
            if not isinstance(item, Request):
                if item is not None and repr(item) != "NEED_DATA":
                    self.done = repr(item) == "PEER_CLOSED"
                return
            self.answer(item)
            self.log.append(("after", conn.states, conn.should_close, conn.buffered_bytes))
            if conn.should_close:
                self.done = True
                return
            self._try("next", conn.start_next_cycle)

    def answer(self, req: Request) -> None:
        conn = self.conn
        if req.error is not None:
            self._try("error", lambda: conn.build_error_response(req.error, now_s=1))
        elif req.dynamic:
            self._try("head", lambda: conn.build_response_header(200, now_s=1, content_length=2,
                                                                 keep_alive=req.keep_alive))
            if not req.head_only:
                self._try("body", lambda: conn.body_bytes(b"ok"))
            self._try("end", conn.end_response)
        else:
            self._try("head", lambda: conn.build_response_header(
                200, now_s=1, content_length=13, content_type="text/html", keep_alive=req.keep_alive,
                headers=[("Accept-Ranges", "bytes"), (b"ETag", b'"abc"')]))
            if not req.head_only:
                self._try("pass", lambda: len(conn.body_passthrough(13)))
            self._try("end", conn.end_response)


def _both(pieces: list[bytes], eof: bool) -> tuple[Trace, Trace]:
    ours, theirs = Trace(HttpServerConnection(DOCROOT)), Trace(H11ServerConnection(DOCROOT))
    for piece in pieces:
        ours.feed(piece)
        theirs.feed(piece)
    if eof:
        ours.feed(b"")
        theirs.feed(b"")
    return ours, theirs


@pytest.mark.parametrize("eof", [False, True])
@pytest.mark.parametrize("raw", CORPUS, ids=[f"corpus{i}" for i in range(len(CORPUS))])
def test_corpus_whole_and_split_at_every_offset_matches_h11(raw: bytes, eof: bool) -> None:
    offsets = range(1, len(raw)) if len(raw) < 400 else range(1, len(raw), max(1, len(raw) // 97))
    for pieces in [[raw]] + [[raw[:i], raw[i:]] for i in offsets]:
        ours, theirs = _both(pieces, eof)
        assert ours.log == theirs.log, pieces


def test_corpus_one_byte_at_a_time_matches_h11() -> None:
    for raw in CORPUS:
        if len(raw) > 2000:
            continue
        ours, theirs = _both([raw[i:i + 1] for i in range(len(raw))], eof=True)
        assert ours.log == theirs.log, raw


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(CORPUS), min_size=1, max_size=3), st.binary(max_size=40),
       st.integers(min_value=1, max_value=64), st.booleans())
def test_property_concatenated_requests_in_arbitrary_pieces_match_h11(
        requests: list[bytes], noise: bytes, size: int, eof: bool) -> None:
    raw = b"".join(requests) + noise
    ours, theirs = _both([raw[i:i + size] for i in range(0, len(raw), size)], eof)
    assert ours.log == theirs.log


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=1, max_value=40))
def test_property_arbitrary_bytes_match_h11(data: bytes, size: int) -> None:
    ours, theirs = _both([data[i:i + size] for i in range(0, len(data), size)], eof=True)
    assert ours.log == theirs.log


@pytest.mark.parametrize("calls", [
    ["pass"], ["end"], ["head", "head"], ["head", "end", "end"], ["head", "pass", "pass", "end"],
    ["head", "end", "next"], ["next"], ["head", "short", "end"], ["head", "fail", "end"],
])
def test_response_calls_out_of_order_fail_alike(calls: list[str]) -> None:
    """The state machine refuses the same misuse with the same error, and ends in the same state."""
    results = []
    for cls in (HttpServerConnection, H11ServerConnection):
        conn = cls(DOCROOT)
        conn.receive(b"GET /index.html HTTP/1.1\r\n" + HOST + b"\r\n")
        conn.next_request()
        log = []
        actions = {
            "head": lambda: conn.build_response_header(200, now_s=1, content_length=13),
            "pass": lambda: len(conn.body_passthrough(13)),
            "short": lambda: len(conn.body_passthrough(5)),
            "fail": lambda: conn.build_response_header(200, now_s=1, content_length=None),
            "end": conn.end_response,
            "next": conn.start_next_cycle,
        }
        for call in calls:
            try:
                log.append((call, actions[call]()))
            except (HttpStateError, ValueError) as exc:
                log.append((call, type(exc).__name__, str(exc)))
            log.append(conn.states)
        results.append(log)
    assert results[0] == results[1]


@pytest.mark.parametrize("version", [b"1.0", b"1.1"])
@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
@pytest.mark.parametrize("status", [200, 204, 304, 404])
def test_response_without_content_length_is_framed_like_h11(version: bytes, method: bytes, status: int) -> None:
    """No Content-Length: HTTP/1.1 gets chunked, HTTP/1.0 a body up to the close."""
    results = []
    for cls in (HttpServerConnection, H11ServerConnection):
        conn = cls(DOCROOT)
        conn.receive(method + b" /index.html HTTP/" + version + b"\r\n" + HOST + b"\r\n")
        conn.next_request()
        wire = conn.build_response_header(status, now_s=1, content_length=None,
                                          headers=[("X-A", "1"), ("Host", "h")])
        try:
            wire += conn.body_bytes(b"abc") + conn.end_response()
        except HttpStateError as exc:
            wire += str(exc).encode()
        results.append((wire, conn.states, conn.should_close))
    assert results[0] == results[1]


def test_invalid_response_header_values_are_value_errors_like_h11() -> None:
    for name, value in [("Bad Name", "v"), ("X", "a\r\nb"), ("X", "\x00"), ("Ü", "v"), ("X", "ü")]:
        for cls in (HttpServerConnection, H11ServerConnection):
            conn = cls(DOCROOT)
            conn.receive(b"GET /index.html HTTP/1.1\r\n" + HOST + b"\r\n")
            conn.next_request()
            with pytest.raises(ValueError):
                conn.build_response_header(200, now_s=1, content_length=0, headers=[(name, value)])
            assert conn.states == {"client": "DONE", "server": "SEND_RESPONSE"}
