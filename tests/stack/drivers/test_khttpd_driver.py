"""khttpd end to end: `client` -> wire -> NDIS -> tcpip -> WSK -> khttpd -> kfs/cache (and back)."""

from __future__ import annotations

from typing import Any

import pytest

from stack.drivers.khttpd.driver import BODY_TAG, POOL_TAGS, WPP_PROVIDER, khttpd_globals
from stack.fs.cache import CacheManager
from stack.fs.docroot_manifest import docroot_files, file_bytes
from stack.kernel import IoUnloadDriver
from stack.kernel.pool import tag_from_str
from stack.tcpip.wire.frame import parse_frame
from stack.tcpip.wire.tcp import TcpHeader
from stack.usermode.socket import SockAddr
from stack.usermode.webserver import HttpClient, http_fetch, http_raw, http_session
from stack.world import default_world

from khttpd_lab import SERVER4, SERVER6, boot_lab, run_client

CONTENT = {name: file_bytes(content) for name, content in docroot_files().items()}
ALL_FILES = sorted(CONTENT)


@pytest.fixture(scope="module")
def lab():
    return boot_lab(seed=5)


def _winsrv(world) -> Any:
    return world.host("winsrv").kernel


def _expected_type(name: str) -> str:
    return {"html": "text/html; charset=utf-8", "txt": "text/plain; charset=utf-8",
            "css": "text/css; charset=utf-8"}.get(name.rsplit(".", 1)[-1], "application/octet-stream")


def test_every_docroot_file_is_served_byte_exact_over_one_keep_alive_connection(lab):
    responses = run_client(lab, http_session, SERVER4, [("GET", "/" + name) for name in ALL_FILES])
    for name, response in zip(ALL_FILES, responses):
        assert response.status == 200, name
        assert response.body == CONTENT[name], name
        assert response.header("content-length") == str(len(CONTENT[name]))
        assert response.header("content-type") == _expected_type(name)
        assert response.header("connection") == "keep-alive"


@pytest.mark.parametrize("server", [SERVER4, SERVER6], ids=["ipv4", "ipv6"])
def test_every_docroot_file_is_served_byte_exact_on_fresh_connections(lab, server):
    def fetch_all():
        out = {}
        for name in ALL_FILES:
            out[name] = yield from http_fetch(server, "GET", "/" + name)
        return out

    for name, response in run_client(lab, fetch_all).items():
        assert (response.status, response.body) == (200, CONTENT[name]), name


def test_slash_serves_index_html_and_head_sends_only_the_header(lab):
    get, head = run_client(lab, http_session, SERVER4, [("GET", "/"), ("HEAD", "/files/64KB.bin")])
    assert get.body == CONTENT["index.html"]
    assert head.status == 200 and head.body == b""
    assert head.header("content-length") == str(64 * 1024)


def _copies_during(world, fn, *args) -> tuple[dict[str, tuple[int, int]], Any]:
    k = _winsrv(world)
    before = k.copies.snapshot()
    result = run_client(world, fn, *args)
    after = k.copies.snapshot()
    delta = {r: (c - before.get(r, (0, 0))[0], b - before.get(r, (0, 0))[1]) for r, (c, b) in after.items()
             if (c, b) != before.get(r, (0, 0))}
    return delta, result


def test_zero_copy_path_copies_no_payload_bytes_on_the_server(lab):
    delta, response = _copies_during(lab, http_fetch, SERVER4, "GET", "/files/256KB.bin")
    assert response.body == CONTENT["files/256KB.bin"]
    copied = sum(b for _, b in delta.values())
    assert copied < 512, delta  # only the request line and headers are received into khttpd's buffer
    assert not any("CcCopyRead" in r or "Khttpd" in r for r in delta), delta


def test_copy_mode_copies_every_body_byte_once_more():
    world = boot_lab(seed=6, parameters={"CopyMode": True})
    delta, response = _copies_during(world, http_fetch, SERVER4, "GET", "/files/256KB.bin")
    assert response.body == CONTENT["files/256KB.bin"]
    assert delta.get("CcCopyRead") == (1, 256 * 1024)
    assert khttpd_globals(_winsrv(world)).stats.static_copied == 1


def test_copy_mode_can_come_from_the_registry_parameters_key():
    world = default_world(seed=12, services=False)
    winsrv = world.host("winsrv").kernel
    key = "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\khttpd\\Parameters"
    winsrv.extensions.setdefault("registry", {})[key] = {"CopyMode": 1, "MaxConnections": 4}
    boot_lab(world=world)
    g = khttpd_globals(winsrv)
    assert g.config.CopyMode and g.config.MaxConnections == 4
    run_client(world, http_fetch, SERVER4, "GET", "/files/4KB.bin")
    assert g.stats.static_copied == 1


