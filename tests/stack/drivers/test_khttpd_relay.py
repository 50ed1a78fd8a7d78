"""The sans-IO reader khttpd uses for the user-mode server's responses."""

from __future__ import annotations

import pytest

from stack.drivers.khttpd.relay import BackendError, BackendResponseReader

RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: usermode\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
            b"X-Served-By: usermode-webserver\r\nConnection: keep-alive\r\n\r\nhello")


def test_a_response_fed_byte_by_byte_is_complete_only_at_its_last_byte():
    reader = BackendResponseReader("GET")
    results = [reader.feed(RESPONSE[i:i + 1]) for i in range(len(RESPONSE))]
    assert all(r is None for r in results[:-1])
    done = results[-1]
    assert done is not None and (done.status, done.body, done.content_type) == (200, b"hello", "text/plain")


def test_hop_by_hop_and_managed_headers_are_not_passed_on():
    done = BackendResponseReader("GET").feed(RESPONSE)
    assert done is not None and done.headers == ((b"x-served-by", b"usermode-webserver"),)


def test_a_head_response_has_no_body_even_with_content_length():
    head = RESPONSE[:RESPONSE.index(b"\r\n\r\n") + 4]
    done = BackendResponseReader("HEAD").feed(head)
    assert done is not None and done.body == b""


def test_garbage_from_the_backend_is_a_backend_error():
    with pytest.raises(BackendError):
        BackendResponseReader("GET").feed(b"NOT HTTP AT ALL\r\n\r\n")


def test_a_backend_that_closes_mid_body_is_a_backend_error():
    reader = BackendResponseReader("GET")
    assert reader.feed(RESPONSE[:-2]) is None
    with pytest.raises(BackendError):
        reader.feed(b"")


def test_an_oversized_backend_response_is_refused():
    reader = BackendResponseReader("GET", max_size=64)
    with pytest.raises(BackendError):
        reader.feed(RESPONSE + b"x" * 100)
