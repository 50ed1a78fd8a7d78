"""HTTP details real clients find: Range (206/416, multipart), conditional GET (304), CL+TE, HTTP/1.0 keep-alive."""

from __future__ import annotations

import pytest

from stack.drivers.khttpd.conditional import (RANGE_NONE, RANGE_UNSATISFIABLE, Validators, not_modified,
                                              parse_range)
from stack.drivers.khttpd.http import HttpServerConnection, Request
from stack.fs.docroot_manifest import docroot_files, file_bytes
from stack.usermode.webserver import HttpClient, http_raw

from khttpd_lab import SERVER4, boot_lab, run_client

CONTENT = {name: file_bytes(content) for name, content in docroot_files().items()}
INDEX = CONTENT["index.html"]


@pytest.fixture(scope="module", params=["WSK", "TDI"])
def lab(request):
    return boot_lab(seed=21, parameters={"Transport": request.param})


def _get(lab, target: str, *headers: str, version: str = "1.1"):
    raw = (f"GET {target} HTTP/{version}\r\nHost: winsrv\r\n" + "".join(h + "\r\n" for h in headers)
           + "\r\n").encode()
    return run_client(lab, http_raw, SERVER4, raw)


# --- sans-IO ----------------------------------------------------------------------------------------

V = Validators.for_file("index.html", 1000, (1_767_225_600 + 11_644_473_600) * 10_000_000)  # 2026-01-01 as a FILETIME


@pytest.mark.parametrize("header, expected", [
    (None, RANGE_NONE),
    (b"bytes=0-99", [(0, 99)]),
    (b"bytes=900-", [(900, 999)]),
    (b"bytes=-100", [(900, 999)]),
    (b"bytes=990-2000", [(990, 999)]),
    (b"bytes=0-0,10-19", [(0, 0), (10, 19)]),
    (b"bytes=1000-1100", RANGE_UNSATISFIABLE),
    (b"items=0-1", RANGE_NONE),
    (b"bytes=5-1", RANGE_NONE),
    (b"bytes=abc", RANGE_NONE),
])
def test_range_header_parsing(header, expected):
    assert parse_range(header, 1000) == expected


def test_if_range_with_another_etag_serves_the_whole_file():
    assert parse_range(b"bytes=0-9", 1000, b'"other"', V) == RANGE_NONE
    assert parse_range(b"bytes=0-9", 1000, V.etag.encode(), V) == [(0, 9)]


def test_if_none_match_wins_over_if_modified_since():
    assert not_modified(V.etag.encode(), None, V)
    assert not_modified(b'W/"nope", ' + V.etag.encode(), None, V)
    assert not_modified(b"*", None, V)
    assert not not_modified(b'"nope"', b"Thu, 01 Jan 2026 00:00:00 GMT", V)
    assert not_modified(None, b"Thu, 01 Jan 2026 00:00:00 GMT", V)
    assert not not_modified(None, b"Wed, 31 Dec 2025 23:59:59 GMT", V)
    assert not not_modified(None, b"not a date", V)


def _parse(data: bytes) -> tuple[HttpServerConnection, Request]:
    conn = HttpServerConnection(lambda path: True)
    conn.receive(data)
    item = conn.next_request()
    assert isinstance(item, Request)
    return conn, item


