"""khttpd's sans-IO HTTP core: parsing, status codes, framing; MIME and access log."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.drivers.khttpd.accesslog import (
    AccessLog,
    AccessLogEntry,
    clf_date,
    format_clf,
)
from stack.drivers.khttpd.http import (
    NEED_DATA,
    PAUSED,
    PEER_CLOSED,
    HttpServerConnection,
    HttpStateError,
    ProtocolFailure,
    Request,
    ZeroCopyBody,
    error_body,
    http_date,
    is_dynamic,
)
from stack.drivers.khttpd.mime import DEFAULT_CONTENT_TYPE, content_type_for
from stack.drivers.khttpd.paths import HttpError, ResolvedPath
from stack.fs.docroot_manifest import docroot_files

DOCROOT = {"index.html": b"<html></html>", "about.txt": b"about", "files/4KB.bin": b""}
GET_INDEX = b"GET /index.html HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n"


def connection(**kwargs: object) -> HttpServerConnection:
    return HttpServerConnection(DOCROOT, **kwargs)  # type: ignore[arg-type]


def request_for(raw: bytes, conn: HttpServerConnection | None = None) -> Request:
    conn = conn or connection()
    conn.receive(raw)
    item = conn.next_request()
    assert isinstance(item, Request), item
    return item


def failure_for(raw: bytes, conn: HttpServerConnection | None = None) -> ProtocolFailure:
    conn = conn or connection()
    conn.receive(raw)
    item = conn.next_request()
    assert isinstance(item, ProtocolFailure), item
    return item


def serve_static(conn: HttpServerConnection, req: Request, size: int, now_s: float = 1) -> bytes:
    """What the driver does for a static file; returns header + tail bytes."""
    header = conn.build_response_header(
        200, now_s=now_s, content_length=size, content_type="text/html; charset=utf-8"
    )
    if not req.head_only:
        conn.body_passthrough(size)
    return header + conn.end_response()


def parse_response(wire: bytes, method: bytes = b"GET") -> tuple[h11.Response, bytes]:
    """Read our bytes back with an independent h11 client."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target=b"/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(wire)
    response = client.next_event()
    assert isinstance(response, h11.Response)
    body = b""
    while True:
        event = client.next_event()
        if isinstance(event, h11.Data):
            body += event.data
        else:
            assert isinstance(event, h11.EndOfMessage), event
            return response, body


def header_value(wire: bytes, name: bytes) -> bytes | None:
    head = wire.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        field, _, value = line.partition(b":")
        if field.lower() == name.lower():
            return value.strip()
    return None


# --------------------------------------------------------------- parsing


def test_get_request_is_parsed_and_resolved() -> None:
    req = request_for(GET_INDEX)
    assert req.method == "GET" and req.target == b"/index.html"
    assert req.http_version == "1.1" and req.keep_alive
    assert req.path_result == ResolvedPath("index.html", "/index.html", b"")
    assert req.error is None and not req.dynamic and not req.head_only
    assert req.header("HOST") == b"10.0.0.1"
    assert req.raw_head == GET_INDEX and req.raw_body == b""


def test_request_split_across_receives_needs_data_until_complete() -> None:
    conn = connection()
    for byte in GET_INDEX[:-1]:
        conn.receive(bytes([byte]))
        assert conn.next_request() is NEED_DATA
    conn.receive(memoryview(GET_INDEX[-1:]))
    req = conn.next_request()
    assert isinstance(req, Request) and req.raw_head == GET_INDEX


