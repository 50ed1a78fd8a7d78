"""Slow clients (one header byte per second from dozens of connections) cannot take every slot:
a per-client connection limit answers the surplus 503, and a header-read deadline resets the rest."""

from __future__ import annotations

import pytest

from stack.drivers.khttpd.driver import khttpd_globals
from stack.kernel.ke import KeDelayExecutionThread
from stack.usermode.socket import SockAddr, Socket, SocketError, run_program
from stack.usermode.webserver import http_fetch

from khttpd_lab import SERVER4, boot_lab

HEAD = b"GET /index.html HTTP/1.1\r\nHost: winsrv\r\nX-Slow: " + b"z" * 64


def slowloris(connections: int, seconds: int, outcome: dict):
    def run():
        socks = []
        for _ in range(connections):
            sock = yield from Socket.create(2)
            yield from sock.connect(SOCK)
            socks.append(sock)
        for second in range(seconds):
            for sock in list(socks):
                try:
                    yield from sock.send(HEAD[second:second + 1])
                except SocketError:
                    socks.remove(sock)
                    outcome["dropped"] = outcome.get("dropped", 0) + 1
            yield KeDelayExecutionThread(Interval=-10_000_000)  # 1 s
        outcome["still open"] = len(socks)
        for sock in socks:
            yield from sock.close()
    return run


SOCK = SockAddr.parse("10.0.0.1:80")


@pytest.mark.parametrize("transport", ["WSK", "TDI"])
def test_slow_clients_cannot_take_every_slot_and_are_reset_at_the_header_deadline(transport):
    world = boot_lab(seed=31, parameters={"Transport": transport, "MaxConnections": 24,
                                          "MaxConnectionsPerClient": 8, "HeaderTimeoutMs": 10_000})
    world.add_host("attacker", "10.0.0.9/24", "fd00::9/64")
    outcome: dict = {}
    attacker = run_program(world.host("attacker").kernel, slowloris(30, 20, outcome), name="slowloris")
    world.run_for(3_000_000_000)
    g = khttpd_globals(world.host("winsrv").kernel)
    assert g.stats.refused_per_client == 22  # 30 connections, 8 admitted
    client = run_program(world.host("client").kernel, http_fetch, SERVER4, "GET", "/index.html")
    world.run_while(lambda: not client.done, max_events=2_000_000)
    client.raise_error()
    assert client.result.status == 200  # served while the slow clients hold their 8 slots
    world.run_while(lambda: not attacker.done, max_events=5_000_000)
    attacker.raise_error()
    assert g.stats.header_timeouts == 8
    assert outcome["dropped"] == 8  # the admitted ones were reset at the deadline (sends then fail)
    assert not g.connections and g.stats.connections_active == 0  # the 503'd ones were closed at once
    assert sum(" 408 " in line for line in g.access_log.lines()) == 8
