"""The user-mode socket API: every call is an IRP to \\Device\\Afd, waited on by a program thread."""

from __future__ import annotations

import sys
from pathlib import Path

from stack.kernel import STATUS_ADDRESS_ALREADY_EXISTS
from stack.afd.device import IOCTL_AFD_CONNECT, IOCTL_AFD_SEND
from stack.kernel.events import IrpDispatched, RoutineEntered
from stack.tcpip.addr import AF_INET6, SockAddr
from stack.usermode.programs import bulk_receiver, bulk_sender
from stack.usermode.socket import SOCK_STREAM, Socket, SocketError, UserBuffer, spawn, join

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from world_harness import any_address, lab, run_programs, server_address, start  # noqa: E402


def test_socket_calls_reach_afd_as_device_control_irps():
    world = lab()
    dispatched = []
    services: set[str] = set()

    def on_event(e) -> None:
        if isinstance(e, IrpDispatched):
            dispatched.append(e)
        elif isinstance(e, RoutineEntered) and e.symbol == "afd!AfdDispatchDeviceControl":
            # entered from the system service, as Winsock enters the kernel on Windows
            services.update(f.symbol for f in world.host(e.host).kernel.frames if f.symbol.startswith("nt!Nt"))

    world.bus.subscribe(on_event)
    server = start(world, "winsrv", bulk_receiver, any_address(4, 7))
    world.run_for(1_000_000)
    client = start(world, "client", bulk_sender, server_address(world, 4, 7), 100_000)
    run_programs(world, server, client)
    assert server.result.received == 100_000 and server.result.received_sha256 == client.result.sent_sha256
    afd = [e for e in dispatched if e.driver == "\\Driver\\AFD"]
    assert {e.major for e in afd} >= {0x00, 0x0E, 0x12}  # CREATE, DEVICE_CONTROL, CLEANUP
    assert any(e.host == "client" for e in afd)
    assert services == {"nt!NtDeviceIoControlFile"}


def test_recv_returns_zero_after_the_peer_shuts_down_and_accept_reports_the_peer():
    world = lab()
    seen = {}

    def server_prog():
        listener = yield from Socket.create(AF_INET6, SOCK_STREAM)
        yield from listener.bind(SockAddr.parse("[::]:80"))
        yield from listener.listen()
        conn = yield from listener.accept()
        seen["peer"] = str(conn.remote)
        seen["first"] = yield from conn.recv(100)
        seen["eof"] = yield from conn.recv(100)
        yield from conn.close()
        yield from listener.close()

    def client_prog():
        sock = yield from Socket.create(AF_INET6, SOCK_STREAM)
        yield from sock.setsockopt("TCP_NODELAY", True)
        yield from sock.connect(SockAddr.parse("[fd00::1]:80"))
        yield from sock.send(b"GET / HTTP/1.0\r\n\r\n")
        info = yield from sock.info()
        seen["nodelay"] = info["tcb"]["nodelay"]
        yield from sock.shutdown()
        yield from sock.close()

    server = start(world, "winsrv", server_prog)
    world.run_for(1_000_000)
    client = start(world, "client", client_prog)
    run_programs(world, server, client)
    assert seen["peer"].startswith("[fd00::2]:")
    assert seen["first"] == b"GET / HTTP/1.0\r\n\r\n" and seen["eof"] == b""
    assert seen["nodelay"] is True


def test_binding_a_port_twice_fails_with_address_already_exists():
    world = lab()

    def prog():
        a = yield from Socket.create()
        yield from a.bind(SockAddr.parse("0.0.0.0:8080"))
        yield from a.listen()
        b = yield from Socket.create()
        yield from b.bind(SockAddr.parse("0.0.0.0:8080"))
        try:
            yield from b.listen()
        except SocketError as err:
            return err.status
        return 0

    program = start(world, "winsrv", prog)
    run_programs(world, program)
    assert program.result == STATUS_ADDRESS_ALREADY_EXISTS


def test_programs_can_spawn_and_join_threads():
    world = lab()

    def child(n):
        yield from ()
        return n * 2

    def parent():
        kids = [spawn(child, i) for i in range(3)]
        results = []
        for kid in kids:
            results.append((yield from join(kid)))
        return results

    program = start(world, "client", parent)
    run_programs(world, program)
    assert program.result == [0, 2, 4]


_ = (IOCTL_AFD_CONNECT, IOCTL_AFD_SEND)


def test_programs_collected_while_blocked_run_no_kernel_code_and_raise_nothing():
    """The garbage collector closes a discarded lab's blocked programs whenever it runs - here in
    the middle of another lab's event, with that lab's kernel current.  Their `finally:` cleanup
    must not run kernel code (it would free the old lab's pool on the new lab's kernel)."""
    import gc

    from stack.usermode.programs import echo_server

    def idle_client(server):
        sock = yield from Socket.create(AF_INET6, SOCK_STREAM)
        buf = UserBuffer(64)
        try:
            yield from sock.connect(server)
            yield from sock.recv_into(buf)  # blocks forever: the server never speaks first
        finally:
            yield from sock.close()
            buf.free()

    unraisable = []
    previous = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    gc.disable()
    try:
        old = lab(seed=3)
        start(old, "winsrv", echo_server, any_address(6, 7))  # its connection blocks in recv (try/finally)
        old.run_for(1_000_000)
        client = start(old, "client", idle_client, server_address(old, 6, 7))
        old.run_for(50_000_000)
        assert not client.done and old.scheduler.halted is None
        del old, client
        new = lab(seed=4)
        pool_before = {key: (u.allocs, u.frees) for key, u in new.host("winsrv").kernel.pool.usage.items()}
        collected = new.run_in("winsrv", gc.collect)  # the old lab's generators are closed in here
        assert collected > 0
        assert new.scheduler.halted is None
        assert {key: (u.allocs, u.frees) for key, u in new.host("winsrv").kernel.pool.usage.items()} == pool_before
    finally:
        gc.enable()
        sys.unraisablehook = previous
    assert [repr(u.exc_value) for u in unraisable] == []