def test_pipelined_requests_are_paused_until_next_cycle_then_parsed_in_order() -> None:
    second = b"HEAD /about.txt HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n"
    third = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    conn = connection()
    conn.receive(GET_INDEX + second + third)
    first = conn.next_request()
    assert isinstance(first, Request) and first.raw_head == GET_INDEX
    assert conn.next_request() is PAUSED
    assert conn.buffered_bytes == len(second) + len(third)
    serve_static(conn, first, 10)
    conn.start_next_cycle()
    req2 = conn.next_request()
    assert isinstance(req2, Request) and req2.raw_head == second and req2.head_only
    serve_static(conn, req2, 5)
    conn.start_next_cycle()
    req3 = conn.next_request()
    assert isinstance(req3, Request) and req3.raw_head == third and not req3.keep_alive
    assert conn.should_close  # client asked to close after this response
    wire = serve_static(conn, req3, 13)
    assert header_value(wire, b"Connection") == b"close"
    with pytest.raises(HttpStateError):
        conn.start_next_cycle()
    assert conn.requests_parsed == 3 and conn.responses_completed == 3


def test_keep_alive_connection_serves_sequential_requests() -> None:
    conn = connection()
    for now in range(3):
        req = request_for(GET_INDEX, conn)
        wire = serve_static(conn, req, 13, now_s=now)
        assert header_value(wire, b"Connection") == b"keep-alive"
        assert not conn.should_close
        conn.start_next_cycle()
    assert conn.next_request() is NEED_DATA


def test_http_1_0_request_closes_after_response() -> None:
    conn = connection()
    req = request_for(b"GET /about.txt HTTP/1.0\r\n\r\n", conn)
    assert req.http_version == "1.0" and not req.keep_alive
    wire = serve_static(conn, req, 5)
    assert wire.startswith(b"HTTP/1.1 200 OK\r\n")
    assert header_value(wire, b"Connection") == b"close"
    assert conn.should_close


def test_peer_close_between_requests_is_reported() -> None:
    conn = connection()
    conn.receive(b"")
    assert conn.next_request() is PEER_CLOSED


def test_peer_close_mid_request_is_a_400_failure() -> None:
    conn = connection()
    conn.receive(GET_INDEX[:10])
    assert conn.next_request() is NEED_DATA
    conn.receive(b"")
    item = conn.next_request()
    assert isinstance(item, ProtocolFailure) and item.status == 400


def test_data_after_peer_close_is_a_state_error() -> None:
    conn = connection()
    conn.receive(b"")
    with pytest.raises(HttpStateError):
        conn.receive(b"GET")


def test_dynamic_post_body_and_raw_bytes_are_kept_for_the_relay() -> None:
    raw_head = b"POST /app/form HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    raw_body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    conn = connection()
    conn.receive(raw_head + raw_body[:7])
    assert conn.next_request() is NEED_DATA
    conn.receive(raw_body[7:] + GET_INDEX)
    req = conn.next_request()
    assert isinstance(req, Request) and req.dynamic and req.error is None
    assert req.raw_head == raw_head and req.raw_body == raw_body
    assert req.raw == raw_head + raw_body and req.body == b"hello world"
    assert conn.buffered_bytes == len(GET_INDEX)


def test_dynamic_request_with_content_length_body() -> None:
    raw = b"POST /cgi/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
    req = request_for(raw)
    assert req.dynamic and req.body == b"abc" and req.raw == raw
    assert req.path == ResolvedPath("cgi/echo", "/cgi/echo", b"")


def test_dynamic_response_body_can_be_framed_from_memory() -> None:
    conn = connection()
    request_for(b"GET /app/hello HTTP/1.1\r\nHost: h\r\n\r\n", conn)
    head = conn.build_response_header(200, now_s=0, content_length=2, content_type="text/plain")
    wire = head + conn.body_bytes(b"hi") + conn.end_response()
    response, body = parse_response(wire)
    assert response.status_code == 200 and body == b"hi"


def test_upgrade_request_is_answered_as_plain_http() -> None:
    conn = connection()
    req = request_for(
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", conn
    )
    serve_static(conn, req, 13)
    conn.start_next_cycle()
    assert isinstance(request_for(GET_INDEX, conn), Request)


@pytest.mark.parametrize(
    ("path", "dynamic"),
    [
        ("/app/hello", True),
        ("/app", True),
        ("/cgi/x/y", True),
        ("/page.dyn", True),
        ("/PAGE.DYN", True),
        ("/index.html", False),
        ("/application/x", False),
        ("/files/dyn", False),
    ],
)
def test_is_dynamic_by_prefix_or_extension(path: str, dynamic: bool) -> None:
    assert is_dynamic(path) is dynamic


