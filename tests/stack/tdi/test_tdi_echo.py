"""Echo over TDI: `client` -> wire -> NDIS -> tcpip -> tdx (TDI IRPs) -> the sockets library -> tdiecho."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stack.tdi import sockets as ks
from stack.tdi.tdiecho import tdiecho_image
from stack.usermode.programs import echo_client, pattern
from stack.usermode.socket import SockAddr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from world_harness import lab, run_programs, start  # noqa: E402


def _boot(design: str, backlog: int = 4):
    world = lab(seed=3)
    status = world.load_driver("winsrv", tdiecho_image(Design=design, Backlog=backlog))
    assert status == 0
    return world


@pytest.mark.parametrize("design", [ks.KS_LISTEN_EVENT, ks.KS_LISTEN_IRP])
@pytest.mark.parametrize("server", ["10.0.0.1:7", "[fd00::1]:7"], ids=["ipv4", "ipv6"])
def test_echo_over_tdi_is_byte_exact(design, server):
    world = _boot(design)
    data = pattern(7, 100_000)
    program = start(world, "client", echo_client, SockAddr.parse(server), data)
    run_programs(world, program)
    result = program.result
    assert result.received == len(data)
    assert result.received_sha256 == result.sent_sha256
    state = world.host("winsrv").kernel.drivers["tdiecho"].extension["tdiecho"]
    assert (state["connections"], state["echoed"]) == (1, len(data))


def _late_acceptor(design: str, backlog: int, accepted: list):
    """Listen now, accept only after 200 ms: who got in while nobody was in accept()?"""
    from stack.kernel import KeDelayExecutionThread, KernelMode

    def server():
        from stack.kernel import current_kernel
        ks.ks_startup(current_kernel().objects["\\Device\\Tcp"])  # any device will do for work items
        fd = ks.socket(2)
        yield from ks.bind(fd, SockAddr.parse("0.0.0.0:9000"))
        yield from ks.listen(fd, backlog, design)
        yield KeDelayExecutionThread(KernelMode, False, -200 * 10_000)
        for _ in range(3):
            if design == ks.KS_LISTEN_IRP:
                break
            child = yield from ks.accept(fd)
            accepted.append(ks.getpeername(child))
            yield from ks.closesocket(child)
        yield from ks.closesocket(fd)
    return server


def _connector(results: list):
    from stack.usermode.socket import Socket, SocketError

    def client():
        for _ in range(3):
            sock = yield from Socket.create(2)
            try:
                yield from sock.connect(SockAddr.parse("10.0.0.1:9000"))
                results.append("connected")
            except SocketError as exc:
                results.append(f"{exc.status:#x}")
            yield from sock.close()
    return client


def test_listen_irp_design_refuses_peers_while_no_accept_is_posted():
    world = lab(seed=11)
    accepted: list = []
    results: list = []
    server = start(world, "winsrv", _late_acceptor(ks.KS_LISTEN_IRP, 1, accepted))
    world.run_for(10_000_000)
    run_programs(world, start(world, "client", _connector(results)), server)
    assert results == ["0xc0000236"] * 3  # STATUS_CONNECTION_REFUSED: backlog of one, and no TDI_LISTEN posted


def test_connect_event_design_queues_peers_and_a_work_item_opens_new_endpoints_at_passive_level():
    from stack.kernel.events import WorkItemRun
    world = lab(seed=11)
    accepted: list = []
    results: list = []
    work_items: list = []
    unsubscribe = world.bus.subscribe(
        lambda e: work_items.append(e.routine) if isinstance(e, WorkItemRun) else None)
    server = start(world, "winsrv", _late_acceptor(ks.KS_LISTEN_EVENT, 2, accepted))
    world.run_for(10_000_000)
    run_programs(world, start(world, "client", _connector(results)), server)
    unsubscribe()
    assert results == ["connected"] * 3
    assert [str(a.ip) for a in accepted] == ["10.0.0.2"] * 3
    assert work_items.count("ksock!KsReplenishWorkItem") == 3


def test_send_and_disconnect_issues_tdi_disconnect_before_the_send_is_acknowledged():
    """The thesis's advice: TDI_DISCONNECT right behind the last TDI_SEND, not after its ACK."""
    from stack.kernel import current_kernel
    from stack.kernel.events import IrpCompleted, IrpDispatched
    from stack.usermode.socket import Socket
    world = lab(seed=13)
    payload = pattern(3, 40_000)
    order: list[str] = []

    def watch(event):
        if isinstance(event, IrpDispatched) and event.driver == "\\Driver\\tdx" and event.minor in (6, 7):
            order.append({7: "TDI_SEND", 6: "TDI_DISCONNECT"}[event.minor])
        elif isinstance(event, IrpCompleted) and order and order[-1] == "TDI_DISCONNECT":
            order.append("completed")

    def server():
        ks.ks_startup(current_kernel().objects["\\Device\\Tcp"])
        fd = ks.socket(2)
        yield from ks.bind(fd, SockAddr.parse("0.0.0.0:9100"))
        yield from ks.listen(fd, 1, ks.KS_LISTEN_IRP)
        child = yield from ks.accept(fd)
        sent = yield from ks.send_and_disconnect(child, payload)
        yield from ks.closesocket(child)
        yield from ks.closesocket(fd)
        return sent

    def client():
        sock = yield from Socket.create(2)
        yield from sock.connect(SockAddr.parse("10.0.0.1:9100"))
        got = b""
        while True:
            chunk = yield from sock.recv(65536)
            if not chunk:
                break
            got += chunk
        yield from sock.close()
        return got

    unsubscribe = world.bus.subscribe(watch)
    srv = start(world, "winsrv", server)
    world.run_for(10_000_000)
    cli = start(world, "client", client)
    run_programs(world, cli, srv)
    unsubscribe()
    assert cli.result == payload and srv.result == len(payload)
    # TDI_DISCONNECT was dispatched right behind TDI_SEND, before any IRP completed (40 KB needs many ACKs)
    assert order[:3] == ["TDI_SEND", "TDI_DISCONNECT", "completed"]
