"""The standard lab's services: WSK everywhere, kfs/echosrv/khttpd on winsrv, the user-mode web
server khttpd hands over to (on winsrv itself, through local delivery), and the dns/httpbin hosts."""

from __future__ import annotations

import pytest

from stack.drivers.khttpd.driver import khttpd_globals
from stack.usermode.programs import echo_client, pattern
from stack.usermode.socket import SockAddr, run_program
from stack.usermode.webserver import http_fetch
from stack.world import default_world

SECOND = 1_000_000_000


@pytest.fixture(scope="module")
def lab():
    return default_world(1)


def _run_client(world, fn, *args):
    program = run_program(world.host("client").kernel, fn, *args)
    world.run_while(lambda: not program.done, max_time_ns=world.now_ns + 30 * SECOND)
    world.check()
    program.raise_error()
    assert program.done
    return program.result


def test_the_standard_lab_has_four_hosts_with_afd_and_the_servers_loaded_as_auto_start_services(lab):
    assert list(lab.hosts) == ["winsrv", "client", "dns", "httpbin"]
    assert [str(lab.host(n).address4) for n in ("dns", "httpbin")] == ["10.0.0.53", "10.0.0.80"]
    for name, host in lab.hosts.items():
        assert host.kernel.drivers["afd"].loaded, name  # afd.sys, the WSK provider, starts with the system
        assert "wsk" in host.kernel.extensions
    winsrv = lab.host("winsrv").kernel
    for driver in ("kfs", "echosrv", "khttpd"):
        assert winsrv.drivers[driver].loaded
    assert lab.auto_start["winsrv"] == ["kfs", "echosrv", "khttpd"]
    assert "client" not in lab.auto_start
    assert lab.scheduler.idle  # booted and settled: nothing pending


def test_the_bare_lab_keeps_only_tcpip_netio_and_afd():
    world = default_world(1, services=False)
    assert list(world.hosts) == ["winsrv", "client"] and world.auto_start == {} and world.dns is None
    k = world.host("winsrv").kernel
    assert "wskprov" not in k.drivers and k.module("wskprov") is None
    assert k.drivers["afd"].name == "\\Driver\\AFD" and k.module("netio") is not None


def test_echosrv_answers_a_client_right_away(lab):
    data = pattern(3, 2000)
    result = _run_client(lab, echo_client, SockAddr.parse("10.0.0.1:40007"), data)
    assert result.received == len(data) and result.received_sha256 == result.sent_sha256


def test_khttpd_hands_dynamic_requests_to_the_web_server_on_winsrv_itself_over_loopback(lab):
    counters = lab.host("winsrv").stack.counters
    before = counters.loopback_sent
    response = _run_client(lab, http_fetch, SockAddr.parse("10.0.0.1:80"), "GET", "/app/hello")
    assert response.status == 200 and b"on winsrv" in response.body
    assert response.header("x-served-by") == "usermode-webserver"
    assert counters.loopback_sent > before  # khttpd -> winsrv:8080 never left the host
    assert khttpd_globals(lab.host("winsrv").kernel).stats.dynamic_relayed >= 1
    assert lab.host("winsrv").extras["webserver_stats"].requests >= 1


def test_khttpd_serves_static_files_from_kfs(lab):
    response = _run_client(lab, http_fetch, SockAddr.parse("[fd00::1]:80"), "GET", "/index.html")
    assert response.status == 200 and response.body.startswith(b"<!DOCTYPE html>")


def test_a_host_added_later_joins_the_dns_zone_and_resolves_through_it(lab):
    late = lab.add_host("late", "10.0.0.9", "fd00::9")
    assert lab.dns.zone.lookup("late") is not None
    found: list = []
    lab.run_in("late", lambda: late.transport.resolve("httpbin.org", lambda status, addresses:
                                                      found.append((status, addresses))))
    lab.run_while(lambda: not found, max_time_ns=lab.now_ns + 5 * SECOND)
    status, addresses = found[0]
    assert status == 0 and "10.0.0.80" in [str(a) for a in addresses]
    assert lab.dns.stats.answered >= 1  # it really went over UDP to the dns host


def test_the_standard_lab_is_deterministic():
    a, b = default_world(4), default_world(4)
    assert (a.scheduler.events_run, a.now_ns) == (b.scheduler.events_run, b.now_ns)
    assert a.host("winsrv").kernel.drivers["khttpd"].address == b.host("winsrv").kernel.drivers["khttpd"].address