# ------------------------------------------------------- response framing


def test_response_header_bytes_for_a_sample_are_exact() -> None:
    conn = connection()
    request_for(GET_INDEX, conn)
    header = conn.build_response_header(
        200, now_s=1, content_length=1234, content_type="text/html; charset=utf-8"
    )
    assert header == (
        b"HTTP/1.1 200 OK\r\n"
        b"Server: khttpd/1.0\r\n"
        b"Date: Thu, 01 Jan 2026 00:00:01 GMT\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n"
        b"Content-Length: 1234\r\n"
        b"Connection: keep-alive\r\n"
        b"\r\n"
    )


def test_extra_headers_come_before_connection_and_date_string_passes_through() -> None:
    conn = connection()
    request_for(GET_INDEX, conn)
    header = conn.build_response_header(
        200,
        now_s="Sun, 06 Nov 1994 08:49:37 GMT",
        content_length=0,
        headers=[("ETag", '"abc"')],
        keep_alive=False,
    )
    assert header == (
        b"HTTP/1.1 200 OK\r\nServer: khttpd/1.0\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        b'Content-Length: 0\r\nETag: "abc"\r\nConnection: close\r\n\r\n'
    )
    assert conn.should_close


def test_managed_headers_cannot_be_overridden() -> None:
    conn = connection()
    request_for(GET_INDEX, conn)
    with pytest.raises(ValueError):
        conn.build_response_header(200, now_s=0, content_length=1, headers=[("content-length", "9")])
    with pytest.raises(ValueError):
        conn.build_response_header(200, now_s=0, content_length=1, headers=[("X-Bad", "a\r\nb")])


def test_zero_copy_body_passes_through_h11_without_bytes() -> None:
    conn = connection()
    request_for(GET_INDEX, conn)
    header = conn.build_response_header(200, now_s=0, content_length=5000)
    first = conn.body_passthrough(4096)
    conn.body_passthrough(904)
    assert isinstance(first, ZeroCopyBody) and len(first) == 4096
    assert conn.end_response() == b""
    response, _ = parse_response(header + b"x" * 5000)
    assert response.status_code == 200


def test_body_longer_or_shorter_than_content_length_is_a_state_error() -> None:
    conn = connection()
    request_for(GET_INDEX, conn)
    conn.build_response_header(200, now_s=0, content_length=10)
    with pytest.raises(HttpStateError):
        conn.body_passthrough(11)
    assert conn.should_close  # the framing is broken: the connection cannot continue

    conn = connection()
    request_for(GET_INDEX, conn)
    conn.build_response_header(200, now_s=0, content_length=10)
    conn.body_passthrough(9)
    with pytest.raises(HttpStateError):
        conn.end_response()


def test_body_before_header_and_next_cycle_before_end_are_state_errors() -> None:
    conn = connection()
    request_for(GET_INDEX, conn)
    with pytest.raises(HttpStateError):
        conn.body_passthrough(1)

    conn = connection()
    request_for(GET_INDEX, conn)
    conn.build_response_header(200, now_s=0, content_length=0)
    with pytest.raises(HttpStateError):
        conn.start_next_cycle()


def test_bad_header_arguments_are_value_errors() -> None:
    conn = connection()
    request_for(GET_INDEX, conn)
    with pytest.raises(ValueError):
        conn.build_response_header(200, now_s=0, content_length=-1)
    with pytest.raises(ValueError):
        conn.build_response_header(100, now_s=0, content_length=0)
    with pytest.raises(ValueError):
        conn.build_response_header(200, now_s=-5, content_length=0)
    with pytest.raises(ValueError):
        conn.body_passthrough(-1)


