"""tcpip's receive path reads an RSC unit's views and physical addresses in one walk of its MDL chain
(stack.tcpip.stack._unit_runs), and a frame's in one step (_frame_run); they are exactly what
NET_BUFFER.views() and the general address walk (mdl_chain_physical_addresses,
_frame_physical_address) give."""

from __future__ import annotations

import pytest

from stack.kernel.mdl import mdl_chain_physical_addresses
from stack.tcpip import stack as tcpip_stack
from stack.usermode.programs import echo_client, echo_server, pattern

from world_harness import any_address, lab, run_programs, server_address, start


@pytest.mark.parametrize("version", [4, 6])
def test_rsc_unit_runs_are_the_net_buffer_views_and_their_physical_addresses(monkeypatch, version):
    runs = tcpip_stack._unit_runs
    checked = []

    def compare(nb):
        found = runs(nb)
        views = nb.views()
        if found is None:
            return None
        got_views, got_pas = found
        assert [bytes(v) for v in got_views] == [bytes(v) for v in views]
        assert [(v.obj is w.obj, len(v)) for v, w in zip(got_views, views)] == [(True, len(w)) for w in views]
        assert got_pas == mdl_chain_physical_addresses(nb.CurrentMdl, nb.CurrentMdlOffset, views)
        checked.append(len(views))
        return found

    monkeypatch.setattr(tcpip_stack, "_unit_runs", compare)
    world = lab(seed=9, rsc=True)
    server = start(world, "winsrv", echo_server, any_address(version, 7))
    world.run_for(1_000_000)
    client = start(world, "client", echo_client, server_address(world, version, 7), pattern(9, 256 * 1024))
    run_programs(world, server, client)
    assert client.result.received_sha256 == client.result.sent_sha256
    assert len(checked) > 20 and max(checked) >= 5


@pytest.mark.parametrize("version", [4, 6])
def test_frame_run_is_the_net_buffer_view_and_its_physical_address(monkeypatch, version):
    run = tcpip_stack._frame_run
    checked = []

    def compare(nb):
        found = run(nb)
        views = nb.views()
        if found is None:
            return None
        view, pa = found
        assert len(views) == 1 and bytes(view) == bytes(views[0]) and view.obj is views[0].obj
        assert pa == tcpip_stack._frame_physical_address(nb)
        checked.append(len(view))
        return found

    monkeypatch.setattr(tcpip_stack, "_frame_run", compare)
    world = lab(seed=9)
    server = start(world, "winsrv", echo_server, any_address(version, 7))
    world.run_for(1_000_000)
    client = start(world, "client", echo_client, server_address(world, version, 7), pattern(9, 64 * 1024))
    run_programs(world, server, client)
    assert client.result.received_sha256 == client.result.sent_sha256
    assert len(checked) > 40 and max(checked) > 1400 and min(checked) < 100  # full frames and pure ACKs
