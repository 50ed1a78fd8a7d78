"""The accept-queue hand-over (HandOver=Accept): khttpd reads a dynamic request inside its receive event
(WskReceiveEvent, or TDI's ClientEventReceive) without taking it, and afd (its lab-only
WskProLabHandOverConnection / AfdLabOfferConnection, with tdx's lab-only TdxLabReleaseConnection over
TDI) moves the connection with the request still unread into the user-mode server's accept queue.
The user-mode server accepts it with accept/AcceptEx and reads the very bytes the client sent."""

from __future__ import annotations

import pytest

from stack.drivers.khttpd.driver import khttpd_globals
from stack.usermode.socket import AF_INET6, SOCK_STREAM, SockAddr, Socket, UserBuffer, run_program
from stack.usermode.webserver import HttpClient, http_fetch, http_raw, http_session
from stack.wsk import get_provider

from khttpd_lab import SERVER4, SERVER6, boot_lab, run_client

BACKEND4 = SockAddr.parse("10.0.0.1:8080")


def _lab(seed: int, **parameters):
    return boot_lab(seed=seed, parameters={"HandOver": "Accept", **parameters})


@pytest.mark.parametrize("transport", ["WSK", "TDI"])
@pytest.mark.parametrize("server", [SERVER4, SERVER6], ids=["ipv4", "ipv6"])
def test_a_dynamic_request_is_answered_by_the_user_mode_server_on_the_same_connection_byte_exact(server, transport):
    lab = _lab(71, Transport=transport)
    winsrv = lab.host("winsrv").kernel
    handed = run_client(lab, http_fetch, server, "GET", "/app/bytes?n=5000")
    direct = run_client(lab, http_fetch, BACKEND4, "GET", "/app/bytes?n=5000")
    assert handed.status == 200 and handed.body == direct.body
    assert handed.header("server") == direct.header("server")  # the user-mode server answered, not khttpd
    g = khttpd_globals(winsrv)
    assert g.stats.dynamic_handed_over == 1 and g.stats.dynamic_relayed == 0 and g.stats.hand_over_fallbacks == 0
    assert get_provider(winsrv).handovers == (1 if transport == "WSK" else 0)  # (TDI: tdx gave it up)


@pytest.mark.parametrize("transport", ["WSK", "TDI"])
def test_the_user_mode_server_reads_the_request_bytes_khttpd_looked_at_byte_exact(transport):
    lab = _lab(73, Transport=transport)
    request = (b"POST /app/echo?handed=over HTTP/1.1\r\nHost: winsrv\r\nContent-Length: 11\r\n"
               b"X-Lab: accept hand-over\r\n\r\nhello world")
    response, _ = run_client(lab, http_raw, SERVER4, request)
    assert response.status == 200 and response.body == b"handed=over\nhello world"
    if transport == "WSK":
        provider = get_provider(lab.host("winsrv").kernel)
        assert provider.handovers == 1 and provider.handover_bytes == len(request)  # all of it, none taken
    stats = lab.host("winsrv").extras["webserver_stats"]
    assert stats.paths == ["/app/echo"]


def test_acceptex_on_the_user_mode_side_completes_with_the_handed_over_request():
    """A user-mode server of our own on 8081 with AcceptEx (a receive buffer): its accept completes
    with the request khttpd left unread, byte for byte."""
    lab = _lab(75, BackendPort=8081)
    seen: list[bytes] = []

    def acceptex_server():
        listener = yield from Socket.create(AF_INET6, SOCK_STREAM)
        yield from listener.setsockopt("IPV6_V6ONLY", False)
        yield from listener.bind(SockAddr.parse("[::]:8081"))
        yield from listener.listen(4)
        buffer = UserBuffer(4096)
        conn, n = yield from listener.accept_ex(buffer)
        seen.append(buffer.read(n))
        body = b"from AcceptEx"
        yield from conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                             % (len(body), body))
        yield from conn.shutdown()
        yield from conn.close()
        yield from listener.close()
        buffer.free()

    server = run_program(lab.host("winsrv").kernel, acceptex_server, name="acceptex-server")
    lab.run_for(1_000_000)
    request = b"GET /app/anything?x=1 HTTP/1.1\r\nHost: winsrv\r\nUser-Agent: lab\r\n\r\n"
    response, closed = run_client(lab, http_raw, SERVER4, request)
    lab.run_while(lambda: not server.done, max_events=200_000)
    server.raise_error()
    assert seen == [request]
    assert response.status == 200 and response.body == b"from AcceptEx" and closed