def test_a_small_files_header_and_body_leave_in_one_tcp_segment(lab):
    capture = lab.capture()
    response = run_client(lab, http_fetch, SERVER4, "GET", "/files/64B.bin")
    capture.stop()
    assert response.body == CONTENT["files/64B.bin"]
    segments = []
    for record in capture.records:
        decoded = parse_frame(record.frame, verify_checksum=False)
        if isinstance(decoded.transport, TcpHeader) and decoded.transport.src_port == 80 and len(decoded.payload):
            segments.append(bytes(decoded.payload))
    responses = [s for s in segments if s.startswith(b"HTTP/1.1 200")]
    assert len(responses) >= 1
    first = responses[0]
    assert first.endswith(b"\r\n\r\n" + CONTENT["files/64B.bin"])  # header and body together


def test_cache_mdls_are_given_back_after_every_send(lab):
    run_client(lab, http_session, SERVER4, [("GET", "/files/1MB.bin"), ("GET", "/style.css")])
    lab.run_until_idle()  # the last send completes when the client's final ACK arrives
    k = _winsrv(lab)
    assert CacheManager.of(k).mdls_outstanding == 0
    assert not any(b.tag == tag_from_str(BODY_TAG) for b in k.pool.allocated_blocks())


def test_dynamic_requests_are_answered_by_the_user_mode_server(lab):
    hello, echo, missing = run_client(lab, http_session, SERVER4,
                                      [("GET", "/app/hello"), ("GET", "/app/echo?abc=1"), ("GET", "/app/nope")])
    assert hello.status == 200 and hello.body.startswith(b"Hello from the user-mode web server on ")
    assert hello.header("x-served-by") == "usermode-webserver"
    assert hello.header("server") == "khttpd/1.0"
    assert (echo.status, echo.body) == (200, b"abc=1")
    assert missing.status == 404 and missing.header("x-served-by") == "usermode-webserver"
    assert khttpd_globals(_winsrv(lab)).stats.dynamic_relayed >= 3


def test_dynamic_request_over_ipv6_reaches_the_user_mode_server(lab):
    response = run_client(lab, http_fetch, SERVER6, "GET", "/cgi/test.dyn")
    assert response.status == 200 and b"answered in user mode" in response.body


def test_a_user_mode_server_that_is_not_listening_gives_502():
    world = boot_lab(seed=10, parameters={"BackendPort": 8099})
    response = run_client(world, http_fetch, SERVER4, "GET", "/app/hello")
    assert response.status == 502
    assert khttpd_globals(_winsrv(world)).stats.errors == 1


def test_hand_over_to_the_user_mode_server_on_winsrv_itself():
    world = boot_lab(seed=11, backend_host="winsrv")
    response = run_client(world, http_fetch, SERVER4, "GET", "/app/hello")
    assert response.status == 200 and b"on winsrv" in response.body
    assert world.host("winsrv").stack.counters.loopback_sent > 0


def test_hand_over_to_a_user_mode_server_on_another_host():
    world = boot_lab(seed=11, backend_host="appsrv")
    response = run_client(world, http_fetch, SERVER4, "GET", "/app/hello")
    assert response.status == 200 and b"on appsrv" in response.body


@pytest.mark.parametrize("raw, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /index.html HTTP/1.1\r\n\r\n", 400),  # no Host
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: w\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: w\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", 431),
    (b"POST /index.html HTTP/1.1\r\nHost: w\r\nContent-Length: 0\r\n\r\n", 405),
    (b"GET /nothing-here.txt HTTP/1.1\r\nHost: w\r\n\r\n", 404),
])
def test_malformed_and_refused_requests_get_4xx(lab, raw, status):
    response, _ = run_client(lab, http_raw, SERVER4, raw)
    assert response.status == status


@pytest.mark.parametrize("target", [
    "/../stack/fs/docroot_manifest.py", "/files/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
    "/files/%2e%2e%2f%2e%2e%2fetc", "/%252e%252e/index.html", "/..%5c..%5cwindows", "/files/..\\..\\boot.ini",
    "/%c0%ae%c0%ae/etc/passwd", "/docroot_manifest.py",
])
def test_dot_dot_paths_never_escape_the_document_root(lab, target):
    response, _ = run_client(lab, http_raw, SERVER4, f"GET {target} HTTP/1.1\r\nHost: w\r\n\r\n".encode())
    assert response.status in (400, 404)
    assert b"import" not in response.body and b"root:" not in response.body


