"""!echo, !http, !ping, !httperf from the client, and the httperf program itself."""

from __future__ import annotations

import pytest

from stack.tcpip.addr import SockAddr
from stack.usermode.httperf import HttperfConfig, HttperfError, HttperfResult, Reply, report_lines
from tests.wskdbg.net_lab import bare_engine, lab_engine, run


@pytest.fixture(scope="module")
def dbg():
    engine = lab_engine()
    yield engine
    engine.close()


def test_echo_with_w_runs_to_completion_and_reports_each_exchange(dbg):
    out = run(dbg, '!echo /w -n 2 "hello there"').splitlines()
    assert out[0] == "echo: 2 x 11 bytes to 10.0.0.1:40007 from client"
    assert out[1].startswith("echo 10.0.0.2:") and out[1].endswith("ms") and "-> 10.0.0.1:40007" in out[1]
    assert out[2].startswith("  #1  11 bytes sent, 11 echoed intact in ")
    assert out[3].startswith("  #2  11 bytes sent, 11 echoed intact in ")
    assert out[4].startswith("echo: 2 exchanges, all echoed intact; closed after ")


def test_echo_over_ipv6_with_a_size_repeats_the_text(dbg):
    result = dbg.execute("!echo /w -6 -s 5000 ab")
    assert not result.error
    assert "-> [fd00::1]:40007" in result.text and "5000 bytes sent, 5000 echoed intact" in result.text
    assert result.data["finished"] is True


def test_echo_without_w_returns_at_once_and_prints_when_g_runs_it(dbg):
    started = run(dbg, '!echo "later"')
    assert started.splitlines()[-1].startswith("echo runs on client when the machine runs (g)")
    job = dbg.state["traffic.jobs"][-1]
    assert not job.program.done
    out = run(dbg, "g")
    assert job.program.done
    assert "1 exchange, all echoed intact" in out


def test_echo_is_refused_with_a_hint_when_nothing_listens():
    engine = bare_engine()
    try:
        out = run(engine, "!echo /w hi")
        assert "connect failed: STATUS_CONNECTION_REFUSED (0xc0000236)" in out and "sc start echosrv" in out
    finally:
        engine.close()


def test_http_get_prints_status_headers_and_a_body_preview(dbg):
    lines = run(dbg, "!http /w /index.html").splitlines()
    assert lines[1].startswith("http: GET /index.html from 10.0.0.1:80: 200 OK, 1862 body bytes in ")
    assert lines[2] == "HTTP/1.1 200 OK"
    assert "Content-Length: 1862" in lines and "<!DOCTYPE html>" in lines
    assert lines[-1] == f"... ({1862 - 256} more bytes)"


def test_http_head_and_missing_files(dbg):
    head = run(dbg, "!http /w -6 HEAD /style.css")
    assert "from [fd00::1]:80: 200 OK, 0 body bytes" in head
    missing = run(dbg, "!http /w /no/such/file")
    assert "404" in missing.splitlines()[1]


def test_http_raw_sends_the_bytes_as_written_and_says_whether_the_server_closed(dbg):
    lines = run(dbg, r'!http /w -raw "GET /index.html HTTP/1.1\r\nHost: winsrv\r\n\r\n"').splitlines()
    assert lines[0] == "http: raw request (42 bytes) to 10.0.0.1:80 from client"
    assert lines[1].startswith("http: raw request (42 bytes) from 10.0.0.1:80: 200 OK, 1862 body bytes in ")
    assert lines[2] == "the connection stayed open after the response"
    assert lines[3] == "HTTP/1.1 200 OK" and "Connection: keep-alive" in lines


def test_http_raw_malformed_requests_get_the_status_rfc_9112_asks_for_and_a_close(dbg):
    for request, status in ((r"GET / HTTP/1.1\r\n\r\n", "400 Bad Request"),  # no Host
                            (r"GET / HTTP/1.1\r\nHost: w\r\nX: a\x00b\r\n\r\n", "400 Bad Request"),
                            (r"GET / HTTP/2.0\r\nHost: w\r\n\r\n", "505 HTTP Version Not Supported")):
        lines = run(dbg, f'!http /w -raw "{request}"').splitlines()
        assert f": {status}, " in lines[1], (request, lines[1])
        assert lines[2] == "khttpd closed the connection after the response"


def test_http_raw_smuggled_request_behind_a_chunked_body_is_never_served(dbg):
    from stack.drivers.khttpd.state import khttpd_globals
    stats = khttpd_globals(dbg.kernel_of("winsrv")).stats
    before = stats.requests
    smuggle = (r"GET /index.html HTTP/1.1\r\nHost: w\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
               r"0\r\n\r\nGET /style.css HTTP/1.1\r\nHost: w\r\n\r\n")
    lines = run(dbg, f'!http /w -raw "{smuggle}"').splitlines()
    assert ": 200 OK, 1862 body bytes" in lines[1]  # index.html: Transfer-Encoding won over Content-Length
    assert lines[2] == "khttpd closed the connection after the response"
    assert stats.requests == before + 1


