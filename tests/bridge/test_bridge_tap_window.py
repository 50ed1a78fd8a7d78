"""Receive window and MSS against a real Linux TCP (the TAP bridge): a 4 MiB echo through echosrv
never meets a zero window from winsrv, and winsrv's SYN-ACK carries MSS 1460 (IPv4) / 1440 (IPv6).

Needs Linux, root, /dev/net/tun and iproute2; skips with the reason otherwise."""

from __future__ import annotations

import pytest
from bridge_harness import echo_client_argv, run_process

from stack.bridge.lab import bridge_lab
from stack.bridge.session import BridgeSession, TapOptions
from stack.bridge.tap import tap_unavailable_reason
from stack.nic import Capture
from stack.tcpip.wire import SYN, parse_frame
from stack.tcpip.wire.tcp import TcpHeader

pytestmark = pytest.mark.root

REASON = tap_unavailable_reason()
ECHO_MIB = 4 * 1024 * 1024


@pytest.fixture(scope="module", params=[("10.0.0.1", 1460), ("fd00::1", 1440)], ids=["v4", "v6"])
def echoed(request):
    server, mss = request.param
    if REASON is not None:
        pytest.skip(REASON)
    world = bridge_lab(1)
    session = BridgeSession.live_session(world, tap=TapOptions())
    capture = Capture()
    capture.attach_link(session.tap.port.link)
    capture.start()
    session.start()
    try:
        argv = session.tap.namespace.exec_argv(echo_client_argv(server, 40007, ECHO_MIB))
        done = run_process(session, argv)
    finally:
        session.close()
        capture.stop()
    assert done.stdout.startswith(b"OK"), done.stdout + done.stderr
    segments = []
    for record in capture.records:
        decoded = parse_frame(record.frame, verify_checksum=False)
        tcp = decoded.transport
        if isinstance(tcp, TcpHeader) and 40007 in (tcp.src_port, tcp.dst_port):
            segments.append(tcp)
    return segments, mss


def _from_winsrv(echoed):
    segments, _ = echoed
    return [tcp for tcp in segments if tcp.src_port == 40007]


def test_4mib_echo_through_echosrv_gets_no_zero_window_from_winsrv(echoed) -> None:
    sent = _from_winsrv(echoed)
    assert len(sent) > 100
    zero = [tcp for tcp in sent if tcp.window == 0 and not tcp.flags & 0x04]
    # Uncontended runs show none.  On a loaded machine the bridge can hand tcpip a whole window
    # inside one receive DPC before echosrv's worker runs, and with window scale 8 the last
    # < 256 free bytes read as 0, so one transient zero window is possible; the window that
    # followed posted receives (the behaviour this guards against) gave 1,818 in 4 MiB.
    assert len(zero) <= max(2, len(sent) // 1000), f"{len(zero)} zero-window segments from winsrv"


def test_syn_ack_from_winsrv_carries_the_family_mss_and_window_scale_8(echoed) -> None:
    (syn_ack,) = [tcp for tcp in _from_winsrv(echoed) if tcp.flags & SYN]
    assert syn_ack.options.mss == echoed[1]
    assert syn_ack.options.wscale == 8
