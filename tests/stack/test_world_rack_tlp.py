"""RACK-TLP (RFC 8985) end to end: real bytes echoed through every layer (program, afd, tcpip, NDIS,
NIC, link) over a link that loses 1 % of the client's frames.  With RACK-TLP (the default when SACK is
negotiated) every loss is repaired by RACK or a probe and none waits for the 300 ms retransmission
timer; with it off (RFC 6675's DupThresh only) the same losses cost a timeout."""

from __future__ import annotations

import hashlib

from stack.nic import NicOffloads
from stack.nic.link import FaultConfig
from stack.tcpip.addr import SockAddr
from stack.tcpip.tcp import MS, TcpConfig
from stack.usermode.programs import echo_client, echo_server, pattern
from stack.usermode.socket import run_program
from stack.world import default_world

# Which frames the 1 % loss takes depends on the seed and on how the echo's bursts fall (HyStart++'s
# L = 8 by default): with seed 10 the losses include one that RFC 6675's DupThresh alone cannot see.
SEED = 10


def _echo_with_loss(rack_tlp: bool) -> tuple[float, list]:
    config = TcpConfig(time_wait_ns=1000 * MS, rack_tlp=rack_tlp)
    world = default_world(SEED, services=False, offloads=NicOffloads(lso=True, rsc=True), tcp_config=config)
    server = run_program(world.host("winsrv").kernel, echo_server, SockAddr.parse("0.0.0.0:7"))
    world.run_for(1_000_000)
    world.set_faults("client", FaultConfig(loss=0.01))
    data = pattern(SEED, 1 << 20)
    start = world.now_ns
    client = run_program(world.host("client").kernel, echo_client, SockAddr.parse("10.0.0.1:7"), data)
    world.run_while(lambda: not (client.done and server.done), max_events=10_000_000)
    client.raise_error()
    assert client.result.received_sha256 == hashlib.sha256(data).hexdigest()
    counters = [world.host(h).stack.counters for h in ("client", "winsrv")]
    return (world.now_ns - start) / MS, counters


def test_a_lossy_echo_recovers_every_loss_without_a_retransmission_timeout() -> None:
    ms, counters = _echo_with_loss(True)
    assert sum(c.tcp_timeout_retransmissions for c in counters) == 0
    assert sum(c.tcp_rack_retransmissions for c in counters) > 0  # the losses were real and RACK found them
    assert sum(c.tcp_tlp_probes for c in counters) > 0
    assert ms < 300  # less than one minimum RTO for the whole megabyte


def test_the_same_lossy_echo_without_rack_tlp_waits_for_a_timeout() -> None:
    ms, counters = _echo_with_loss(False)
    assert sum(c.tcp_timeout_retransmissions for c in counters) > 0
    assert sum(c.tcp_rack_retransmissions + c.tcp_tlp_probes for c in counters) == 0
    assert ms > 300