def test_head_gets_the_headers_a_get_would_and_no_body() -> None:
    get_conn, head_conn = connection(), connection()
    get_req = request_for(GET_INDEX, get_conn)
    head_req = request_for(GET_INDEX.replace(b"GET", b"HEAD"), head_conn)
    assert head_req.head_only
    get_wire = serve_static(get_conn, get_req, 4096)
    head_header = head_conn.build_response_header(
        200, now_s=1, content_length=4096, content_type="text/html; charset=utf-8", head_only=True
    )
    assert head_header == get_wire
    with pytest.raises(HttpStateError):
        head_conn.body_passthrough(4096)


def test_head_only_flag_must_match_the_request_method() -> None:
    conn = connection()
    request_for(GET_INDEX, conn)
    with pytest.raises(HttpStateError):
        conn.build_response_header(200, now_s=0, content_length=1, head_only=True)


def test_head_error_response_has_no_body_but_full_length() -> None:
    conn = connection()
    req = request_for(b"HEAD /missing HTTP/1.1\r\nHost: h\r\n\r\n", conn)
    assert req.error is not None
    wire = conn.build_error_response(req.error, now_s=0)
    assert wire.endswith(b"\r\n\r\n")
    assert header_value(wire, b"Content-Length") == str(len(error_body(404))).encode()


# ------------------------------------------------------------ status codes


def test_404_for_a_file_not_in_the_docroot_keeps_the_connection() -> None:
    conn = connection()
    req = request_for(b"GET /missing.html HTTP/1.1\r\nHost: h\r\n\r\n", conn)
    assert req.error == HttpError(404, "/missing.html is not in the document root")
    assert req.path_result == req.error
    wire = conn.build_error_response(req.error, now_s=0)
    response, body = parse_response(wire)
    assert response.status_code == 404 and response.reason == b"Not Found"
    assert body == error_body(404) and b"<h1>404 Not Found</h1>" in body
    assert header_value(wire, b"Content-Type") == b"text/html; charset=utf-8"
    assert not conn.should_close
    conn.start_next_cycle()
    assert isinstance(request_for(GET_INDEX, conn), Request)


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"BREW"])
def test_methods_other_than_get_and_head_are_405_with_allow(method: bytes) -> None:
    conn = connection()
    req = request_for(method + b" /index.html HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", conn)
    assert req.error is not None and req.error.status == 405
    wire = conn.build_error_response(req.error, now_s=0)
    assert wire.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert header_value(wire, b"Allow") == b"GET, HEAD"
    assert not conn.should_close


def test_405_on_a_dynamic_path_allows_post_too() -> None:
    conn = connection()
    req = request_for(b"DELETE /app/x HTTP/1.1\r\nHost: h\r\n\r\n", conn)
    assert req.error is not None and req.error.status == 405
    wire = conn.build_error_response(req.error, now_s=0)
    assert header_value(wire, b"Allow") == b"GET, HEAD, POST"


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /index.html\r\nHost: h\r\n\r\n",
        b"GET  /index.html HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /index.html HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
        b"GET /index.html HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /index.html HTTP/1.1\r\nBad Header: x\r\nHost: h\r\n\r\n",
        b"\x16\x03\x01\x02\x00",  # a TLS ClientHello
        b"\r\n\r\n",
    ],
)
def test_malformed_request_is_400_and_closes(raw: bytes) -> None:
    conn = connection()
    failure = failure_for(raw, conn)
    assert failure.status == 400 and failure.phrase == "Bad Request"
    wire = conn.build_error_response(failure, now_s=0)
    assert wire.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert header_value(wire, b"Connection") == b"close"
    assert conn.should_close
    assert conn.next_request() is failure  # the failure sticks


def test_traversal_target_is_400_and_closes() -> None:
    conn = connection()
    req = request_for(b"GET /../../windows/system32/config/sam HTTP/1.1\r\nHost: h\r\n\r\n", conn)
    assert req.error is not None and req.error.status == 400
    wire = conn.build_error_response(req.error, now_s=0)
    assert header_value(wire, b"Connection") == b"close" and conn.should_close


