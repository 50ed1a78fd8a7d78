"""tcpip's receive path reads an RSC unit's views and physical addresses in one walk of its MDL chain
(stack.tcpip.stack._unit_runs), and a frame's in one step (_frame_run); they are exactly what
NET_BUFFER.views() and the general address walk (mdl_chain_physical_addresses,
_frame_physical_address) give."""

from __future__ import annotations

import pytest

from stack.kernel.mdl import mdl_chain_physical_addresses, mdl_chain_views
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


# --- odd chains: what _unit_runs takes, and where it leaves the general way to decide -------------

def _chain(k, rng, parts):
    """MDLs over nonpaged buffers: (byte offset in its page, byte count, span pages?) per MDL."""
    from stack.kernel import ExAllocatePoolWithTag, IoAllocateMdl, MmBuildMdlForNonPagedPool
    from stack.kernel.pool import NonPagedPoolNx
    mdls = []
    for within, count, pages in parts:
        va = ExAllocatePoolWithTag(NonPagedPoolNx, 2 * 4096 * pages + 4096, "Test")
        va = (va + 4095) & ~4095  # page aligned: the MDL starts `within` bytes into a page
        mdl = IoAllocateMdl(va + within, max(count, 1))
        MmBuildMdlForNonPagedPool(mdl)
        mdl.byte_count = count  # (an empty MDL: what a buffer the NIC left unused describes)
        k.mem.write(va + within, rng.randbytes(max(count, 1)))
        mdls.append(mdl)
    for a, b in zip(mdls, mdls[1:]):
        a.next = b
    return mdls


@pytest.mark.parametrize("seed", range(80))
def test_rsc_unit_runs_on_odd_chains_are_the_views_or_leave_it_to_the_general_way(seed):
    """Chains a receive path can meet: the data starting inside or past the first MDL, empty MDLs,
    an MDL crossing a page, data ending inside the last MDL or running past the chain.  Whatever
    _unit_runs returns is exactly nb.views() with each view's physical address; it declines (None)
    only for a page-crossing MDL, a run shorter than two views or a chain too short."""
    import random
    from types import SimpleNamespace
    from stack.kernel.machine import Machine

    rng = random.Random(seed)
    m = Machine(seed=seed, memory_mb=4)
    k = m.kernel
    parts = []
    for _ in range(rng.randrange(1, 7)):
        cross = rng.random() < 0.06
        count = rng.choice((0, 1, 60, 1448, 2048)) if not cross else 3000
        within = rng.randrange(0, 4096 - count + 1) if not cross else 4096 - 1000
        parts.append((within, count, 2 if cross else 1))
    mdls = m.run_in(k, _chain, k, rng, parts)
    assert m.scheduler.halted is None, m.scheduler.halted and m.scheduler.halted.detail
    total = sum(count for _, count, _ in parts)
    first_offset = rng.randrange(0, parts[0][1] + 1) if rng.random() < 0.7 else parts[0][1]
    room = total - first_offset
    length = (room - rng.randrange(0, min(room, 100) + 1) if rng.random() < 0.6 else rng.randrange(0, room + 1)) \
        + (rng.random() < 0.1) * 5  # sometimes past the chain
    nb = SimpleNamespace(CurrentMdl=mdls[0], CurrentMdlOffset=first_offset, DataLength=length)

    found = tcpip_stack._unit_runs(nb)
    fits = first_offset + length <= total
    if found is None:
        views = [v for v in (mdl_chain_views(mdls[0], first_offset, length) if fits else [])]
        crossing = any(within + count > 4096 for within, count, _ in parts)
        assert crossing or not fits or len(views) < 2 or length <= 0
        return
    assert fits
    views, pas = found
    expected = mdl_chain_views(mdls[0], first_offset, length)
    assert [bytes(v) for v in views] == [bytes(v) for v in expected]
    assert pas == mdl_chain_physical_addresses(mdls[0], first_offset, expected)
    assert len(views) >= 2
