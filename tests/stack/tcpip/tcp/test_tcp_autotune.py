"""Receive window auto-tuning: the buffer starts at 64 KiB and grows with the measured
bandwidth-delay product while the client reads; a client that reads nothing gets data
buffered up to the window, then a zero window."""

from __future__ import annotations

from tcp_harness import MS, REMOTE_ISS, config, passive_open, seg

KIB = 1024
RTT = 10 * MS
CHUNK = 1000  # the harness's MSS


def tuned(**overrides):
    options = dict(recv_buffer=64 * KIB, recv_buffer_max=0xFFFF << 8, window_scaling=True)
    options.update(overrides)
    return passive_open(config(**options), wscale=8)


def _pump(h, rounds: int, read: bool) -> int:
    """Each round: one RTT passes and the peer fills whatever window we last advertised."""
    seq = REMOTE_ISS + 1
    window_bytes = h.conn.rcv_wnd
    for _ in range(rounds):
        h.now += RTT
        sent = 0
        while sent < window_bytes:
            n = min(CHUNK, window_bytes - sent)
            h.send(seg(seq, h.conn.snd_nxt, payload=b"x" * n))
            seq += n
            sent += n
        if read:
            h.conn.read(1 << 30)
        h.recv()
        window_bytes = h.conn.rcv_wnd
    return seq - (REMOTE_ISS + 1)


def test_receive_buffer_starts_at_64k_and_the_syn_ack_offers_scale_8() -> None:
    h = tuned()
    assert h.conn.recv_buffer == 64 * KIB and h.conn.rcv_wscale == 8


def test_buffer_grows_with_the_measured_bdp_while_the_client_reads() -> None:
    h = tuned()
    h.conn._rtt.sample(RTT)  # noqa: SLF001 - the handshake's RTT sample, as a real peer would give
    _pump(h, 8, read=True)
    assert h.conn.recv_buffer >= 1000 * KIB  # doubled each RTT from 64 KiB
    assert h.conn.rcv_wnd > 64 * KIB  # the larger window is advertised (scaled by 2^8)


def test_buffer_never_passes_its_ceiling() -> None:
    h = tuned(recv_buffer_max=256 * KIB)
    h.conn._rtt.sample(RTT)  # noqa: SLF001
    _pump(h, 12, read=True)
    assert h.conn.recv_buffer == 256 * KIB


def test_client_that_never_reads_gets_data_buffered_up_to_the_window_then_zero_window() -> None:
    h = tuned()
    h.conn._rtt.sample(RTT)  # noqa: SLF001
    taken = _pump(h, 6, read=False)
    assert h.conn.recv_buffer == 64 * KIB  # no growth for a client that takes nothing
    assert h.conn.recv_available() == taken == 0xFFFF  # the SYN-ACK's unscaled window: 64 KiB less one
    assert h.conn.rcv_wnd == 0
    seq = REMOTE_ISS + 1 + taken
    h.send(seg(seq, h.conn.snd_nxt, payload=b"y" * CHUNK))  # a probe into the closed window
    (ack,) = h.recv()
    assert ack.window == 0 and h.conn.recv_available() == taken


def test_without_window_scaling_the_buffer_stays_within_64k() -> None:
    h = passive_open(config(recv_buffer=16 * KIB, recv_buffer_max=0xFFFF << 8, window_scaling=True))
    h.conn._rtt.sample(RTT)  # noqa: SLF001
    _pump(h, 8, read=True)
    assert 16 * KIB < h.conn.recv_buffer <= 0xFFFF


def test_a_burst_into_a_reading_client_grows_the_buffer_before_the_window_closes() -> None:
    # A whole window can arrive in one receive DPC before the reader runs: within one round
    # trip, unread data past 3/4 of the buffer doubles it at once (the client has been reading).
    h = tuned()
    h.conn._rtt.sample(RTT)  # noqa: SLF001
    _pump(h, 1, read=True)  # the tuning window starts; the client reads what came
    seq = REMOTE_ISS + 1 + 64 * KIB - 1
    h.now += RTT // 10  # well inside the next round trip
    h.send(seg(seq, h.conn.snd_nxt, payload=b"r" * CHUNK))
    h.conn.read(CHUNK)  # the reader ran once in this round trip
    before = h.conn.recv_buffer
    for _ in range(60):  # then a burst: 60 KB unread, past 3/4 of the buffer
        seq += CHUNK
        h.send(seg(seq, h.conn.snd_nxt, payload=b"b" * CHUNK))
    assert h.conn.recv_buffer == 2 * before
    h.recv()
    assert h.conn.rcv_wnd > 0


def test_a_burst_into_a_client_that_stopped_reading_does_not_grow_the_buffer() -> None:
    h = tuned()
    h.conn._rtt.sample(RTT)  # noqa: SLF001
    _pump(h, 1, read=True)
    seq = REMOTE_ISS + 1 + 64 * KIB - 1
    h.now += 2 * RTT  # a new tuning round trip starts with this segment; nothing is read in it
    h.send(seg(seq, h.conn.snd_nxt, payload=b"r" * CHUNK))
    before = h.conn.recv_buffer
    for _ in range(60):
        seq += CHUNK
        h.send(seg(seq, h.conn.snd_nxt, payload=b"b" * CHUNK))
    assert h.conn.recv_buffer == before
