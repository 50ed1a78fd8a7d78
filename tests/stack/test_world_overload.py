"""Issue 12's overload behaviour, end to end through afd, tcpip, NDIS and the wire.

* Listen backlog overflow: a slow user-mode server (one thread, backlog 5) on winsrv's one
  2003-era processor, and a burst of connects from client.  Windows refuses what does not fit in
  the backlog with a RST to the SYN (WSAECONNREFUSED at the client; KB 113576), where Linux would
  drop the SYN; `!netstat -s` counts them as Connections Refused (backlog full).
* Ephemeral-port exhaustion: client opens short connections one after another and closes first,
  so each leaves a TIME_WAIT (240 s) holding its port; with the dynamic range shrunk to netsh's
  minimum of 255 ports, the 256th connect fails with STATUS_INSUFFICIENT_RESOURCES (WSAENOBUFS).
"""

from __future__ import annotations

from stack.kernel import STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER, STATUS_SUCCESS
from stack.kernel.ntstatus import STATUS_CONNECTION_REFUSED, STATUS_CONNECTION_RESET
from stack.usermode.connload import ConnLoadStats, connect_burst, connect_serial, slow_server
from stack.usermode.socket import run_program
from stack.world import default_world

from world_harness import SECOND, run_programs


def _world(backlog: int, work_ns: int, stats: ConnLoadStats):  # type: ignore[no-untyped-def]
    world = default_world(1, services=False)
    world.set_processors("winsrv", "2003", 1)
    run_program(world.host("winsrv").kernel, slow_server, stats, backlog, work_ns, name="slow-server")
    world.run_for(1_000_000)
    return world


def test_backlog_overflow_is_refused_with_rst_and_counted() -> None:
    stats = ConnLoadStats()
    world = _world(5, 2_000_000, stats)  # 2 ms of work per request: at most 500 served a second
    burst = run_program(world.host("client").kernel, connect_burst, stats, "10.0.0.1", 40, 2000, name="burst")
    run_programs(world, burst, max_time_ns=30 * SECOND)
    refused = stats.outcomes[STATUS_CONNECTION_REFUSED]
    reset = stats.outcomes[STATUS_CONNECTION_RESET]
    assert refused > 0 and stats.outcomes["ok"] + refused + reset == 40
    assert stats.outcomes["ok"] >= 5 + 1  # the backlog's five, and the one being served
    server = world.host("winsrv").stack.counters
    client = world.host("client").stack.counters
    # A SYN that found the backlog full got a RST (refused); a handshake that completed while the
    # server's thread ran and found it full was reset.  Both count once.
    assert server.tcp_backlog_refusals == refused + reset and server.tcp_resets_sent >= refused + reset
    assert client.tcp_failed_connection_attempts == refused
    assert server.tcp_syn_queue_drops == 0  # refused at once, not dropped: nobody waited for a SYN retry


def test_dynamic_port_range_shrunk_to_255_runs_out_and_counts_the_failures() -> None:
    stats = ConnLoadStats()
    world = _world(50, 0, stats)
    client_tcp = world.host("client").stack.tcp
    assert client_tcp.set_dynamic_ports(1024, 1000) == STATUS_INVALID_PARAMETER  # netsh: start >= 1025
    assert client_tcp.set_dynamic_ports(50000, 254) == STATUS_INVALID_PARAMETER  # netsh: at least 255 ports
    assert client_tcp.set_dynamic_ports(50000, 255) == STATUS_SUCCESS
    serial = run_program(world.host("client").kernel, connect_serial, stats, "10.0.0.1", 260, name="serial")
    run_programs(world, serial, max_time_ns=60 * SECOND)
    assert stats.outcomes["ok"] == 255 and stats.outcomes[STATUS_INSUFFICIENT_RESOURCES] == 5
    world.run_for(100_000_000)  # the server closes its side of the last connection
    counters = world.host("client").stack.transport.counters()
    assert counters["tcp_port_exhaustion_failures"] == 5
    assert counters["tcp_time_wait_connections"] == 255
    assert counters["tcp_dynamic_ports_in_use"] == 255 and counters["tcp_dynamic_ports_free"] == 0
    world.run_for(241 * SECOND)  # TcpTimedWaitDelay (240 s) later every port is free again
    counters = world.host("client").stack.transport.counters()
    assert counters["tcp_time_wait_connections"] == 0 and counters["tcp_dynamic_ports_free"] == 255