def test_static_requests_stay_with_khttpd_and_a_later_dynamic_one_on_the_same_connection_is_handed_over():
    lab = _lab(77)
    g = khttpd_globals(lab.host("winsrv").kernel)
    responses = run_client(lab, http_session, SERVER4, [("GET", "/index.html"), ("GET", "/style.css"),
                                                        ("GET", "/app/hello")])
    assert [r.status for r in responses] == [200, 200, 200]
    assert responses[0].header("server") != responses[2].header("server")
    assert responses[2].body.startswith(b"Hello from the user-mode web server")
    assert g.stats.static_zero_copy == 2 and g.stats.dynamic_handed_over == 1 and g.stats.hand_over_fallbacks == 0


def test_the_client_keeps_one_tcp_connection_through_the_hand_over():
    lab = _lab(79)
    winsrv = lab.host("winsrv").kernel

    def two_requests():
        client = yield from HttpClient.connect(SERVER4)
        first = yield from client.request("GET", "/index.html")
        second = yield from client.request("GET", "/app/bytes?n=100")
        third = yield from client.request("GET", "/app/bytes?n=200")  # now the user-mode server's connection
        yield from client.close()
        return first, second, third

    first, second, third = run_client(lab, two_requests)
    assert (first.status, second.status, third.status) == (200, 200, 200)
    assert len(second.body) == 100 and len(third.body) == 200
    assert third.header("server") == second.header("server")
    assert khttpd_globals(winsrv).stats.connections_accepted == 1  # one connection, one hand-over
    assert get_provider(winsrv).handovers == 1


@pytest.mark.parametrize("transport", ["WSK", "TDI"])
def test_without_a_user_mode_listener_the_request_is_relayed_and_counted_as_a_fallback(transport):
    lab = _lab(81, BackendPort=8099, Transport=transport)  # nothing listens on 8099
    g = khttpd_globals(lab.host("winsrv").kernel)
    response = run_client(lab, http_fetch, SERVER4, "GET", "/app/hello")
    assert response.status == 502  # the relay finds nobody either
    assert g.stats.hand_over_fallbacks == 1 and g.stats.dynamic_handed_over == 0


def test_over_tdi_static_requests_stay_with_khttpd_and_a_dynamic_one_is_handed_over_through_tdx():
    lab = _lab(85, Transport="TDI")
    g = khttpd_globals(lab.host("winsrv").kernel)
    first = run_client(lab, http_fetch, SERVER4, "GET", "/index.html")
    handed = run_client(lab, http_fetch, SERVER4, "GET", "/app/hello")
    assert first.header("server") == "khttpd/1.0" and handed.body.startswith(b"Hello from the user-mode web server")
    assert g.stats.static_zero_copy == 1 and g.stats.dynamic_handed_over == 1


@pytest.mark.parametrize("transport", ["WSK", "TDI"])
def test_unload_after_hand_overs_leaks_no_pool_and_leaves_no_wsk_socket(transport):
    from stack.drivers.khttpd.driver import POOL_TAGS
    from stack.kernel import IoUnloadDriver
    from stack.kernel.pool import tag_from_str
    from stack.wsk import wsk_sockets
    lab = _lab(83, Transport=transport)
    k = lab.host("winsrv").kernel
    run_client(lab, http_session, SERVER4, [("GET", "/index.html"), ("GET", "/app/hello")])
    run_client(lab, http_fetch, SERVER6, "GET", "/app/bytes?n=10")
    assert khttpd_globals(k).stats.dynamic_handed_over == 2
    done: list[int] = []
    IoUnloadDriver(k, k.drivers["khttpd"], on_done=done.append)
    lab.run_while(lambda: not done, max_events=1_000_000)
    lab.check()
    tags = {tag_from_str(t) for t in POOL_TAGS + ("TdxA", "TdxC", "KsTb")}
    assert not [b for b in k.pool.allocated_blocks() if b.tag in tags]
    assert not [s for s in wsk_sockets(k) if "khttpd" in str(s.owner)]