@pytest.mark.parametrize("text, expected", [
    (r"a\r\n\tb", b"a\r\n\tb"),
    (r"\\ \" \x00\xff\x7F", b'\\ " \x00\xff\x7f'),
    ("caf\u00e9", b"caf\xe9"),
])
def test_http_raw_escapes_stand_for_bytes(text, expected):
    from wskdbg.commands.traffic import unescape_request
    assert unescape_request(text) == expected


@pytest.mark.parametrize("line, message", [
    (r'!http -raw "GET \q"', r"unknown escape \q at 4"),
    (r'!http -raw "\x4"', r"\x at 0 needs two hex digits"),
    ('!http -raw "GET \u20ac"', "is not Latin-1"),
    ('!http -raw "x" /index.html', "give no method or path beside it"),
    ('!http -raw ""', "needs the request's bytes"),
])
def test_http_raw_bad_requests_are_the_debuggers_to_catch(dbg, line, message):
    result = dbg.execute(line)
    assert result.error and message in result.text, result.text
    assert not dbg.state.get("traffic.jobs") or dbg.state["traffic.jobs"][-1].finished


@pytest.mark.parametrize("line, message", [
    ("!http", "give one path"),
    ("!http index.html", "must start with /"),
    ("!http GET /a /b", "Syntax error"),
    ("!echo -x 1", "Unknown option '-x'"),
    ("!echo -n 0 hi", "n must be between 1 and 1000"),
    ("!ping", "say which host"),
    ("!ping nosuch", "no host named 'nosuch'"),
    ("!httperf --uri /", "--server is required"),
    ("!httperf --server winsrv --rate -1", "--rate must be a number >= 0"),
    ("!httperf --server winsrv --num-conns 0", "num-conns must be between"),
])
def test_bad_traffic_arguments_are_command_errors(dbg, line, message):
    result = dbg.execute(line)
    assert result.error and message in result.text


def test_ping_reports_replies_and_statistics_in_virtual_time(dbg):
    lines = run(dbg, "!ping /w -n 2 winsrv").splitlines()
    assert lines[1] == "Pinging 10.0.0.1 with 32 bytes of data:"
    assert lines[2].startswith("Reply from 10.0.0.1: bytes=32 time=") and lines[2].endswith("ms")
    assert "    Packets: Sent = 2, Received = 2, Lost = 0 (0% loss)," in lines
    v6 = run(dbg, "!ping /w -6 -n 1 -l 100 winsrv")
    assert "Pinging fd00::1 with 100 bytes of data:" in v6


def test_httperf_reports_httperfs_sections_from_virtual_time(dbg):
    out = run(dbg, "!httperf /w --server winsrv --uri /index.html --num-conns 4 --rate 100 --num-calls 2")
    lines = out.splitlines()
    assert lines[1] == "httperf --server winsrv --port 80 --uri /index.html --rate 100 --num-conns 4 --num-calls 2"
    total = next(line for line in lines if line.startswith("Total:"))
    assert total.startswith("Total: connections 4 requests 8 replies 8 test-duration 0.03")
    for prefix in ("Connection rate: ", "Connection time [ms]: min ", "Connection length [replies/conn]: 2.000",
                   "Request rate: ", "Reply rate [replies/s]: ", "Reply time [ms]: response ",
                   "Reply size [B]: header ", "Net I/O: ", "Errors: total 0 "):
        assert any(line.startswith(prefix) for line in lines), prefix
    assert "Reply status: 1xx=0 2xx=8 3xx=0 4xx=0 5xx=0" in lines


def test_httperf_is_deterministic_across_runs():
    outputs = []
    for _ in range(2):
        engine = lab_engine()
        try:
            outputs.append(run(engine, "!httperf /w --server winsrv --uri /about.txt --num-conns 3 --rate 50"))
        finally:
            engine.close()
    assert outputs[0] == outputs[1]


def test_httperf_counts_refused_connections_as_errors():
    engine = bare_engine()
    try:
        out = run(engine, "!httperf /w --server winsrv --uri / --num-conns 2")
        assert "Total: connections 2 requests 0 replies 0" in out
        assert "Errors: total 2 client-timo 0 socket-timo 0 connrefused 2 connreset 0" in out
    finally:
        engine.close()


def test_httperf_report_reply_rate_samples_every_five_virtual_seconds():
    config = HttperfConfig(SockAddr.parse("10.0.0.1:80"), uri="/", num_conns=1)
    result = HttperfResult(config, start_ns=0, end_ns=10_000_000_000)
    result.replies = [Reply(200, 100, 10, 1_000, 0, t) for t in (1_000_000_000, 2_000_000_000, 7_000_000_000)]
    line = next(x for x in report_lines(result) if x.startswith("Reply rate"))
    assert line == "Reply rate [replies/s]: min 0.2 avg 0.3 max 0.4 stddev 0.1 (2 samples)"


def test_httperf_config_is_validated():
    with pytest.raises(HttperfError):
        HttperfConfig(SockAddr.parse("10.0.0.1:80"), uri="x").validate()
    with pytest.raises(HttperfError):
        HttperfConfig(SockAddr.parse("10.0.0.1:80"), num_calls=0).validate()
