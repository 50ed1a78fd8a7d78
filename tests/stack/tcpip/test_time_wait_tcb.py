"""TIME_WAIT held by a small time-wait TCB, as Windows' tcpip does: the full TCB is freed.

The client closes first, so its end waits 2*MSL (the lab shortens it to 2 s).  Segments are
injected from the server host as raw TCP (retransmitted FIN, RST) through the real wire path."""

from __future__ import annotations

import gc
import sys
from collections import Counter
from pathlib import Path

from stack.kernel import STATUS_PENDING, STATUS_SUCCESS
from stack.tcpip.addr import AF_INET, AF_INET6, SockAddr
from stack.tcpip.tcp import ACK, FIN, RST, TcpConnection, TcpSegment
from stack.tcpip.tcp.seq import SEQ_MASK
from stack.tcpip.tcpl.common import Tcb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from world_harness import MS, SECOND, lab  # noqa: E402

SERVER = SockAddr.parse("10.0.0.1:9000")
TIME_WAIT_NS = 2000 * MS  # lab()'s 2*MSL


def _tags(world, host: str) -> Counter:
    return Counter(block.tag_str for block in world.host(host).kernel.pool.allocated_blocks())


def _listen(world) -> None:
    """A server that closes its side once the client's FIN arrives, and keeps no reference."""
    transport = world.host("winsrv").transport

    def accept(listener, conn):
        def closed_by_peer(c, abortive, status):
            c.disconnect()
            c.close()

        conn.set_handlers(receive=lambda c, runs, n, flags: n, disconnect=closed_by_peer)
        return 0

    status, _ = world.run_in("winsrv", lambda: transport.tcp_listen(SockAddr.parse("0.0.0.0:9000"), accept))
    assert status == STATUS_SUCCESS


