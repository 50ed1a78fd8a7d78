"""The glue with coalesced (RSC) segments whose payload spans several receive buffers:
when the NBL cannot be held, the whole payload is copied out, not just its first buffer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stack.usermode.programs import echo_client, echo_server, pattern

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from world_harness import any_address, lab, run_programs, server_address, start  # noqa: E402

HOSTS = ("client", "winsrv")


def _rsc_echo(version: int, data: bytes, hold_limit: int | None) -> tuple[tuple[int, ...], int, int]:
    """(segments sent per host, virtual time at the end, payload bytes copied) of one echo."""
    world = lab(seed=11, rsc=True)
    if hold_limit is not None:
        for name in HOSTS:
            for iface in world.host(name).stack.interfaces:
                iface.hold_limit = hold_limit
    server = start(world, "winsrv", echo_server, any_address(version, 7))
    world.run_for(1_000_000)
    client = start(world, "client", echo_client, server_address(world, version, 7), data)
    run_programs(world, server, client)
    assert client.result.received == len(data)
    assert client.result.received_sha256 == client.result.sent_sha256
    for name in HOSTS:
        assert world.host(name).nic.counters.rsc_coalesced_segments > 0  # coalesced units did arrive
    sent = tuple(world.host(name).stack.counters.tcp_segments_sent for name in HOSTS)
    return sent, world.now_ns, sum(world.host(name).kernel.copies.total_bytes for name in HOSTS)


@pytest.mark.parametrize("version", [4, 6])
def test_coalesced_payload_is_copied_whole_when_the_nbl_cannot_be_held(version):
    data = pattern(version, 128 * 1024)
    held_sent, held_end, held_copies = _rsc_echo(version, data, None)
    sent, end, copies = _rsc_echo(version, data, 0)  # no NBL may be kept: every payload is copied out
    # The same conversation, nothing lost and resent: each byte copied once more at each end, no more.
    assert (sent, end) == (held_sent, held_end)
    assert copies == held_copies + 2 * len(data)