def test_long_target_in_a_complete_request_is_414() -> None:
    target = b"/" + b"a" * 8200
    req = request_for(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    assert req.error is not None and req.error.status == 414


def test_request_line_growing_past_the_limit_is_414_before_it_ends() -> None:
    conn = connection()
    conn.receive(b"GET /" + b"a" * 4000)
    assert conn.next_request() is NEED_DATA
    conn.receive(b"a" * 5000)
    failure = conn.next_request()
    assert isinstance(failure, ProtocolFailure) and failure.status == 414
    wire = conn.build_error_response(failure, now_s=0)
    assert wire.startswith(b"HTTP/1.1 414 URI Too Long\r\n") and conn.should_close


def test_huge_headers_arriving_in_pieces_are_431() -> None:
    conn = connection()
    conn.receive(b"GET / HTTP/1.1\r\nHost: h\r\n")
    item = conn.next_request()
    for n in range(400):
        if item is not NEED_DATA:
            break
        conn.receive(b"X-Filler-%d: %s\r\n" % (n, b"v" * 64))
        item = conn.next_request()
    assert isinstance(item, ProtocolFailure) and item.status == 431
    wire = conn.build_error_response(item, now_s=0)
    assert wire.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


def test_huge_headers_arriving_at_once_are_431() -> None:
    filler = b"".join(b"X-F%d: %s\r\n" % (n, b"v" * 100) for n in range(200))
    failure = failure_for(b"GET / HTTP/1.1\r\nHost: h\r\n" + filler + b"\r\n")
    assert failure.status == 431


def test_head_limit_is_configurable() -> None:
    conn = connection(max_head_size=64)
    failure = failure_for(b"GET / HTTP/1.1\r\nHost: h\r\nX-Long: " + b"v" * 64 + b"\r\n\r\n", conn)
    assert failure.status == 431


@pytest.mark.parametrize("version", [b"2.0", b"0.9", b"3.0"])
def test_unsupported_http_version_is_505(version: bytes) -> None:
    conn = connection()
    failure = failure_for(b"GET / HTTP/" + version + b"\r\nHost: h\r\n\r\n", conn)
    assert failure.status == 505
    wire = conn.build_error_response(failure, now_s=0)
    assert wire.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n") and conn.should_close


@pytest.mark.parametrize(
    "raw",
    [
        b"HEAD / HTTP/2.0\r\nHost: h\r\n\r\n",
        b"HEAD / HTTP/1.1\r\nHost: h\r\nX: " + b"v" * 20000 + b"\r\n\r\n",
    ],
)
def test_failure_after_a_head_request_line_is_answered_without_body(raw: bytes) -> None:
    conn = connection()
    failure = failure_for(raw, conn)
    wire = conn.build_error_response(failure, now_s=0)
    assert wire.endswith(b"\r\n\r\n") and b"<html>" not in wire
    assert header_value(wire, b"Content-Length") == str(len(error_body(failure.status))).encode()


def test_oversized_request_body_is_413() -> None:
    conn = connection(max_body_size=8)
    failure = failure_for(b"POST /app/x HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n123456789", conn)
    assert failure.status == 413


def test_503_refuses_a_connection_before_any_request() -> None:
    conn = connection()
    wire = conn.build_error_response(503, now_s=0, headers=[("Retry-After", "1")])
    response, body = parse_response(wire)
    assert response.status_code == 503 and body == error_body(503)
    assert header_value(wire, b"Retry-After") == b"1"
    assert header_value(wire, b"Connection") == b"close" and conn.should_close


def test_error_page_never_echoes_request_data() -> None:
    conn = connection()
    req = request_for(b"GET /<script>x</script> HTTP/1.1\r\nHost: h\r\n\r\n", conn)
    wire = conn.build_error_response(req.error or 500, now_s=0)
    assert b"script" not in wire


def test_states_are_named_for_the_debugger() -> None:
    conn = connection()
    assert conn.states == {"client": "IDLE", "server": "IDLE"}
    request_for(GET_INDEX, conn)
    assert conn.states == {"client": "DONE", "server": "SEND_RESPONSE"}
    assert conn.current_request is not None and conn.failure is None


def test_the_shipped_docroot_serves_through_the_connection() -> None:
    conn = HttpServerConnection(docroot_files(), server_names={"10.0.0.1"})
    req = request_for(b"GET http://10.0.0.1/files/64KB.bin HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n", conn)
    assert req.error is None and req.path == ResolvedPath("files/64KB.bin", "/files/64KB.bin", b"")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_property_arbitrary_bytes_never_raise_untyped_errors(data: bytes, chunk: int) -> None:
    conn = connection()
    for start in range(0, len(data), chunk):
        conn.receive(data[start : start + chunk])
        item = conn.next_request()
        assert item is NEED_DATA or isinstance(item, (Request, ProtocolFailure)) or item is PAUSED
        if isinstance(item, ProtocolFailure):
            conn.build_error_response(item, now_s=0)
            assert conn.should_close
            return


# ------------------------------------------------------- dates and MIME


def test_http_date_is_from_virtual_time() -> None:
    assert http_date(0) == "Thu, 01 Jan 2026 00:00:00 GMT"
    assert http_date(86400 * 31 + 3661.9) == "Sun, 01 Feb 2026 01:01:01 GMT"
    assert http_date(784111777, epoch_unix=0) == "Sun, 06 Nov 1994 08:49:37 GMT"


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_http_date_rejects_impossible_clock_values(bad: float) -> None:
    with pytest.raises(ValueError):
        http_date(bad)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("index.html", "text/html; charset=utf-8"),
        ("about.txt", "text/plain; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("files/1MB.bin", "application/octet-stream"),
        ("IMG.PNG", "image/png"),
        ("a.tar.gz", "application/gzip"),
        ("README", DEFAULT_CONTENT_TYPE),
        (".htaccess", DEFAULT_CONTENT_TYPE),
        ("v1.2/readme", DEFAULT_CONTENT_TYPE),
        ("x.unknownext", DEFAULT_CONTENT_TYPE),
    ],
)
def test_content_type_by_extension(path: str, content_type: str) -> None:
    assert content_type_for(path) == content_type