def _exchange(world, close_late: bool = False) -> None:
    """Connect, then close from the client side first (graceful disconnect, then close - or,
    with close_late, close only once the connection is in TIME_WAIT)."""
    transport = world.host("client").transport
    done: list[int] = []
    status, conn = world.run_in("client", lambda: transport.tcp_connect(SERVER, lambda c, st: done.append(st)))
    assert status == STATUS_PENDING
    world.run_for(SECOND // 10)
    assert done == [STATUS_SUCCESS]
    world.run_in("client", lambda: conn.disconnect(completion=done.append))
    if close_late:
        world.run_for(SECOND // 10)
        assert conn.state == "TIME_WAIT"  # the full TCB, its endpoint still open
    world.run_in("client", conn.close)
    world.run_for(SECOND // 10)
    assert done == [STATUS_SUCCESS, STATUS_SUCCESS]


def _time_wait_world():
    world = lab()
    _listen(world)
    world.run_for(SECOND // 10)
    before = _tags(world, "client")
    _exchange(world)
    tcp = world.host("client").stack.tcp
    (entry,) = tcp.time_wait.values()
    return world, tcp, entry, before


def _inject(world, entry, flags: int, seq_offset: int = 0) -> None:
    """A segment from the server for the client's 4-tuple in TIME_WAIT."""
    record = entry.record
    timestamps = (record.ts_recent + 1, 0) if record.ts_on else None
    seg = TcpSegment(entry.remote.port, entry.local.port, (record.rcv_nxt + seq_offset) & SEQ_MASK,
                     record.snd_max & SEQ_MASK, flags, 0xFFFF, None, None, False, timestamps, (), ())
    server_tcp = world.host("winsrv").stack.tcp
    world.run_in("winsrv", lambda: server_tcp._send_bare(entry.key[0], entry.key[2], seg))


def test_entering_time_wait_frees_the_full_tcb_and_its_pool_block():
    world, tcp, entry, before = _time_wait_world()
    after = _tags(world, "client")
    assert after["TcpE"] == before["TcpE"]  # the connection's full TCB block is freed
    assert after["TcpW"] == before["TcpW"] + 1  # a time-wait TCB took its place
    assert not tcp.tcbs and not tcp.connections and not tcp._tcb_of_core
    assert [(c.state, str(c.remote)) for c in world.host("client").transport.connections()] == \
        [("TIME_WAIT", str(SERVER))]
    assert tcp.port_usage()["tcp_time_wait_connections"] == 1


def test_retransmitted_fin_in_time_wait_is_acked_and_restarts_the_timer():
    world, tcp, entry, _ = _time_wait_world()
    world.run_for(TIME_WAIT_NS // 2)
    sent = world.host("client").stack.counters.tcp_segments_sent
    _inject(world, entry, FIN | ACK, seq_offset=-1)  # the server's FIN again, as if our ACK was lost
    world.run_for(MS)
    assert world.host("client").stack.counters.tcp_segments_sent == sent + 1  # the FIN is ACKed again
    restarted = entry.record.expires_at
    assert restarted >= world.scheduler.now_ns - MS + TIME_WAIT_NS - MS
    world.run_for(TIME_WAIT_NS // 2 + 10 * MS)  # past the first expiry
    assert tcp.time_wait.get(entry.key) is entry
    world.run_for(TIME_WAIT_NS // 2)
    assert entry.key not in tcp.time_wait


def test_rst_in_time_wait_is_ignored():
    world, tcp, entry, _ = _time_wait_world()
    sent = world.host("client").stack.counters.tcp_segments_sent
    expires = entry.record.expires_at
    _inject(world, entry, RST)  # RFC 1337: no TIME-WAIT assassination
    world.run_for(MS)
    assert tcp.time_wait.get(entry.key) is entry and entry.record.expires_at == expires
    assert world.host("client").stack.counters.tcp_segments_sent == sent


def test_time_wait_expiry_frees_the_port_and_the_time_wait_tcb():
    world, tcp, entry, before = _time_wait_world()
    in_use = tcp.port_usage()["tcp_dynamic_ports_in_use"]
    world.run_for(TIME_WAIT_NS)
    assert not tcp.time_wait
    usage = tcp.port_usage()
    assert usage["tcp_time_wait_connections"] == 0 and usage["tcp_dynamic_ports_in_use"] == in_use - 1
    assert _tags(world, "client")["TcpW"] == before["TcpW"]
    assert world.host("client").transport.connections() == []


def test_sequential_connections_leave_small_records_not_tcbs():
    # Another module's lab may be alive in this worker, with connections on the same ports: only
    # objects that did not exist before this test count (held here, so no id is reused meanwhile).
    gc.collect()
    already = [o for o in gc.get_objects() if isinstance(o, (TcpConnection, Tcb))]
    existed = {id(o) for o in already}
    world = lab(time_wait_ms=60_000)  # all 20 still in TIME_WAIT at the end
    _listen(world)
    world.run_for(SECOND // 10)
    for _ in range(20):
        _exchange(world)
    tcp = world.host("client").stack.tcp
    assert len(tcp.time_wait) == 20 and not tcp.tcbs and not tcp.connections
    gc.collect()
    client_ports = {key[1] for key in tcp.time_wait}
    cores = [o for o in gc.get_objects() if isinstance(o, TcpConnection) and o.local_port in client_ports
             and id(o) not in existed]
    assert cores == []
    # nor their TCB records: the cancelled per-TCB timers waiting in the scheduler's heap let go of them
    tcbs = [o for o in gc.get_objects() if isinstance(o, Tcb) and o.key in tcp.time_wait and id(o) not in existed]
    del already
    assert tcbs == []
    assert _tags(world, "client")["TcpW"] == 20


def test_closing_in_time_wait_swaps_in_the_time_wait_tcb_and_lets_the_full_tcb_go():
    world = lab(time_wait_ms=60_000)
    _listen(world)
    world.run_for(SECOND // 10)
    for _ in range(5):
        _exchange(world, close_late=True)
    tcp = world.host("client").stack.tcp
    assert len(tcp.time_wait) == 5 and not tcp.tcbs
    gc.collect()
    # the full TCB's 2*MSL timer was cancelled but waits in the scheduler's heap: it must let go of the TCB
    assert [o for o in gc.get_objects() if isinstance(o, Tcb) and o.key in tcp.time_wait] == []


def test_time_wait_table_past_its_bound_reclaims_the_oldest_early_and_counts_it():
    # As Windows reuses time-wait TCBs past MaxFreeTcbs (KB Q151418): the table never holds more
    # than its bound, the records released are the oldest, and `!netstat -s` counts them.
    world = lab(time_wait_ms=60_000)  # none would expire on its own during the test
    _listen(world)
    world.run_for(SECOND // 10)
    tcp = world.host("client").stack.tcp
    tcp.max_time_wait_tcbs = 4
    before = _tags(world, "client")["TcpW"]
    ports = []
    for _ in range(7):
        _exchange(world)
        ports.append(max(tcp.time_wait.values(), key=lambda e: e.record.expires_at).local.port)
        assert len(tcp.time_wait) <= 4
    assert sorted(e.local.port for e in tcp.time_wait.values()) == sorted(ports[-4:])  # the 3 oldest went
    assert world.host("client").stack.counters.tcp_time_wait_reclaimed == 3
    assert world.host("client").transport.counters()["tcp_time_wait_reclaimed"] == 3
    assert _tags(world, "client")["TcpW"] == before + 4  # their pool blocks were freed too
    assert tcp.port_usage()["tcp_time_wait_connections"] == 4
    world.run_for(60 * SECOND)  # the rest expire normally, with nothing more reclaimed
    assert not tcp.time_wait
    assert world.host("client").stack.counters.tcp_time_wait_reclaimed == 3


def test_time_wait_bound_defaults_to_max_free_tcbs_of_a_64_mb_server():
    from stack.tcpip.tcpl.timewait import MAX_TIME_WAIT_TCBS
    world = lab()
    assert MAX_TIME_WAIT_TCBS == 2000  # MaxFreeTcbs, Windows 2000 Server with 64 MB or more (cc938178)
    assert world.host("client").stack.tcp.max_time_wait_tcbs == MAX_TIME_WAIT_TCBS


def _closed_into_time_wait(world, conn) -> tuple[str, str]:
    """Close `conn` (connected) from its side first; its addresses as its endpoint showed them."""
    done: list[int] = []
    shown = (str(conn.local), str(conn.remote))
    world.run_in("client", lambda: conn.disconnect(completion=done.append))
    world.run_in("client", conn.close)
    world.run_for(SECOND // 10)
    assert done == [STATUS_SUCCESS]
    return shown


def test_time_wait_tcb_shows_the_addresses_its_endpoint_showed_v4_and_dual_stack() -> None:
    """The record keeps only the 4-tuple's bytes; `local`/`remote` (!tcpconn, netstat) are rebuilt
    from them - as ::ffff:a.b.c.d for a dual-stack socket's IPv4 connection, as its endpoint had."""
    world = lab()
    _listen(world)
    world.run_for(SECOND // 10)
    transport = world.host("client").transport
    shown = []
    for local, family in ((None, AF_INET), (SockAddr.parse("[::]:0"), AF_INET6)):
        status, conn = world.run_in("client", lambda: transport.tcp_socket(local, family, v6only=False))
        assert status == STATUS_SUCCESS
        connected: list[int] = []
        assert world.run_in("client", lambda: conn.connect(SERVER, lambda c, st: connected.append(st))) \
            == STATUS_PENDING
        world.run_for(SECOND // 10)
        assert connected == [STATUS_SUCCESS]
        shown.append(_closed_into_time_wait(world, conn))
    tcp = world.host("client").stack.tcp
    assert shown[1][0].startswith("[::ffff:") and shown[1][1].startswith("[::ffff:")  # v4-mapped
    assert sorted((str(e.local), str(e.remote)) for e in tcp.time_wait.values()) == sorted(shown)
    assert sorted((s["local"], s["remote"]) for s in (e.snapshot() for e in tcp.time_wait.values())) == sorted(shown)
