"""Drive a fresh connection into any state with the peer's real segments."""

from __future__ import annotations

from tcp_harness import ACK, FIN, LOCAL_ISS, REMOTE_ISS, SYN, Harness, active_open, config, seg

from stack.tcpip.tcp import TcpConfig, TcpConnection, TcpState

S = TcpState
L1 = LOCAL_ISS + 1
R1 = REMOTE_ISS + 1


def drive_to(state: TcpState, cfg: TcpConfig | None = None) -> Harness:
    if state is S.SYN_SENT:
        h = Harness(TcpConnection(cfg or config(), 80, 49152, LOCAL_ISS))
        h.conn.connect(0)
        h.recv_one(flags=SYN)
    elif state is S.SYN_RECEIVED:
        h = Harness(TcpConnection(cfg or config(), 80, 49152, LOCAL_ISS))
        h.conn.open_passive(seg(REMOTE_ISS, None, SYN, mss=1000), 0)
        h.recv_one(flags=SYN | ACK)
    elif state is S.ESTABLISHED:
        h = active_open(cfg)
    elif state is S.FIN_WAIT_1:
        h = active_open(cfg)
        h.conn.close(h.now)
        h.recv_one(flags=FIN | ACK, seq=L1)
    elif state is S.FIN_WAIT_2:
        h = drive_to(S.FIN_WAIT_1, cfg)
        h.send(seg(R1, L1 + 1))
        h.recv_nothing()
    elif state is S.CLOSE_WAIT:
        h = active_open(cfg)
        h.send(seg(R1, L1, FIN | ACK))
        h.recv_one(flags=ACK, ack=R1 + 1)
    elif state is S.CLOSING:
        h = drive_to(S.FIN_WAIT_1, cfg)
        h.send(seg(R1, L1, FIN | ACK))
        h.recv_one(flags=ACK, seq=L1 + 1, ack=R1 + 1)
    elif state is S.LAST_ACK:
        h = drive_to(S.CLOSE_WAIT, cfg)
        h.conn.close(h.now)
        h.recv_one(flags=FIN | ACK, seq=L1, ack=R1 + 1)
    elif state is S.TIME_WAIT:
        h = drive_to(S.FIN_WAIT_2, cfg)
        h.send(seg(R1, L1 + 1, FIN | ACK))
        h.recv_one(flags=ACK, seq=L1 + 1, ack=R1 + 1)
    else:
        raise ValueError(state)
    assert h.state is state
    h.take_events()
    return h


def expected_rcv_nxt(state: TcpState) -> int:
    """RCV.NXT after drive_to(state): one more once the peer's FIN is in."""
    return R1 + 1 if state in (S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK, S.TIME_WAIT) else R1


def expected_snd_nxt(state: TcpState) -> int:
    return L1 + 1 if state in (S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSING, S.LAST_ACK, S.TIME_WAIT) else L1