def test_connections_over_the_limit_get_503():
    world = boot_lab(seed=7, parameters={"MaxConnections": 1})

    def two_clients():
        first = yield from HttpClient.connect(SERVER4)
        second = yield from HttpClient.connect(SERVER4)
        refused = yield from second.read_response()
        yield from second.close()
        served = yield from first.request("GET", "/style.css")
        yield from first.close()
        return refused, served

    refused, served = run_client(world, two_clients)
    assert refused.status == 503
    assert served.status == 200 and served.body == CONTENT["style.css"]
    assert khttpd_globals(_winsrv(world)).stats.connections_refused == 1


def test_access_log_and_wpp_trace_record_each_request():
    world = boot_lab(seed=8)
    k = _winsrv(world)
    k.wpp.start("khttpdtrace", WPP_PROVIDER.guid, 0x1F, 5)
    run_client(world, http_session, SockAddr.parse("10.0.0.1:80"), [("GET", "/about.txt"), ("GET", "/missing")])
    world.run_until_idle()  # a request is logged once its send completes (the client's ACK)
    lines = khttpd_globals(k).access_log.lines()
    assert lines[-2].startswith("10.0.0.2 - - [") and '"GET /about.txt HTTP/1.1" 200 816' in lines[-2]
    assert '"GET /missing HTTP/1.1" 404 -' in lines[-1]
    records = list(k.wpp.sessions["khttpdtrace"].buffer)
    requests = [k.wpp.format_record(r) for r in records if r.flag == "TRCREQUEST"]
    assert any(t.endswith("10.0.0.2 GET /about.txt") for t in requests), requests
    assert {r.function for r in records if r.flag == "TRCREQUEST"} == {"KhttpdServeRequest"}


def _assert_every_file_closed(k: Any) -> None:
    """khttpd's open-file cache closed what it kept open: no FILE_OBJECT or CCB block is left and
    every FCB on the volume has no open (KhttpdOpenFileCacheFlush on unload)."""
    from stack.fs.kfs import CCB_TAG, FILE_OBJECT_TAG, VOLUME_DEVICE_NAME
    file_tags = {tag_from_str(FILE_OBJECT_TAG), tag_from_str(CCB_TAG)}
    assert not [b for b in k.pool.allocated_blocks() if b.tag in file_tags]
    fcbs = k.objects[VOLUME_DEVICE_NAME].extension.fcbs
    assert fcbs and {name: f.open_count for name, f in fcbs.items() if f.open_count} == {}


def test_unload_closes_everything_and_leaks_no_pool():
    world = boot_lab(seed=9)
    k = _winsrv(world)
    run_client(world, http_session, SERVER4, [("GET", "/index.html"), ("GET", "/app/hello")])
    done: list[int] = []
    IoUnloadDriver(k, k.drivers["khttpd"], on_done=done.append)
    world.run_while(lambda: not done, max_events=1_000_000)
    world.check()
    tags = {tag_from_str(t) for t in POOL_TAGS}
    assert not [b for b in k.pool.allocated_blocks() if b.tag in tags]
    assert "khttpd" not in k.drivers
    _assert_every_file_closed(k)


def test_unload_while_a_client_idles_on_keep_alive_resets_it_and_still_frees_everything():
    world = boot_lab(seed=13)
    k = _winsrv(world)
    state: dict[str, Any] = {}

    def idle_client():
        client = yield from HttpClient.connect(SERVER4)
        state["first"] = yield from client.request("GET", "/style.css")
        state["idle"] = True
        try:
            yield from client.read_response()  # nothing more is coming: the unload ends it
        except Exception as exc:  # reset or closed, either ends the wait
            state["ended"] = type(exc).__name__
        yield from client.close()

    from stack.usermode.socket import run_program
    program = run_program(world.host("client").kernel, idle_client)
    world.run_while(lambda: "idle" not in state)
    assert khttpd_globals(k).stats.connections_active == 1
    done: list[int] = []
    IoUnloadDriver(k, k.drivers["khttpd"], on_done=done.append)
    world.run_while(lambda: not done or not program.done, max_events=1_000_000)
    world.check()
    assert done and state["first"].status == 200 and "ended" in state
    _assert_every_file_closed(k)
    tags = {tag_from_str(t) for t in POOL_TAGS}
    assert not [b for b in k.pool.allocated_blocks() if b.tag in tags]
