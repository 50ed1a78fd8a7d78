"""The transport's client interface (what the WSK provider uses), driven directly with callbacks."""

from __future__ import annotations

import sys
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from stack.kernel import (STATUS_ADDRESS_ALREADY_EXISTS, STATUS_CONNECTION_REFUSED, STATUS_CONNECTION_RESET,
                          STATUS_HOST_UNREACHABLE, STATUS_NETWORK_UNREACHABLE, STATUS_PENDING, STATUS_SUCCESS,
                          IoAllocateMdl, MmBuildMdlForNonPagedPool)
from stack.kernel.ex import ExAllocatePoolWithTag
from stack.kernel.pool import NonPagedPoolNx
from stack.tcpip.addr import SockAddr
from stack.tcpip.transport import ACCEPT, REFUSE, get_transport

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from world_harness import SECOND, lab  # noqa: E402

SERVER4 = SockAddr.parse("10.0.0.1:9000")


def _buffer(kernel, data: bytes):
    """A nonpaged buffer holding `data` and an MDL over it (what a WSK client passes)."""
    va = ExAllocatePoolWithTag(NonPagedPoolNx, max(len(data), 1), "Test")
    kernel.write(va, data)
    mdl = IoAllocateMdl(va, max(len(data), 1))
    MmBuildMdlForNonPagedPool(mdl)
    return mdl


class Server:
    """A listener whose accept handler takes every connection and collects data zero-copy."""

    def __init__(self, world, local: SockAddr = SockAddr(IPv4Address(0), 9000), take: int | None = None,
                 accept_verdict: int = ACCEPT, v6only: bool = False) -> None:
        self.world = world
        self.data = bytearray()
        self.conns = []
        self.disconnects = []
        self.take = take
        self.verdict = accept_verdict
        transport = world.host("winsrv").transport
        status, self.listener = world.run_in("winsrv", lambda: transport.tcp_listen(local, self.accept,
                                                                                      v6only=v6only))
        assert status == STATUS_SUCCESS

    def accept(self, listener, conn):
        self.conns.append(conn)
        conn.set_handlers(receive=self.receive, disconnect=lambda c, abortive, st: self.disconnects.append(
            (abortive, st)))
        return self.verdict

    def receive(self, conn, runs, nbytes, flags):
        n = nbytes if self.take is None else min(self.take, nbytes)
        left = n
        for _, view in runs:
            piece = view[:left]
            self.data += piece
            left -= len(piece)
        return n


def _connect(world, remote: SockAddr):
    transport = world.host("client").transport
    results = []
    status, conn = world.run_in("client", lambda: transport.tcp_connect(
        remote, lambda c, st: results.append(st)))
    return status, conn, results


