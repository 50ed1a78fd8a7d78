"""A drop of in-window out-of-order data (the receive buffer's charge bound, buffers.py) is counted
as drop tcp/ooo_queue_full in the `!netstat -s`-style drops and told to the bus, as every other
drop is (DESIGN: a dropped thing is dropped and counted)."""

from __future__ import annotations

import sys
from pathlib import Path

from stack.tcpip.events import PacketDropped
from stack.tcpip.tcp import OutOfOrderDropped
from wskdbg.render.net import ipstats_lines

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from world_harness import lab  # noqa: E402


def test_an_out_of_order_drop_is_counted_in_netstat_drops_and_published() -> None:
    world = lab(seed=1)
    stack = world.host("winsrv").stack
    seen: list[object] = []
    stack.kernel.bus.subscribe(seen.append)
    stack.tcp._on_event(None, OutOfOrderDropped(1234, 1448))  # what the TCB layer does with the core's event
    assert stack.counters.drops[("tcp", "ooo_queue_full")] == 1
    assert [e.describe() for e in seen if isinstance(e, PacketDropped)] == [
        "drop tcp: ooo_queue_full (seq 1234 len 1448)"]
    assert any(line.split() == ["tcp/ooo_queue_full", "=", "1"] for line in ipstats_lines(stack.counters.snapshot()))
