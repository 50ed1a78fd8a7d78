"""A SYN flood against winsrv with its processor modelled (the thesis's 1.1 GHz machine): the flood
costs real processor time, SYN attack protection still switches on, and a legitimate client still
gets its page (issue 12, overload behaviour with processors)."""

from __future__ import annotations

import pytest

from stack.synflood import start_syn_flood
from stack.tcpip.addr import SockAddr
from stack.usermode.socket import run_program
from stack.usermode.webserver import http_fetch
from stack.world import default_world

SECOND = 1_000_000_000


@pytest.fixture(scope="module")
def flooded_2003():
    world = default_world(1, cpu_profile="2003", processors=1)
    world.run_for(SECOND)
    cpu = world.host("winsrv").kernel.cpu_model
    before = sum(p.isr_ns + p.dpc_ns for p in cpu.processors)
    flood = start_syn_flood(world, "winsrv", 80, 5_000, rate=50_000)
    world.run_for(SECOND // 20)  # 2,500 SYNs in: the SYN queue is full
    fetch = run_program(world.host("client").kernel, http_fetch, SockAddr.parse("10.0.0.1:80"), "GET",
                        "/index.html")
    world.run_while(lambda: not (fetch.done and flood.done), max_time_ns=world.now_ns + 30 * SECOND)
    world.check()
    fetch.raise_error()
    spent = sum(p.isr_ns + p.dpc_ns for p in cpu.processors) - before
    return world, flood, fetch, spent


def test_legitimate_client_is_served_during_a_flood_on_a_modelled_processor(flooded_2003) -> None:
    world, flood, fetch, _ = flooded_2003
    assert flood.sent == 5_000
    assert fetch.result.status == 200 and fetch.result.body
    counters = world.host("winsrv").transport.counters()
    assert counters["tcp_syn_protection_activations"] >= 1


def test_the_flood_costs_interrupt_and_dpc_time_on_winsrv(flooded_2003) -> None:
    _, flood, _, spent = flooded_2003
    # Every spoofed SYN is received (an interrupt's share, a DPC's share, tcpip's segment work) and
    # answered with a SYN-ACK or cookie: at least a microsecond each on the 2003 profile.
    assert spent >= flood.sent * 1_000