def test_accept_handler_sees_addresses_and_receive_upcall_is_zero_copy():
    world = lab()
    server = Server(world)
    status, conn, results = _connect(world, SERVER4)
    assert status == STATUS_PENDING
    world.run_for(SECOND // 10)
    assert results == [STATUS_SUCCESS]
    accepted = server.conns[0]
    assert str(accepted.local) == "10.0.0.1:9000" and str(accepted.remote) == str(conn.local)
    assert conn.local.port >= 49152
    sent = []
    k = world.host("client").kernel
    payload = bytes(range(256)) * 64
    world.run_in("client", lambda: conn.send(_buffer(k, payload), 0, len(payload),
                                             lambda st, n: sent.append((st, n))))
    world.run_for(SECOND)
    assert bytes(server.data) == payload
    assert sent == [(STATUS_SUCCESS, len(payload))]  # completed once acknowledged
    assert world.host("winsrv").kernel.copies.total_bytes == 0  # the upcall took the NIC's pages


def test_bytes_the_handler_leaves_are_offered_again_and_fill_a_posted_receive():
    world = lab()
    server = Server(world, take=100)
    _, conn, _ = _connect(world, SERVER4)
    world.run_for(SECOND // 10)
    k = world.host("client").kernel
    payload = b"a" * 3000
    world.run_in("client", lambda: conn.send(_buffer(k, payload), 0, len(payload)))
    world.run_for(SECOND // 10)
    accepted = server.conns[0]
    assert len(server.data) >= 100 and accepted.recv_available == 3000 - len(server.data)
    got = []
    kw = world.host("winsrv").kernel
    left = accepted.recv_available
    target = world.run_in("winsrv", lambda: _buffer(kw, bytes(4096)))
    server.take = 0
    world.run_in("winsrv", lambda: accepted.receive(target, 0, 4096, lambda st, n: got.append((st, n))))
    world.run_for(SECOND)
    assert got and got[0] == (STATUS_SUCCESS, left)
    copied = kw.copies.snapshot()["tcp receive into client MDL"]
    assert copied[1] == left  # exactly one counted copy of the bytes nobody took


def test_graceful_disconnect_reaches_the_peer_after_its_data():
    world = lab()
    server = Server(world)
    _, conn, _ = _connect(world, SERVER4)
    world.run_for(SECOND // 10)
    k = world.host("client").kernel
    done = []
    world.run_in("client", lambda: conn.send(_buffer(k, b"bye"), 0, 3))
    world.run_in("client", lambda: conn.disconnect(completion=done.append))
    world.run_for(SECOND)
    assert bytes(server.data) == b"bye"
    assert server.disconnects == [(False, STATUS_SUCCESS)]
    assert done == [STATUS_SUCCESS]
    assert conn.state in ("FIN_WAIT_2", "TIME_WAIT")


def test_abortive_disconnect_resets_the_peer():
    world = lab()
    server = Server(world)
    _, conn, _ = _connect(world, SERVER4)
    world.run_for(SECOND // 10)
    assert world.run_in("client", lambda: conn.disconnect(abortive=True)) == STATUS_SUCCESS
    world.run_for(SECOND // 10)
    assert server.disconnects == [(True, STATUS_CONNECTION_RESET)]
    assert server.conns[0].state == "CLOSED"


def test_refusing_in_the_accept_handler_resets_the_connector():
    world = lab()
    server = Server(world, accept_verdict=REFUSE)
    _, conn, results = _connect(world, SERVER4)
    world.run_for(SECOND // 10)
    disconnects = []
    conn.disconnect_handler = lambda c, abortive, st: disconnects.append((abortive, st))
    world.run_for(SECOND // 10)
    assert results == [STATUS_SUCCESS]  # the handshake had completed
    assert conn.state == "CLOSED"
    assert server.conns and server.conns[0].state == "CLOSED"


def test_connect_statuses_refused_unreachable_and_no_route():
    world = lab()
    _, _, refused = _connect(world, SockAddr.parse("10.0.0.1:1"))
    world.run_for(SECOND)
    assert refused == [STATUS_CONNECTION_REFUSED]
    _, _, unreachable = _connect(world, SockAddr.parse("10.0.0.77:80"))
    world.run_for(10 * SECOND)
    assert unreachable == [STATUS_HOST_UNREACHABLE]
    status, conn, _ = _connect(world, SockAddr.parse("192.168.5.5:80"))
    assert status == STATUS_NETWORK_UNREACHABLE and conn is None


def test_dual_stack_listener_sees_ipv4_peers_as_mapped_addresses():
    world = lab()
    server = Server(world, local=SockAddr(IPv6Address(0), 9000))
    _, conn4, r4 = _connect(world, SERVER4)
    _, conn6, r6 = _connect(world, SockAddr.parse("[fd00::1]:9000"))
    world.run_for(SECOND // 10)
    assert r4 == [STATUS_SUCCESS] and r6 == [STATUS_SUCCESS]
    remotes = sorted(str(c.remote.ip.ipv4_mapped or c.remote.ip) for c in server.conns)
    assert remotes == ["10.0.0.2", "fd00::2"]
    assert all(c.remote.ip.version == 6 for c in server.conns)


def test_v6only_listener_does_not_take_ipv4_and_ports_conflict():
    world = lab()
    Server(world, local=SockAddr(IPv6Address(0), 9000), v6only=True)
    _, _, r4 = _connect(world, SERVER4)
    world.run_for(SECOND)
    assert r4 == [STATUS_CONNECTION_REFUSED]
    transport = world.host("winsrv").transport
    status, _ = world.run_in("winsrv", lambda: transport.tcp_listen(SockAddr(IPv6Address(0), 9000)))
    assert status == STATUS_ADDRESS_ALREADY_EXISTS


def test_tcb_lives_in_pool_with_its_tag_and_snapshot():
    world = lab()
    Server(world)
    _, conn, _ = _connect(world, SERVER4)
    world.run_for(SECOND // 10)
    kernel = world.host("client").kernel
    block = kernel.pool.block_containing(conn.address)
    assert block.tag_str == "TcpE" and block.allocated
    snap = conn.snapshot()
    assert snap["state"] == "ESTABLISHED" and snap["address"] == conn.address
    assert snap["local"] == str(conn.local) and snap["remote"] == "10.0.0.1:9000"
    conn.nodelay = True
    assert conn.snapshot()["nodelay"] is True
    assert kernel.object_at(conn.address) is conn


def test_name_resolution_uses_literals_hosts_table_and_the_resolver_hook():
    world = lab()
    transport = get_transport(world.host("client").kernel)
    got = []
    transport.resolve("winsrv", lambda st, addrs: got.append((st, [str(a) for a in addrs])))
    transport.resolve("fd00::9", lambda st, addrs: got.append((st, [str(a) for a in addrs])))
    transport.set_resolver(lambda name, family, done: (done(STATUS_SUCCESS, [IPv4Address("93.184.216.34")]),
                                                       STATUS_PENDING)[1])
    transport.resolve("example.com", lambda st, addrs: got.append((st, [str(a) for a in addrs])))
    assert got == [(STATUS_SUCCESS, ["10.0.0.1", "fd00::1"]), (STATUS_SUCCESS, ["fd00::9"]),
                   (STATUS_SUCCESS, ["93.184.216.34"])]


def test_udp_send_bytes_to_passes_the_callers_buffer_through_to_one_counted_copy():
    world = lab()
    got: list[bytes] = []
    server_t = world.host("winsrv").transport
    status, _ = world.run_in("winsrv", lambda: server_t.udp_open(
        SockAddr(IPv4Address(0), 9100),
        receive=lambda ep, remote, runs, n: got.append(b"".join(view for _, view in runs))))
    assert status == STATUS_SUCCESS
    client = world.host("client")
    udp = client.stack.udp
    handed: list[object] = []
    real_send_to = udp.send_to

    def spy(endpoint, remote, data, completion):
        handed.append(data)
        return real_send_to(endpoint, remote, data, completion)

    udp.send_to = spy  # instance attribute: only this host's UDP layer
    before = client.kernel.copies.snapshot().get("udp send from buffer", (0, 0))
    payload = bytearray(b"a datagram from a bytearray")

    def send():
        _, ep = client.transport.udp_open(SockAddr(IPv4Address(0), 0))
        return ep.send_bytes_to(SockAddr.parse("10.0.0.1:9100"), payload)

    assert world.run_in("client", send) == STATUS_SUCCESS
    world.run_for(SECOND)
    assert got == [bytes(payload)]
    # No private bytes() copy on the way: UDP sees a view of the caller's own buffer.
    assert isinstance(handed[0], memoryview) and handed[0].obj is payload
    after = client.kernel.copies.snapshot()["udp send from buffer"]
    assert (after[0] - before[0], after[1] - before[1]) == (1, len(payload))
