"""The NIC's MAC sends at line rate: a burst of sends larger than the wire's queue waits in the
transmit ring (and NDIS queues what follows) instead of being tail-dropped on the host's own link.

Found with issue 12's khttpd benchmark: 8 concurrent clients fetching 1 MiB from a warm cache got
~55 req/s instead of ~113 (and ~22 with the processor model on), because winsrv's LSO sends went
onto its link all at once, overflowed the link's 1024-frame queue, and every lost segment cost a
retransmission timeout."""

from __future__ import annotations

from tests.bench.thesis_lab import measure, server_world


def test_concurrent_1mib_fetches_lose_no_frame_on_the_servers_own_link() -> None:
    world = server_world("khttpd zero-copy", "zero", 1_000_000_000)
    measure(world, "khttpd zero-copy", 262144, 1, 1)  # warm the cache: the replies then start together
    link = world.host("winsrv").link
    link.queue_frames = 128  # a smaller wire queue: the same overrun with fewer bytes (40 drops before the fix)
    result = measure(world, "khttpd zero-copy", 262144, 1, 4)
    winsrv = world.host("winsrv").kernel.extensions["tcpip"].transport.counters()
    assert [end.counters.queue_drops for end in link.ends] == [0, 0]
    assert winsrv["tcp_segments_retransmitted"] == 0
    assert result["mbps"] > 900  # the wire, not retransmission timeouts, is the limit at 1 Gb/s
