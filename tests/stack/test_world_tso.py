"""Large sends built by TCP (TSO emission): where the route's adapter offers LSO, the TCP core
emits one segment per large send instead of one per MSS (Linux's TSO-sized skbs), and the glue
hands it to NDIS as one LSO send.  The wire must not change: a capture (which forces real frames)
of each transfer is byte for byte the same with TSO emission on and off, and so is every event a
listener sees and every counter `!netstat -s` shows."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from functools import partial
from typing import Any, Callable, Generator

import pytest

from stack.afd.device import TF_DISCONNECT
from stack.kernel.ke import KeDelayExecutionThread
from stack.nic import FaultConfig, NicOffloads
from stack.tcpip.tcp import MS, TcpConfig
from stack.tcpip.tcp.connection import TcpConnection
from stack.usermode.programs import bulk_receiver, bulk_sender, echo_client, echo_server, pattern
from stack.usermode.socket import AF_INET, AF_INET6, SOCK_STREAM, Socket, UserBuffer, join, spawn
from stack.world import World, default_world

from world_harness import any_address, run_programs, server_address, start

KiB = 1024


def slow_reader(address, chunk: int, pause_ns: int) -> Generator[Any, Any, int]:
    """Accept one connection and read `chunk` bytes at a time with a pause between reads, so that
    the sender meets a window that closes (zero window, persist probes) and opens by little steps."""
    listener = yield from Socket.create(AF_INET if address.ip.version == 4 else AF_INET6, SOCK_STREAM)
    yield from listener.bind(address)
    yield from listener.listen(4)
    conn = yield from listener.accept()
    yield from listener.close()
    buf = UserBuffer(chunk)
    total = 0
    while True:
        n = yield from conn.recv_into(buf)
        if n == 0:
            break
        total += n
        yield KeDelayExecutionThread(Interval=-(pause_ns // 100))
    yield from conn.close()
    buf.free()
    return total


def piece_sender(server, sizes: list[int], disconnect: bool = False) -> Generator[Any, Any, int]:
    """Send pieces of the given sizes one after the other (each returns once acknowledged); with
    `disconnect` the last goes as TransmitPackets(TF_DISCONNECT), its FIN on the last data segment."""
    sock = yield from Socket.create(AF_INET if server.ip.version == 4 else AF_INET6, SOCK_STREAM)
    yield from sock.connect(server)
    data = pattern(7, sum(sizes))
    pos = 0
    for k, size in enumerate(sizes):
        piece = data[pos:pos + size]
        if disconnect and k == len(sizes) - 1:
            yield from sock.transmit_packets(piece, TF_DISCONNECT)
        else:
            yield from sock.send(piece)
        pos += size
    if not disconnect:
        yield from sock.shutdown()
    yield from sock.close()
    return pos


def _lab(*, lso_max_size: int | None = None, faults: bool = False, **config: Any) -> World:
    offloads = NicOffloads(lso=True, rsc=True, **({"lso_max_size": lso_max_size} if lso_max_size else {}))
    # The Interrupt Moderation Rate Off: with the lab's default (Adaptive) RSC units grow to ~28 segments, each
    # ACKed once, so fewer ACKs open the window and the bursts depend on the moderation too.  These tests are
    # about the large sends, so the NICs interrupt per packet.
    world = default_world(5, services=False, offloads=offloads,
                          tcp_config=TcpConfig(time_wait_ns=1000 * MS, **config), interrupt_moderation_rate="Off")
    if faults:
        world.set_faults("client", FaultConfig(loss=0.02, reorder=0.02, reorder_delay_ns=300_000))
    return world


def _bulk(world: World, version: int, total: int = 256 * KiB, sndbuf: int | None = None) -> None:
    server = start(world, "winsrv", bulk_receiver, any_address(version, 9))
    world.run_for(1_000_000)
    client = start(world, "client", bulk_sender, server_address(world, version, 9), total, 256 * KiB, 1, sndbuf)
    run_programs(world, server, client)
    assert server.result.received == total


def _echo(world: World, version: int, total: int = 256 * KiB) -> None:
    server = start(world, "winsrv", echo_server, any_address(version, 7))
    world.run_for(1_000_000)
    client = start(world, "client", echo_client, server_address(world, version, 7), pattern(3, total), 64 * KiB)
    run_programs(world, server, client)
    assert client.result.received_sha256 == client.result.sent_sha256


def _window_limited(chunk: int) -> Callable[[World, int], None]:
    """A reader slower than the delayed ACK: the window closes (zero window) and opens by `chunk`."""
    def run(world: World, version: int) -> None:
        server = start(world, "winsrv", slow_reader, any_address(version, 9), chunk, 250 * MS)
        world.run_for(1_000_000)
        client = start(world, "client", bulk_sender, server_address(world, version, 9), 96 * KiB)
        run_programs(world, server, client)
        assert server.result == 96 * KiB
    return run


def _pieces(sizes: list[int], disconnect: bool = False) -> Callable[[World, int], None]:
    def run(world: World, version: int) -> None:
        server = start(world, "winsrv", bulk_receiver, any_address(version, 9))
        world.run_for(1_000_000)
        client = start(world, "client", piece_sender, server_address(world, version, 9), sizes, disconnect)
        run_programs(world, server, client)
        assert server.result.received == sum(sizes)
    return run


def _two_senders(world: World, version: int) -> None:
    server = start(world, "winsrv", bulk_receiver, any_address(version, 9))
    world.run_for(1_000_000)
    client = start(world, "client", two_senders, server_address(world, version, 9), 3 * 1448 + 1, 1000, 10_000)
    run_programs(world, server, client)
    assert server.result.received == 3 * 1448 + 1 + 1000


def _offloads_switched_mid_transfer(world: World, version: int) -> None:
    """`!offload client lso=off`, then `lso=on lsosize=262144`, while the data flows: the core asks
    the route afresh for each send loop, so it follows the adapter the way the glue does."""
    server = start(world, "winsrv", bulk_receiver, any_address(version, 9))
    world.run_for(1_000_000)
    # SO_SNDBUF 0: a send completes on its ACK, so the next leaves into an open window in one burst
    # (with afd's buffering the sends leave ACK by ACK, in large sends below 64 KB)
    client = start(world, "client", bulk_sender, server_address(world, version, 9), 1024 * KiB, 256 * KiB, 1, 0)
    counters = world.host("client").stack.counters
    sent = []
    for change in ({"lso": False}, {"lso": True, "lso_max_size": 256 * KiB}):
        world.run_for(600_000)  # the transfer takes a few ms of virtual time
        sent.append((counters.lso_sends, counters.tcp_segments_sent))
        world.host("client").set_offloads(**change)
    run_programs(world, server, client)
    assert server.result.received == 1024 * KiB
    (lso_before_off, segments_before_off), (lso_before_on, segments_before_on) = sent
    assert segments_before_on > segments_before_off and lso_before_on == lso_before_off  # off: no LSO sends
    assert counters.lso_sends > lso_before_on and world.host("client").nic.counters.lso_largest > 64 * KiB


# (transfer, lab settings): each runs over IPv4 and IPv6, with TSO emission on and off.
SCENARIOS: dict[str, tuple[Callable[[World, int], None], dict[str, Any]]] = {
    "bulk_one_way_lsov1": (_bulk, {}),
    "bulk_one_way_lsov2_256k": (_bulk, {"lso_max_size": 256 * KiB}),
    "bulk_lsov1_without_window_scaling": (_bulk, {"lso_max_size": 256 * KiB, "window_scaling": False}),
    "echo": (_echo, {}),
    "echo_lsov2": (_echo, {"lso_max_size": 256 * KiB}),
    "slow_start_from_two_segments": (_bulk, {"initial_cwnd_segments": 2, "lso_max_size": 256 * KiB}),
    "window_limited_and_zero_window": (_window_limited(8000), {"recv_buffer": 16 * KiB, "recv_buffer_max": None}),
    "sender_sws_small_window": (_window_limited(3000), {"recv_buffer": 5000, "recv_buffer_max": None}),
    "nagle_minshall_tails": (_pieces([100_003, 7, 65_537, 3 * 1448 + 1]), {}),
    "nagle_without_minshall": (_pieces([100_003, 29_001, 1]), {"nagle_minshall": False}),
    "minshall_holds_a_second_send_behind_a_large_sends_tail": (_two_senders, {}),
    "exact_mss_multiples_push_on_a_full_segment": (_pieces([1448 * 20, 1448]), {}),
    "fin_piggybacked_on_the_last_data": (_pieces([50_000, 77_777], disconnect=True), {}),
    "offloads_switched_mid_transfer": (_offloads_switched_mid_transfer, {}),
    # SO_SNDBUF 0: each 256 KiB send leaves in one burst (afd's buffering would send ACK by ACK, losing fewer)
    "loss_and_reordering_retransmissions": (partial(_bulk, sndbuf=0), {"faults": True}),
    "loss_with_lsov2": (_echo, {"faults": True, "lso_max_size": 256 * KiB}),
}


def _tcp_fields(frame: bytes) -> tuple[int, int, int] | None:
    """(flags, window field, payload bytes) of a TCP frame, else None."""
    ethertype = frame[12:14]
    if ethertype == b"\x08\x00" and frame[23] == 6:
        ip_len = int.from_bytes(frame[16:18], "big")
        tcp = 14 + (frame[14] & 0x0F) * 4
        payload = 14 + ip_len - tcp - (frame[tcp + 12] >> 4) * 4
    elif ethertype == b"\x86\xdd" and frame[20] == 6:
        tcp = 54
        payload = int.from_bytes(frame[18:20], "big") - (frame[tcp + 12] >> 4) * 4
    else:
        return None
    return frame[tcp + 13], int.from_bytes(frame[tcp + 14:tcp + 16], "big"), payload


def _zero_window(flags: int, window: int, payload: int) -> bool:
    """the receiver advertised a zero window"""
    return window == 0 and not flags & 0x02


def _fin_with_data(flags: int, window: int, payload: int) -> bool:
    """a FIN rode a data segment"""
    return bool(flags & 0x01) and payload > 0


def _short_push(flags: int, window: int, payload: int) -> bool:
    """a sub-MSS tail went with PSH"""
    return bool(flags & 0x08) and 0 < payload < 1448


CHECKS: dict[str, tuple[Callable[[int, int, int], bool], ...]] = {
    "window_limited_and_zero_window": (_zero_window,),
    "sender_sws_small_window": (_zero_window,),
    "nagle_minshall_tails": (_short_push,),
    "nagle_without_minshall": (_short_push,),
    "fin_piggybacked_on_the_last_data": (_fin_with_data,),
}


def _run(name: str, version: int, tso: bool, monkeypatch) -> tuple[list, list, dict, int]:
    transfer, settings = SCENARIOS[name]
    built: list[int] = []
    emit_large = TcpConnection._emit_large

    def counting(self, *args):
        sent = emit_large(self, *args)
        if sent:
            built.append(1)
        return sent

    monkeypatch.setattr(TcpConnection, "_emit_large", counting)
    world = _lab(**settings)
    for host in world.hosts.values():
        host.stack.tcp.tso_emission = tso
    capture = world.capture()
    events: list = []
    world.bus.subscribe(events.append)
    transfer(world, version)
    frames = [(r.time_ns, r.frame) for r in capture.records]
    seen = [(e.kind, e.host, e.time_ns, e.describe()) for e in events]
    counters = {h: (asdict(world.host(h).stack.counters), asdict(world.host(h).nic.counters))
                for h in ("client", "winsrv")}
    monkeypatch.undo()
    return frames, seen, counters, len(built)


# Every scenario over IPv4; over IPv6 (a 20-byte larger header, so other segment boundaries) the ones
# whose cut depends most on the MSS: plain bulk, LSOv2 echo, the Nagle tails, FIN on data, a mid-transfer
# offload switch and loss.  The core's large-send logic does not look at the address family.
IPV6_SCENARIOS = ("bulk_one_way_lsov1", "echo_lsov2", "nagle_minshall_tails", "fin_piggybacked_on_the_last_data",
                  "offloads_switched_mid_transfer", "loss_with_lsov2")


@pytest.mark.parametrize("name, version", [(name, 4) for name in SCENARIOS] + [(name, 6) for name in IPV6_SCENARIOS])
def test_tso_emission_gives_byte_identical_captures_events_and_counters(name, version, monkeypatch):
    off_frames, off_events, off_counters, off_built = _run(name, version, False, monkeypatch)
    on_frames, on_events, on_counters, on_built = _run(name, version, True, monkeypatch)
    assert off_built == 0  # off: every segment from the core is one MSS, as before
    assert on_built > 0  # on: the core built large sends itself
    assert len(on_frames) > 20
    wire = [_tcp_fields(f) for _, f in on_frames]
    for check in CHECKS.get(name, ()):
        assert any(check(*w) for w in wire if w is not None), check.__doc__
    assert on_frames == off_frames
    assert on_counters == off_counters
    assert on_events == off_events


# the loss scenario's client resends, by reason: RACK (RFC 8985, the default on SACK connections) finds
# the losses, where RFC 6675's DupThresh alone found them by fast retransmits and a timeout.  Under
# HyStart++'s L = 8 (the default) the link drops 2 of the client's data frames, and RACK resends 6
# segments: its reordering window (a quarter of min_rtt, 25 us) is far shorter than the scenario's
# 300 us reordering, so segments that were only late are resent too
RESENT_BY_REASON = Counter({"rack": 6})


def test_lossy_transfers_retransmit_and_still_match(monkeypatch):
    """The loss scenario does exercise retransmissions (timeouts, fast retransmit, SACK)."""
    _, events, counters, _ = _run("loss_and_reordering_retransmissions", 4, True, monkeypatch)
    by_reason = Counter(d.split("(")[1].split(")")[0] for kind, host, _, d in events
                        if kind == "tcp.retransmit" and host == "client")
    # each reason's count pinned, so a change in how a loss is found shows
    assert by_reason == RESENT_BY_REASON
    assert counters["client"][0]["tcp_segments_retransmitted"] == sum(RESENT_BY_REASON.values())


def test_without_lso_the_core_builds_no_large_sends(monkeypatch):
    transfer, _ = SCENARIOS["bulk_one_way_lsov1"]
    built: list[int] = []
    emit_large = TcpConnection._emit_large
    monkeypatch.setattr(TcpConnection, "_emit_large", lambda self, *a: built.append(1) or emit_large(self, *a))
    world = default_world(5, services=False, offloads=NicOffloads(lso=False, rsc=True),
                          tcp_config=TcpConfig(time_wait_ns=1000 * MS))
    transfer(world, 4)
    assert built == []
    assert world.host("client").stack.counters.lso_sends == 0


def _late_sender(sock: Socket, buf: UserBuffer, delay_ns: int) -> Generator[Any, Any, None]:
    yield KeDelayExecutionThread(Interval=-max(delay_ns // 100, 1))
    yield from sock.send(buf)


def two_senders(server, first: int, second: int, delay_ns: int) -> Generator[Any, Any, int]:
    """One send, and `delay_ns` later a second from another thread while the first's tail may be
    unacknowledged (Minshall's Nagle holds the second's short segment until that ACK)."""
    sock = yield from Socket.create(AF_INET if server.ip.version == 4 else AF_INET6, SOCK_STREAM)
    yield from sock.connect(server)
    a, b = UserBuffer(first), UserBuffer(second)
    a.write(pattern(8, first))
    b.write(pattern(9, second))
    late = spawn(_late_sender, sock, b, delay_ns)
    yield from sock.send(a)
    yield from join(late)
    late.raise_error()
    yield from sock.shutdown()
    yield from sock.close()
    a.free()
    b.free()
    return first + second