def test_content_length_with_transfer_encoding_is_answered_then_closed():
    conn, request = _parse(b"POST /app/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert not request.keep_alive
    head = conn.build_response_header(200, now_s=0, content_length=0, keep_alive=True)
    conn.end_response()
    assert b"Connection: close" in head and conn.should_close


def test_http10_keep_alive_is_kept_and_the_next_request_parses():
    conn, request = _parse(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n")
    assert request.keep_alive and request.http_version == "1.0"
    head = conn.build_response_header(200, now_s=0, content_length=2, keep_alive=True)
    assert b"Connection: keep-alive" in head
    conn.body_bytes(b"hi")
    conn.end_response()
    assert not conn.should_close
    conn.start_next_cycle()
    second = conn.next_request()
    assert isinstance(second, Request) and second.target == b"/b" and not second.keep_alive
    conn.build_response_header(200, now_s=0, content_length=0, keep_alive=second.keep_alive)
    conn.end_response()
    assert conn.should_close


# --- end to end, over WSK and over TDI -----------------------------------------------------------------

def test_a_single_range_is_206_with_content_range(lab):
    response, _ = _get(lab, "/index.html", "Range: bytes=10-109")
    assert response.status == 206
    assert response.body == INDEX[10:110]
    assert response.header("content-range") == f"bytes 10-109/{len(INDEX)}"
    assert response.header("accept-ranges") == "bytes"


def test_multiple_ranges_are_multipart_byteranges(lab):
    response, _ = _get(lab, "/index.html", "Range: bytes=0-4,-5")
    assert response.status == 206
    assert response.header("content-type").startswith("multipart/byteranges; boundary=")
    boundary = response.header("content-type").split("boundary=")[1].encode()
    parts = response.body.split(b"--" + boundary)
    assert parts[1].endswith(b"\r\n\r\n" + INDEX[:5] + b"\r\n")
    assert parts[2].endswith(b"\r\n\r\n" + INDEX[-5:] + b"\r\n")
    assert f"Content-Range: bytes 0-4/{len(INDEX)}".encode() in parts[1]
    assert parts[3] == b"--\r\n"


def test_an_unsatisfiable_range_is_416(lab):
    response, _ = _get(lab, "/index.html", f"Range: bytes={len(INDEX) + 10}-")
    assert response.status == 416
    assert response.header("content-range") == f"bytes */{len(INDEX)}"


def test_conditional_get_with_the_etag_or_a_later_date_is_304(lab):
    first, _ = _get(lab, "/index.html")
    etag, modified = first.header("etag"), first.header("last-modified")
    assert first.status == 200 and etag and modified
    by_etag, _ = _get(lab, "/index.html", f"If-None-Match: {etag}")
    by_date, _ = _get(lab, "/index.html", f"If-Modified-Since: {modified}")
    changed, _ = _get(lab, "/index.html", 'If-None-Match: "something-else"')
    assert (by_etag.status, by_etag.body, by_etag.header("etag")) == (304, b"", etag)
    assert by_date.status == 304
    assert (changed.status, changed.body) == (200, INDEX)


def test_content_length_and_transfer_encoding_together_get_an_answer_then_close(lab):
    raw = (b"GET /index.html HTTP/1.1\r\nHost: winsrv\r\nContent-Length: 5\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    response, closed = run_client(lab, http_raw, SERVER4, raw)
    assert response.status == 200 and response.header("connection") == "close" and closed


def test_http10_with_connection_keep_alive_is_kept_alive(lab):
    def two_requests():
        client = yield from HttpClient.connect(SERVER4)
        out = []
        for target in ("/index.html", "/style.css"):
            yield from client.send_raw(f"GET {target} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
            out.append((yield from client.read_response()))
        yield from client.close()
        return out

    first, second = run_client(lab, two_requests)
    assert (first.status, first.body, first.header("connection")) == (200, INDEX, "keep-alive")
    assert (second.status, second.body) == (200, CONTENT["style.css"])


def test_date_is_virtual_from_the_lab_epoch_unless_bridged_to_real_time(lab):
    from stack.bridge.session import WALL_EPOCH_KEY
    virtual, _ = _get(lab, "/style.css")
    assert "01 Jan 2026 00:00" in virtual.header("date")  # virtual seconds after the lab's fixed epoch
    kernel = lab.host("winsrv").kernel
    kernel.extensions[WALL_EPOCH_KEY] = 1_900_000_000  # what a live bridge session sets (and records)
    try:
        bridged, _ = _get(lab, "/style.css")
    finally:
        del kernel.extensions[WALL_EPOCH_KEY]
    assert "Mar 2030" in bridged.header("date")
