"""The MSS option over a 1500-byte Ethernet link: 1460 for IPv4 (1500 - 20 - 20) and 1440 for IPv6
(1500 - 40 - 20), on the client's SYN and on the SYN-ACK of a dual-stack listener alike."""

from __future__ import annotations


import pytest

from stack.tcpip.wire import SYN, parse_frame
from stack.tcpip.wire.tcp import TcpHeader
from stack.usermode.programs import echo_client
from stack.usermode.socket import SockAddr, run_program
from stack.world import default_world

SECOND = 1_000_000_000


def _handshake_mss(server: str) -> dict[str, int]:
    world = default_world(3)
    seen: dict[str, int] = {}

    def tap(frame: bytes, time_ns: int) -> None:
        decoded = parse_frame(frame, verify_checksum=False)
        tcp = decoded.transport
        if isinstance(tcp, TcpHeader) and tcp.flags & SYN:
            seen["syn-ack" if tcp.flags & 0x10 else "syn"] = tcp.options.mss

    link = world.host("winsrv").link
    for end in link.ends:
        end.taps.append(tap)
    program = run_program(world.host("client").kernel, echo_client, SockAddr.parse(server), b"mss" * 1000)
    world.run_while(lambda: not program.done, max_time_ns=world.now_ns + 10 * SECOND)
    world.check()
    program.raise_error()
    return seen


@pytest.mark.parametrize("server, mss", [("10.0.0.1:40007", 1460), ("[fd00::1]:40007", 1440)])
def test_syn_and_syn_ack_advertise_the_mss_of_the_family_over_1500_byte_ethernet(server: str, mss: int) -> None:
    assert _handshake_mss(server) == {"syn": mss, "syn-ack": mss}
