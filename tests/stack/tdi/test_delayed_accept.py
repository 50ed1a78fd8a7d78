"""Delayed accept: AcceptEx with a receive buffer completes only once the connection's first data
is in, so the server's thread wakes once, with a request to serve."""

from __future__ import annotations

import sys
from pathlib import Path

from stack.kernel import current_kernel
from stack.kernel.ke import KeDelayExecutionThread
from stack.usermode.socket import SockAddr, Socket, UserBuffer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from world_harness import lab, run_programs, start  # noqa: E402


def test_acceptex_reports_the_connection_together_with_its_first_data():
    world = lab(seed=17)
    times: dict[str, int] = {}

    def server():
        sock = yield from Socket.create(2)
        yield from sock.bind(SockAddr.parse("0.0.0.0:9200"))
        yield from sock.listen()
        buffer = UserBuffer(256)
        child, n = yield from sock.accept_ex(buffer)
        times["accepted"] = current_kernel().now_ns
        data = buffer.read(n)
        yield from child.send(b"got " + data)
        yield from child.shutdown()
        yield from child.close()
        yield from sock.close()
        buffer.free()
        return data

    def client():
        sock = yield from Socket.create(2)
        yield from sock.connect(SockAddr.parse("10.0.0.1:9200"))
        times["connected"] = current_kernel().now_ns
        yield KeDelayExecutionThread(Interval=-500 * 10_000)  # 500 ms with no data
        times["sent"] = current_kernel().now_ns
        yield from sock.send(b"GET / HTTP/1.1\r\n\r\n")
        reply = yield from sock.recv(256)
        yield from sock.close()
        return reply

    srv = start(world, "winsrv", server)
    world.run_for(10_000_000)
    cli = start(world, "client", client)
    run_programs(world, cli, srv)
    assert srv.result == b"GET / HTTP/1.1\r\n\r\n"
    assert cli.result == b"got GET / HTTP/1.1\r\n\r\n"
    assert times["accepted"] > times["sent"] >= times["connected"] + 500_000_000


def test_transmit_packets_with_tf_disconnect_puts_the_fin_on_the_last_data_segment():
    from stack.tcpip.wire.frame import parse_frame
    from stack.tcpip.wire.tcp import FIN, TcpHeader
    from stack.afd.device import TF_DISCONNECT
    world = lab(seed=19)
    payload = b"x" * 3000

    def server():
        sock = yield from Socket.create(2)
        yield from sock.bind(SockAddr.parse("0.0.0.0:9300"))
        yield from sock.listen()
        child = yield from sock.accept()
        yield from child.transmit_packets(payload, TF_DISCONNECT)
        yield from child.close()
        yield from sock.close()

    def client():
        sock = yield from Socket.create(2)
        yield from sock.connect(SockAddr.parse("10.0.0.1:9300"))
        got = b""
        while chunk := (yield from sock.recv(65536)):
            got += chunk
        yield from sock.close()
        return got

    capture = world.capture()
    srv = start(world, "winsrv", server)
    world.run_for(10_000_000)
    cli = start(world, "client", client)
    run_programs(world, cli, srv)
    capture.stop()
    assert cli.result == payload
    segments = {}
    for record in capture.records:
        decoded = parse_frame(record.frame, verify_checksum=False)
        if isinstance(decoded.transport, TcpHeader) and decoded.transport.src_port == 9300:
            segments[decoded.transport.seq] = (decoded.transport.flags, len(decoded.payload))
    fins = [v for v in segments.values() if v[0] & FIN]
    assert len(fins) == 1 and fins[0][1] > 0
