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
