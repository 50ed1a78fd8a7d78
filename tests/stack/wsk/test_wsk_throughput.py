"""The lesson of WSK sends: no socket send buffer, so throughput needs several sends outstanding.

A WskSend IRP completes only when the peer has acknowledged its bytes.  With one send
outstanding the sender idles for a round trip after every send; with four outstanding the
pipe stays fuller.  Measured in virtual time over a link with latency.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Generator

from wsk_harness import Call, WskLab, buffer

from stack import wsk
from stack.kernel import (STATUS_SUCCESS, Executive, IoFreeIrp, KernelMode, KeWaitForSingleObject,
                          current_kernel)
from stack.tcpip.addr import SockAddr
from stack.usermode.programs import bulk_receiver
from stack.usermode.socket import run_program
from stack.world import World

SEND_SIZE = 2 * 1448  # two full segments (timestamps on): four sends fit in the initial window of 10
SENDS = 48
LATENCY_NS = 2_000_000  # per link: RTT about 8 ms


def _world() -> World:
    world = World(7)
    world.add_host("winsrv", "10.0.0.1/24", "fd00::1/64", latency_ns=LATENCY_NS, boot=False)
    world.add_host("client", "10.0.0.2/24", "fd00::2/64", latency_ns=LATENCY_NS, boot=False)
    world.boot()
    world._update_host_tables()
    return world


def _sender(sock: Any, mdl: Any, depth: int, timing: dict[str, int]) -> Generator[Any, Any, int]:
    """Keep `depth` WskSend IRPs outstanding until SENDS have completed (sends complete in order)."""
    free = [Call() for _ in range(depth)]
    # One untimed warm-up send: the receiver delays the ACK of the very first data.
    warmup = free[0].reuse()
    sock.Dispatch.WskSend(sock, wsk.WSK_BUF(mdl, 0, SEND_SIZE), 0, warmup.irp)
    if not warmup.done:
        yield KeWaitForSingleObject(warmup.event, Executive, KernelMode, False, None)
    outstanding: deque[Call] = deque()
    issued = completed = 0
    timing["start"] = current_kernel().now_ns
    while completed < SENDS:
        while issued < SENDS and free:
            call = free.pop().reuse()
            sock.Dispatch.WskSend(sock, wsk.WSK_BUF(mdl, 0, SEND_SIZE), 0, call.irp)
            outstanding.append(call)
            issued += 1
        oldest = outstanding.popleft()
        if not oldest.done:
            yield KeWaitForSingleObject(oldest.event, Executive, KernelMode, False, None)
        assert oldest.done == [(STATUS_SUCCESS, SEND_SIZE)]
        completed += 1
        free.append(oldest)
    timing["end"] = current_kernel().now_ns
    for call in free:
        IoFreeIrp(call.irp)
    return completed


def _transfer_time(depth: int) -> int:
    lab = WskLab(_world())
    receiver = run_program(lab.world.host("client").kernel, bulk_receiver, SockAddr.parse("10.0.0.2:9000"))
    lab.run()
    sock = lab.socket(wsk.AF_INET, wsk.WSK_FLAG_CONNECTION_SOCKET)
    assert lab.bind(sock, wsk.SOCKADDR_IN(wsk.AF_INET, 0, wsk.INADDR_ANY)) == STATUS_SUCCESS
    assert lab.control(sock, wsk.IPPROTO_TCP, wsk.TCP_NODELAY, 1) == STATUS_SUCCESS
    connect = lab.call(Call)
    lab.call(sock.Dispatch.WskConnect, sock, wsk.from_sockaddr(SockAddr.parse("10.0.0.2:9000")), 0, connect.irp)
    lab.run()
    assert connect.status == STATUS_SUCCESS
    _, mdl = lab.call(buffer, SEND_SIZE, bytes(range(256)) * (SEND_SIZE // 256) + bytes(SEND_SIZE % 256))
    timing: dict[str, int] = {}
    box = lab.thread(_sender, sock, mdl, depth, timing)
    lab.run()
    assert box == [SENDS]
    disconnect = lab.call(Call)
    lab.call(sock.Dispatch.WskDisconnect, sock, None, 0, disconnect.irp)
    lab.run()
    assert lab.close(sock) == STATUS_SUCCESS
    lab.run()
    receiver.raise_error()
    assert receiver.result.received == (SENDS + 1) * SEND_SIZE
    return timing["end"] - timing["start"]


def test_four_outstanding_sends_move_data_several_times_faster_than_one():
    one = _transfer_time(1)
    four = _transfer_time(4)
    rtt = 4 * LATENCY_NS
    assert one >= SENDS * rtt  # every send waits a full round trip for its ACK
    assert 3.0 < one / four <= 4.5  # roughly the ratio of sends in flight
