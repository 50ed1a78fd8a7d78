"""afd's send buffering for user-mode sockets (stack/afd/sendbuf.py), end to end: a program's send goes
through \\Device\\Afd, tcpip, NDIS, the NICs and the switch to a program on the other host.

The rules are KB 214397's: a send completes once afd has copied it while the socket is within its
SO_SNDBUF quota, or beyond it with one buffered send ahead; otherwise when tcpip has finished enough
earlier sends.  SO_SNDBUF 0 is the lab's old behaviour: complete when the peer has acknowledged."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stack.afd.sendbuf import AFD_BUFFER_TAG, AFD_DEFAULT_SEND_WINDOW, may_complete
from stack.kernel import STATUS_CONNECTION_RESET, KeDelayExecutionThread, current_kernel
from stack.usermode.programs import bulk_receiver, bulk_sender, pattern
from stack.usermode.socket import AF_INET, SOCK_STREAM, Socket, SocketError, UserBuffer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from world_harness import any_address, echo_exchange, lab, run_programs, server_address, start  # noqa: E402

KiB = 1024


def _now() -> int:
    return current_kernel().now_ns


def _afd_buffers(world, host: str = "client") -> int:
    return sum(1 for b in world.host(host).kernel.pool.allocated_blocks() if b.tag_str == AFD_BUFFER_TAG)


def _afd_endpoints_of(k) -> int:
    from stack.afd.device import AfdEndpoint
    return sum(isinstance(obj, AfdEndpoint) for obj in k.addr_objects.values())


def _afd_endpoints_of_client() -> int:
    from stack.kernel import current_kernel
    return _afd_endpoints_of(current_kernel())


def _timed_sender(server, sizes, sndbuf, log, *, close_at_once=False):
    """Send one block per size; log (size, virtual ns the send took, tcpip's unacknowledged bytes right after)."""
    def sender():
        sock = yield from Socket.create(server.family, SOCK_STREAM)
        if sndbuf is not None:
            yield from sock.setsockopt("SO_SNDBUF", sndbuf)
        yield from sock.connect(server)
        buf = UserBuffer(max(sizes))
        buf.write(pattern(5, max(sizes)))
        for size in sizes:
            began = _now()
            yield from sock.send(buf, size)
            info = yield from sock.info()
            log.append((size, _now() - began, info["tcb"]["send_queued"]))
        log.append(("sent all", _now()))
        if not close_at_once:
            yield from sock.shutdown()
        yield from sock.close()
        log.append(("closed", _now(), _afd_endpoints_of_client()))
        buf.free()
    return sender


def _transfer(sizes, sndbuf, *, seed=1, close_at_once=False):
    world = lab(seed=seed)
    log: list = []
    server = start(world, "winsrv", bulk_receiver, any_address(4, 9))
    world.run_for(1_000_000)
    client = start(world, "client", _timed_sender(server_address(world, 4, 9), sizes, sndbuf, log,
                                                  close_at_once=close_at_once))
    run_programs(world, server, client)
    return world, server.result, log


def test_a_send_completes_before_the_ack_with_the_default_buffer():
    world, received, log = _transfer([1000], None)
    size, took, unacked = log[0]
    assert took == 0  # completed inside the call: afd copied it
    assert unacked == 1000  # ... while tcpip still waits for the peer's ACK of every byte
    assert received.received == 1000
    assert _afd_buffers(world) == 0  # the copy is freed once tcpip is done with it


def test_a_send_completes_on_the_ack_with_sndbuf_0():
    world, received, log = _transfer([1000], 0)
    size, took, unacked = log[0]
    assert took > 0 and unacked == 0  # the call returned once the peer had acknowledged it all
    assert "afd send buffer" not in world.host("client").kernel.copies.snapshot()  # and nothing was copied


def test_a_send_larger_than_the_buffer_completes_at_once_and_the_third_waits_for_the_first():
    # SO_SNDBUF 8 KiB, 256 KiB sends: the first finds nothing buffered (within the quota), the second
    # one buffered send ahead (beyond the quota, allowed); the third must wait until tcpip has
    # finished the first.
    world, received, log = _transfer([256 * KiB] * 3, 8 * KiB)
    took = [entry[1] for entry in log[:3]]
    assert took[0] == 0 and took[1] == 0 and took[2] > 0
    assert received.received == 3 * 256 * KiB


def test_small_sends_complete_at_once_until_the_quota_is_reached():
    assert may_complete(0, 0, 8192) and may_complete(8191, 5, 8192)  # within the quota
    assert may_complete(100_000, 1, 8192)  # beyond it, one send ahead
    assert not may_complete(8192, 2, 8192)  # beyond it, two ahead: wait
    assert may_complete(0, 0, 0) and may_complete(5, 1, 0) and not may_complete(5, 2, 0)


def test_every_send_waits_for_its_ack_with_sndbuf_0_and_the_buffered_transfer_finishes_sooner():
    _, _, unbuffered = _transfer([64 * KiB] * 8, 0)
    _, _, buffered = _transfer([64 * KiB] * 8, None)
    assert all(entry[1] > 0 for entry in unbuffered[:8])
    assert sum(1 for entry in buffered[:8] if entry[1] == 0) >= 2
    assert buffered[8][1] < unbuffered[8][1]  # "sent all" reached sooner in virtual time


def test_graceful_close_right_after_the_sends_still_delivers_all_buffered_data():
    sizes = [256 * KiB] * 4
    world, received, log = _transfer(sizes, None, close_at_once=True)
    assert received.received == sum(sizes)
    _, closed_at, endpoints_at_close = log[-1]
    assert received.received_sha256 == _sha(sizes)
    assert closed_at < world.now_ns  # closesocket returned while the data was still on its way
    assert endpoints_at_close == 1  # ... and the endpoint lingered with it (!afd still lists it)
    world.run_for(3_000_000_000)
    assert _afd_buffers(world) == 0
    k = world.host("client").kernel
    assert _afd_endpoints_of(k) == 0  # freed with the last buffered send
    assert not any(b.tag_str == "AfdE" for b in k.pool.allocated_blocks())


def _sha(sizes):
    import hashlib
    digest = hashlib.sha256()
    block = pattern(5, max(sizes))
    for size in sizes:
        digest.update(block[:size])
    return digest.hexdigest()


def test_an_abort_discards_buffered_data_and_frees_the_buffers():
    world = lab(seed=2)
    got = {}

    def receiver():
        listener = yield from Socket.create(AF_INET, SOCK_STREAM)
        yield from listener.bind(any_address(4, 9))
        yield from listener.listen()
        conn = yield from listener.accept()
        total = 0
        try:
            while True:
                data = yield from conn.recv(64 * KiB)
                if not data:
                    break
                total += len(data)
        except SocketError as err:
            got["error"] = err.status
        got["received"] = total
        yield from conn.close()
        yield from listener.close()

    def sender():
        sock = yield from Socket.create(AF_INET, SOCK_STREAM)
        yield from sock.connect(server_address(world, 4, 9))
        buf = UserBuffer(256 * KiB)
        for _ in range(4):
            yield from sock.send(buf)
        got["buffered_sends_done_at"] = _now()
        yield from sock.shutdown(abortive=True)  # RST: what afd still holds is thrown away
        yield from sock.close()
        buf.free()

    server = start(world, "winsrv", receiver)
    world.run_for(1_000_000)
    client = start(world, "client", sender)
    run_programs(world, server, client)
    assert got["received"] < 4 * 256 * KiB
    assert got["error"] == STATUS_CONNECTION_RESET
    world.run_for(1_000_000_000)
    assert _afd_buffers(world) == 0


def test_a_reset_after_the_send_completed_is_reported_by_the_next_send_and_recv():
    world = lab(seed=3)
    got = {}

    def rude_receiver():
        listener = yield from Socket.create(AF_INET, SOCK_STREAM)
        yield from listener.bind(any_address(4, 9))
        yield from listener.listen()
        conn = yield from listener.accept()
        yield KeDelayExecutionThread(Interval=-10_000)  # 1 ms: the data arrives, unread
        yield from conn.close()  # unread data: closesocket resets the connection
        yield from listener.close()

    def sender():
        sock = yield from Socket.create(AF_INET, SOCK_STREAM)
        yield from sock.connect(server_address(world, 4, 9))
        buf = UserBuffer(200 * KiB)
        yield from sock.send(buf)  # buffered: completes at once, successfully
        got["first"] = "ok"
        yield KeDelayExecutionThread(Interval=-50 * 10_000)  # 50 ms: the RST comes back meanwhile
        try:
            yield from sock.send(buf, 100)
        except SocketError as err:
            got["second"] = err.status
        try:
            yield from sock.recv(100)
        except SocketError as err:
            got["recv"] = err.status
        yield from sock.close()
        buf.free()

    server = start(world, "winsrv", rude_receiver)
    world.run_for(1_000_000)
    client = start(world, "client", sender)
    run_programs(world, server, client)
    assert got == {"first": "ok", "second": STATUS_CONNECTION_RESET, "recv": STATUS_CONNECTION_RESET}
    assert _afd_buffers(world) == 0


def test_getsockopt_so_sndbuf_and_the_ideal_send_backlog():
    world = lab(seed=4)
    got = {}

    def prog():
        sock = yield from Socket.create(AF_INET, SOCK_STREAM)
        got["default"] = yield from sock.getsockopt("SO_SNDBUF")
        try:
            yield from sock.ideal_send_backlog()
        except SocketError as err:
            got["isb unconnected"] = err.status
        try:
            yield from sock.setsockopt("SO_SNDBUF", -1)
        except SocketError as err:
            got["negative"] = err.status
        yield from sock.setsockopt("SO_SNDBUF", 0)
        got["set"] = yield from sock.getsockopt("SO_SNDBUF")
        yield from sock.connect(server_address(world, 4, 9))
        got["isb"] = yield from sock.ideal_send_backlog()
        yield from sock.close()

    server = start(world, "winsrv", bulk_receiver, any_address(4, 9))
    world.run_for(1_000_000)
    client = start(world, "client", prog)
    run_programs(world, server, client)
    assert got["default"] == AFD_DEFAULT_SEND_WINDOW == 8192
    assert got["set"] == 0
    assert got["isb"] == 0x10000
    assert got["isb unconnected"] and got["negative"]


@pytest.mark.parametrize("sndbuf", [None, 0], ids=["buffered", "sndbuf0"])
def test_an_echo_through_every_layer_is_byte_exact_with_and_without_buffering(sndbuf):
    world = lab(seed=6)
    data = pattern(6, 1024 * KiB)
    client, server = echo_exchange(world, 4, data, sndbuf=sndbuf)
    assert client.received == len(data) and client.received_sha256 == client.sent_sha256
    world.run_for(1_000_000_000)
    assert _afd_buffers(world, "client") == _afd_buffers(world, "winsrv") == 0


def test_buffered_sends_are_deterministic():
    runs = [_transfer([64 * KiB, 1000, 256 * KiB, 3000, 64 * KiB], None, seed=8)[2] for _ in range(2)]
    assert runs[0] == runs[1]


def test_a_fin_riding_the_last_large_send_is_delivered_the_same_with_and_without_pass_through():
    # With afd's buffering a shutdown right after the sends puts the FIN on the last data segment of a
    # large send.  RSC never coalesces a FIN segment; the pass-through path must end the unit there
    # too, or tcpip never sees the FIN and the sender retransmits it after an RTO.
    ends = {}
    for passthrough in (True, False):
        world = lab(seed=1, rsc=True)
        for host in world.hosts.values():
            host.nic.passthrough = passthrough
        server = start(world, "winsrv", bulk_receiver, any_address(4, 9))
        world.run_for(1_000_000)
        began = world.now_ns
        client = start(world, "client", bulk_sender, server_address(world, 4, 9), 4 * 64 * KiB, 64 * KiB)
        run_programs(world, server, client)
        assert server.result.received == 4 * 64 * KiB
        ends[passthrough] = (world.now_ns - began,
                             world.host("client").stack.counters.tcp_segments_retransmitted)
    assert ends[True] == ends[False]
    assert ends[True][0] < 10_000_000 and ends[True][1] == 0  # no RTO: the FIN arrived with the data


def test_overlapped_sends_complete_at_once_until_the_quota_rule_pends_them():
    # WSASend with WSAOVERLAPPED: the first two 256 KiB sends complete inside the call (WSASend
    # returns 0), the third pends (WSA_IO_PENDING) until tcpip has finished the first.
    world = lab(seed=5)
    got = {}

    def sender():
        sock = yield from Socket.create(AF_INET, SOCK_STREAM)
        yield from sock.setsockopt("SO_SNDBUF", 8 * KiB)
        yield from sock.connect(server_address(world, 4, 9))
        bufs = [UserBuffer(256 * KiB) for _ in range(4)]
        for i, buf in enumerate(bufs):
            buf.write(pattern(i, 256 * KiB))
        issued = []
        for buf in bufs:
            issued.append((yield from sock.send_overlapped(buf)))
        got["pending"] = [ov.pending for ov in issued]
        got["sent"] = []
        for ov in issued:
            got["sent"].append((yield from ov.result()))
        yield from sock.shutdown()
        yield from sock.close()
        for buf in bufs:
            buf.free()

    server = start(world, "winsrv", bulk_receiver, any_address(4, 9))
    world.run_for(1_000_000)
    client = start(world, "client", sender)
    run_programs(world, server, client)
    assert got["pending"] == [False, False, True, True]
    assert got["sent"] == [256 * KiB] * 4
    import hashlib
    digest = hashlib.sha256()
    for i in range(4):
        digest.update(pattern(i, 256 * KiB))
    assert server.result.received_sha256 == digest.hexdigest()


def test_with_no_pool_for_the_copy_a_send_falls_back_to_completing_on_its_ack(monkeypatch):
    import stack.afd.sendbuf as sendbuf
    monkeypatch.setattr(sendbuf, "ExAllocatePoolWithTag", lambda pool_type, size, tag: 0)
    world, received, log = _transfer([1000, 1000], None)
    assert all(took > 0 and unacked == 0 for _, took, unacked in log[:2])  # as with SO_SNDBUF 0
    assert received.received == 2000
    assert "afd send buffer" not in world.host("client").kernel.copies.snapshot()
