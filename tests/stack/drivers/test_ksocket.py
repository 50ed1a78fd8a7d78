"""KSOCKET's demo driver: HTTP GET of httpbin.org/uuid over WSK (DNS over UDP), then a 9095 server."""

from __future__ import annotations

from typing import Any, Generator

from stack import wsk
from stack.drivers import ksocket
from stack.kernel import IoLoadDriver, STATUS_UNSUCCESSFUL
from stack.kernel.events import DebugPrint, DriverLoaded
from stack.tcpip.addr import AF_INET, SockAddr
from stack.usermode import httpbin
from stack.usermode.socket import SOCK_STREAM, Socket, run_program
from stack.world import default_world


def _usermode_client(server: SockAddr, message: bytes) -> Generator[Any, Any, bytes]:
    sock = yield from Socket.create(AF_INET, SOCK_STREAM)
    yield from sock.connect(server)
    yield from sock.send(message)
    reply = yield from sock.recv(100)
    yield from sock.close()
    return reply


def _lab(seed: int = 1):
    world = default_world(seed, services=False)
    bin_ = httpbin.install(world)
    world.run_until_idle()
    k = world.host("winsrv").kernel  # afd.sys, the WSK provider, is loaded at boot
    return world, bin_, k


def test_demo_prints_the_uuid_reply_then_answers_one_client_with_hello_from_wsk_and_unloads():
    world, bin_, k = _lab()
    events: list[Any] = []
    world.bus.subscribe(lambda e: events.append(e) if isinstance(e, (DebugPrint, DriverLoaded)) else None)
    IoLoadDriver(k, ksocket.DRIVER_IMAGE)
    world.run_until_idle()
    world.check()
    assert len(k.debug_output) == 1
    client_print = k.debug_output[0]
    assert client_print.startswith("TCP client:\nHTTP/1.1 200 OK\r\n")
    assert f'{{"uuid": "{bin_.uuid}"}}' in client_print
    assert bin_.stats.requests == ["GET /uuid HTTP/1.1"]
    assert world.dns.stats.answered == 2  # A and AAAA for httpbin.org, over UDP
    assert "ksocket" in k.drivers  # still blocked in accept on 9095

    program = run_program(world.host("client").kernel, _usermode_client, SockAddr.parse("10.0.0.1:9095"),
                          b"HELLO FROM USERMODE!")
    world.run_until_idle()
    world.check()
    program.raise_error()
    assert program.result == b"Hello from WSK!\x00"
    assert k.debug_output[1] == "TCP server:\nHELLO FROM USERMODE!"
    loaded = [e for e in events if isinstance(e, DriverLoaded)]
    assert [(e.driver, e.status) for e in loaded] == [("\\Driver\\ksocket", STATUS_UNSUCCESSFUL)]
    assert "ksocket" not in k.drivers
    assert wsk.wsk_sockets(k) == []
    assert [b for b in k.pool.allocated_blocks() if b.tag_str in ("Ks  ", "Ksb ", "WskS", "WskA")] == []
    assert [e.text for e in events if isinstance(e, DebugPrint)] == k.debug_output


def test_uuid_is_deterministic_per_seed():
    assert httpbin.deterministic_uuid(1) == httpbin.deterministic_uuid(1)
    assert httpbin.deterministic_uuid(1) != httpbin.deterministic_uuid(2)

