"""The time-wait TCB answers every segment exactly as the full core in TIME_WAIT would.

Two identical connections are driven into TIME_WAIT; one stays a TcpConnection, the other is
swapped for a TimeWaitTcb, and both get the same segments at the same times."""

from __future__ import annotations

from states_driver import L1, R1, S, drive_to
from tcp_harness import ACK, FIN, MS, RST, SYN, seg

from stack.tcpip.tcp.timewait import TimeWaitTcb

# (time offset ms, segment): retransmitted FIN, RST in and out of window, a SYN for the same
# 4-tuple, an old and a future ACK, a bare ACK, data past the FIN, and a burst of unacceptable
# dataless segments (rate-limited ACKs).
_SEGMENTS = [
    (100, seg(R1, L1 + 1, FIN | ACK)),
    (200, seg(R1 + 1, flags=RST)),
    (300, seg(R1 + 5000, flags=RST)),
    (400, seg(R1 + 90_000, flags=SYN)),
    (500, seg(R1 + 1, L1 + 1, SYN | ACK)),
    (600, seg(R1 + 1, L1 - 70_000)),
    (700, seg(R1 + 1, L1 + 500)),
    (800, seg(R1 + 1, L1 + 1)),
    (900, seg(R1 + 1, L1 + 1, payload=b"late")),
    (1000, seg(R1 - 3, L1 + 1)),
    (1001, seg(R1 - 3, L1 + 1)),
    (1002, seg(R1 - 3, L1 + 1, FIN | ACK)),
    (4000, seg(R1, L1 + 1, FIN | ACK)),
]


def _fields(segments):
    return [(s.seq, s.ack, s.flags, s.window, s.timestamps, s.sack_blocks, s.payload_len) for s in segments]


def test_time_wait_record_answers_segments_as_the_full_core() -> None:
    core = drive_to(S.TIME_WAIT)
    twin = drive_to(S.TIME_WAIT)
    record = TimeWaitTcb(twin.conn)
    assert record.expires_at == core.conn.poll_at()
    start = core.now
    answers = []
    for offset, segment in _SEGMENTS:
        now = start + offset * MS
        core.now = now
        core.send(segment)
        expected = core.recv()
        reply = record.on_segment(segment, now)
        assert _fields([reply] if reply is not None else []) == _fields(expected), segment.describe()
        assert record.expires_at == core.conn.poll_at(), segment.describe()
        assert core.state is S.TIME_WAIT
        answers.append(reply is not None)
    # ACKed: the FINs, the SYNs, the too-old ACK; the rest silent (RST, in-window ACK and data,
    # unacceptable dataless segments within invalid_ack_interval of the last such ACK).
    assert answers == [True, False, False, True, True, True, False, False, False, False, False, True, True]
