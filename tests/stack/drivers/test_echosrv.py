"""echosrv (the WDK WSK echo sample) end to end: user-mode clients on `client`, echosrv on `winsrv`."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Generator

import pytest

from stack import wsk
from stack.drivers import echosrv
from stack.kernel import KEVENT, IoLoadDriver, IoUnloadDriver, KeSetEvent, KeWaitForSingleObject, NotificationEvent
from stack.tcpip.addr import AF_INET, AF_INET6, SockAddr
from stack.usermode.programs import echo_client, pattern
from stack.usermode.socket import SOCK_STREAM, Socket, run_program
from stack.world import World, default_world

ECHO4 = SockAddr.parse("10.0.0.1:40007")
ECHO6 = SockAddr.parse("[fd00::1]:40007")
ECHOSRV_TAGS = {"wsks", "wskb", "wskx"}


def load(world: World, image: Any) -> Any:
    k = world.host("winsrv").kernel
    drv = IoLoadDriver(k, image)
    world.run_until_idle()
    world.check()
    return drv


def echo_lab(seed: int = 1, trace: bool = False) -> tuple[World, Any, Any]:
    world = default_world(seed, services=False)  # afd.sys, the WSK provider, is loaded at boot
    k = world.host("winsrv").kernel
    session = k.wpp.start("echosrvtrace", echosrv.ECHOSRV_CONTROL_GUID, flags=0x3) if trace else None
    drv = load(world, echosrv.DRIVER_IMAGE)
    return world, drv, session


def unload(world: World, drv: Any) -> list[int]:
    done: list[int] = []
    IoUnloadDriver(world.host("winsrv").kernel, drv, done.append)
    world.run_until_idle()
    world.check()
    return done


def echosrv_pool_blocks(world: World) -> list[Any]:
    return [b for b in world.host("winsrv").kernel.pool.allocated_blocks() if b.tag_str in ECHOSRV_TAGS]


def run_client(world: World, server: SockAddr, data: bytes) -> Any:
    program = run_program(world.host("client").kernel, echo_client, server, data)
    world.run_until_idle()
    world.check()
    program.raise_error()
    assert program.done
    return program.result


def test_echo_over_ipv4_is_byte_exact_through_the_dual_stack_listener():
    world, _, _ = echo_lab()
    data = pattern(4, 20_000)
    result = run_client(world, ECHO4, data)
    assert result.received == len(data)
    assert result.received_sha256 == hashlib.sha256(data).hexdigest()


def test_echo_over_ipv6_is_byte_exact():
    world, _, _ = echo_lab()
    data = pattern(6, 9_000)
    result = run_client(world, ECHO6, data)
    assert result.received_sha256 == hashlib.sha256(data).hexdigest()


def test_listening_socket_is_one_ipv6_socket_with_v6only_off():
    world, _, _ = echo_lab()
    sockets = wsk.wsk_sockets(world.host("winsrv").kernel)
    assert [(s.category, s.state, s.family, s.local, s.owner) for s in sockets] == [
        ("listen", "Listening", AF_INET6, "[::]:40007", "echosrv")]
    sock = world.host("winsrv").kernel.object_at(sockets[0].address)
    assert sock.v6only is False and sock.effective_event_mask == wsk.WSK_EVENT_ACCEPT


def test_one_hundred_concurrent_connections_all_echo_byte_exact():
    world, _, _ = echo_lab()
    client = world.host("client").kernel
    programs = []
    for i in range(100):
        data = pattern(100 + i, 600 + 37 * i)
        server = ECHO4 if i % 2 else ECHO6
        programs.append((run_program(client, echo_client, server, data), data))
    world.run_until_idle()
    world.check()
    for program, data in programs:
        program.raise_error()
        assert program.done and program.result.received_sha256 == hashlib.sha256(data).hexdigest()
    # every accepted socket was closed again; only the listener remains
    assert [s.category for s in wsk.wsk_sockets(world.host("winsrv").kernel)] == ["listen"]
    assert [b.tag_str for b in echosrv_pool_blocks(world)] == ["wsks"]  # only the listening context


def _normalize(k: Any, text: str, names: dict[int, str]) -> str:
    def sub(m: re.Match) -> str:
        value = int(m.group(0), 16)
        if value in names:
            return names[value]
        symbol = k.symbol_for_address(value)
        return symbol or "ADDR"
    return re.sub(r"\b[0-9A-F]{16}\b", sub, text)


def _in_order(lines: list[str], wanted: list[str]) -> bool:
    """Each wanted line appears, in this order (startswith match), not necessarily adjacent."""
    pos = 0
    for w in wanted:
        while pos < len(lines) and not lines[pos].startswith(w):
            pos += 1
        if pos == len(lines):
            return False
        pos += 1
    return True


def test_wpp_trace_with_flags_0x3_follows_the_sample_for_one_connection():
    world, _, session = echo_lab(trace=True)
    k = world.host("winsrv").kernel
    start = len(session.buffer)
    run_client(world, ECHO4, b"hello, echo")
    records = list(session.buffer)[start:]
    ctx = next(r.args[0].address for r in records if r.fmt == "AcceptEvent: %p")
    names = {ctx: "CTX", ctx + 0x20: "OP0", ctx + 0x70: "OP1"}  # OpContext[i] at 0x20 + i * 0x50
    lines = [_normalize(k, k.wpp.format_record(r, prefix=""), names) for r in records
             if not r.fmt.startswith("WorkerThread")]
    # Where the client's data and FIN meet the two outstanding receives depends on timing;
    # the sample's order of trace points around them does not.
    assert lines[:5] == [
        "AllocateSocketContext: CTX",
        "AcceptEvent: CTX",
        "EnqueueOp: CTX OP0 (echosrv!WskSampleOpReceive) SetEvent",
        "EnqueueOp: CTX OP1 (echosrv!WskSampleOpReceive)",
        "OpReceive: CTX OP0 2048",
    ]
    data_op = next(line.split()[2] for line in lines if line.endswith("0x0 11"))
    assert _in_order(lines, [f"ReceiveIrpCompletionRoutine: CTX {data_op} 0x0 11",
                             f"EnqueueOp: CTX {data_op} (echosrv!WskSampleOpSend)",
                             f"OpSend: CTX {data_op} 11",
                             f"SendIrpCompletionRoutine: CTX {data_op} 0x0 11",
                             f"EnqueueOp: CTX {data_op} (echosrv!WskSampleOpReceive)"])
    assert sorted(line for line in lines if line.startswith("ReceiveIrpCompletionRoutine") and
                  line.endswith(" 0")) == ["ReceiveIrpCompletionRoutine: CTX OP0 0x0 0",
                                           "ReceiveIrpCompletionRoutine: CTX OP1 0x0 0"]
    disconnects = [line for line in lines if line.startswith("OpDisconnect")]
    assert len(disconnects) == 2 and disconnects[1].endswith("SKIP")  # both receives saw the FIN
    closer = disconnects[0].split()[2]
    assert lines[-7:] == [
        f"DisconnectIrpCompletionRoutine: CTX {closer} 0x0",
        f"EnqueueOp: CTX {closer} (echosrv!WskSampleOpClose) SetEvent",
        f"OpClose: CTX {closer}",
        f"CloseIrpCompletionRoutine: CTX {closer} 0x0",
        f"EnqueueOp: CTX {closer} (echosrv!WskSampleOpFree) SetEvent",
        f"OpFree: CTX {closer}",
        "FreeSocketContext: CTX",
    ]
    assert all(r.flag == "TRCINFO" for r in records)
    assert {r.function for r in records} >= {"WskSampleAcceptEvent", "WskSampleReceiveIrpCompletionRoutine",
                                             "WskSampleWorkerThread"}


def test_trace_starts_with_loaded_because_earlier_traces_precede_wpp_init_tracing():
    world, _, session = echo_lab(trace=True)
    k = world.host("winsrv").kernel
    texts = [k.wpp.format_record(r, prefix="") for r in session.buffer]
    assert texts[0] == "LOADED"  # AllocateSocketContext/EnqueueOp ran before WPP_INIT_TRACING
    assert any(t.startswith("SetupListeningSocket: ") for t in texts)


def test_load_and_unload_repeatedly_leaves_no_pool_and_no_sockets():
    world = default_world(2, services=False)
    k = world.host("winsrv").kernel
    for round_ in range(3):
        drv = load(world, echosrv.DRIVER_IMAGE)
        assert "echosrv" in k.drivers
        data = pattern(round_, 3000)
        assert run_client(world, ECHO4, data).received_sha256 == hashlib.sha256(data).hexdigest()
        assert unload(world, drv) == [0]
        assert "echosrv" not in k.drivers
        assert echosrv_pool_blocks(world) == []
        assert wsk.wsk_sockets(k) == []
        assert [b for b in k.pool.allocated_blocks() if b.tag_str == "WskS"] == []


def _hold_connection(server: SockAddr, release: KEVENT, log: list[str]) -> Generator[Any, Any, None]:
    sock = yield from Socket.create(AF_INET, SOCK_STREAM)
    yield from sock.connect(server)
    yield from sock.send(b"ping")
    log.append((yield from sock.recv(16)).decode())
    yield KeWaitForSingleObject(release)
    yield from sock.shutdown()
    log.append(f"eof {len((yield from sock.recv(16)))}")
    yield from sock.close()


def test_unload_while_a_client_is_connected_waits_until_that_socket_closes():
    world, drv, _ = echo_lab(3)
    k = world.host("winsrv").kernel
    release = KEVENT(NotificationEvent, False)
    log: list[str] = []
    run_program(world.host("client").kernel, _hold_connection, ECHO4, release, log)
    world.run_until_idle()
    assert log == ["ping"]
    done = unload(world, drv)
    assert done == []  # DriverUnload is blocked in WskDeregister
    assert "echosrv" in k.drivers
    assert [s.category for s in wsk.wsk_sockets(k)] == ["connection"]  # the listener is closed already
    world.run_in("client", KeSetEvent, release)
    world.run_until_idle()
    world.check()
    assert log == ["ping", "eof 0"]
    assert done == [0] and "echosrv" not in k.drivers
    assert echosrv_pool_blocks(world) == [] and wsk.wsk_sockets(k) == []


@pytest.mark.parametrize("server", [ECHO4, ECHO6], ids=["ipv4", "ipv6"])
def test_accepted_socket_reports_the_peer_as_the_dual_stack_socket_sees_it(server):
    world, _, _ = echo_lab(5)
    k = world.host("winsrv").kernel
    seen: list[str] = []
    unsubscribe = world.bus.subscribe(
        lambda e: seen.append(k.object_at(e.socket).remote and str(k.object_at(e.socket).remote))
        if isinstance(e, wsk.WskCall) and e.call == "WskReceive" and k.object_at(e.socket) else None)
    run_client(world, server, b"x")
    unsubscribe()
    expected = "[::ffff:a00:2]" if server is ECHO4 else "[fd00::2]"  # ::ffff:10.0.0.2
    assert seen and all(s.startswith(expected) for s in seen)