# ------------------------------------------------------------ access log


def test_access_log_line_is_common_log_format() -> None:
    line = format_clf("10.0.0.2", 1, "GET", "/index.html", "1.1", 200, 1234)
    assert line == '10.0.0.2 - - [01/Jan/2026:00:00:01 +0000] "GET /index.html HTTP/1.1" 200 1234'


def test_access_log_zero_bytes_is_a_dash_and_version_prefix_is_optional() -> None:
    line = format_clf("10.0.0.2", 0, b"HEAD", b"/", "HTTP/1.0", 404, 0)
    assert line == '10.0.0.2 - - [01/Jan/2026:00:00:00 +0000] "HEAD / HTTP/1.0" 404 -'


def test_access_log_escapes_quotes_and_control_bytes() -> None:
    line = format_clf("10.0.0.2", 0, "GET", b'/a"b\\c\r\n\xff', "1.1", 400, 10)
    assert '"GET /a\\"b\\\\c\\x0d\\x0a\\xff HTTP/1.1"' in line
    assert "\n" not in line


def test_clf_date_crosses_month_and_year_boundaries() -> None:
    assert clf_date(86400 * 365 - 1) == "31/Dec/2026:23:59:59 +0000"
    assert clf_date(86400 * 365) == "01/Jan/2027:00:00:00 +0000"


def test_access_log_keeps_the_last_lines_and_counts_all() -> None:
    log = AccessLog(capacity=2)
    for n in range(3):
        log.log(AccessLogEntry("10.0.0.2", n, "GET", f"/{n}", "1.1", 200, n))
    assert log.total == 3 and len(log) == 2
    assert [line.split('"')[1] for line in log] == ["GET /1 HTTP/1.1", "GET /2 HTTP/1.1"]
    assert log.lines()[-1].endswith(" 200 2")
    with pytest.raises(ValueError):
        AccessLog(capacity=0)
