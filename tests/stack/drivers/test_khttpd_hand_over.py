"""The hand-over methods the thesis weighs, each returning the user-mode server's reply byte-exact:
relay (khttpd connects to it and copies the reply back) and HTTP redirect (307 to its port)."""

from __future__ import annotations

import pytest

from stack.drivers.khttpd.driver import khttpd_globals
from stack.usermode.socket import SockAddr
from stack.usermode.webserver import http_fetch

from khttpd_lab import SERVER4, SERVER6, boot_lab, run_client

BACKEND4 = SockAddr.parse("10.0.0.1:8080")


def _direct(lab, target: str):
    return run_client(lab, http_fetch, BACKEND4, "GET", target)


@pytest.mark.parametrize("transport", ["WSK", "TDI"])
def test_redirect_hand_over_sends_307_and_the_user_mode_server_answers_byte_exact(transport):
    lab = boot_lab(seed=61, parameters={"Transport": transport, "HandOver": "Redirect"})
    first = run_client(lab, http_fetch, SERVER4, "GET", "/app/bytes?n=3000")
    assert first.status == 307
    assert first.header("location") == "http://10.0.0.1:8080/app/bytes?n=3000"
    followed = run_client(lab, http_fetch, SockAddr.parse("10.0.0.1:8080"), "GET", "/app/bytes?n=3000")
    assert followed.status == 200 and followed.body == _direct(lab, "/app/bytes?n=3000").body
    assert khttpd_globals(lab.host("winsrv").kernel).stats.dynamic_redirected == 1


def test_redirect_over_ipv6_names_the_ipv6_address():
    lab = boot_lab(seed=63, parameters={"HandOver": "Redirect"})
    response = run_client(lab, http_fetch, SERVER6, "GET", "/app/hello")
    assert response.header("location") == "http://[fd00::1]:8080/app/hello"


@pytest.mark.parametrize("transport", ["WSK", "TDI"])
def test_relay_hand_over_returns_the_user_mode_servers_body_byte_exact(transport):
    lab = boot_lab(seed=65, parameters={"Transport": transport})
    relayed = run_client(lab, http_fetch, SERVER4, "GET", "/app/bytes?n=5000")
    assert relayed.status == 200 and relayed.body == _direct(lab, "/app/bytes?n=5000").body


@pytest.mark.parametrize("transport", ["WSK", "TDI"])
def test_kernel_request_queue_hand_over_returns_the_user_mode_servers_body_byte_exact(transport):
    from stack.usermode.khttpq import request_queue_server
    from stack.usermode.socket import run_program
    from stack.usermode.webserver import WebServerStats
    lab = boot_lab(seed=67, parameters={"Transport": transport, "HandOver": "Queue"})
    stats = WebServerStats()
    queue_reader = run_program(lab.host("winsrv").kernel, request_queue_server, stats, 2, name="queue-server")
    queued = run_client(lab, http_fetch, SERVER4, "GET", "/app/bytes?n=5000")
    queued6 = run_client(lab, http_fetch, SERVER6, "GET", "/app/hello")
    assert queued.status == 200 and queued.body == _direct(lab, "/app/bytes?n=5000").body
    assert queued.header("x-served-by") == "usermode-webserver (queue)"
    assert queued6.status == 200 and queued6.body.startswith(b"Hello from the user-mode web server")
    lab.run_while(lambda: not queue_reader.done, max_events=100_000)
    queue_reader.raise_error()
    assert queue_reader.result == 2 and stats.requests == 2
    q = khttpd_globals(lab.host("winsrv").kernel).request_queue
    assert q.delivered == 2 and not q.taken and not q.queued


def test_unload_ends_a_pended_queue_receive_with_status_cancelled():
    from stack.kernel import IoUnloadDriver
    from stack.usermode.khttpq import request_queue_server
    from stack.usermode.socket import run_program
    lab = boot_lab(seed=69, parameters={"HandOver": "Queue"})
    k = lab.host("winsrv").kernel
    reader = run_program(k, request_queue_server, None, None, name="queue-server")
    lab.run_for(10_000_000)
    assert not reader.done  # its IOCTL_KHTTPD_RECEIVE_REQUEST is pended in khttpd
    done: list[int] = []
    IoUnloadDriver(k, k.drivers["khttpd"], on_done=done.append)
    lab.run_while(lambda: not done or not reader.done, max_events=1_000_000)
    lab.check()
    assert reader.result == 0
