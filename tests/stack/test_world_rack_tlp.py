"""RACK-TLP (RFC 8985) end to end: real bytes echoed through every layer (program, afd, tcpip, NDIS,
NIC, link) over a link that loses 1 % of the client's frames.  With RACK-TLP (the default when SACK is
negotiated) every loss is repaired by RACK or a probe and none waits for the 300 ms retransmission
timer.  A tail loss (the last segment of the request dropped on purpose, nothing sent after it) is
repaired by a Tail Loss Probe; with RACK-TLP off (RFC 6675's DupThresh only) it costs a timeout."""

from __future__ import annotations

import hashlib

from stack.nic import NicOffloads
from stack.nic.link import FaultConfig, LinkEnd
from stack.tcpip.addr import SockAddr
from stack.tcpip.tcp import MS, TcpConfig
from stack.usermode.programs import echo_client, echo_server, pattern
from stack.usermode.socket import run_program
from stack.world import default_world

# Which frames the 1 % loss takes depends on the seed and on how the echo's bursts fall (HyStart++'s
# L = 8 by default): with seed 10 the losses include one that RFC 6675's DupThresh alone cannot see.
SEED = 10


def _drop_the_tail(end: LinkEnd, data: bytes) -> list[int]:
    """A targeted fault on one link end: drop, once, the client's frame that carries the last bytes of
    `data` (the end of the last flight: the client sends nothing more until the echo is back).
    Returns a list that counts the drops.  Frames must be real to be dropped, so the end refuses
    the paravirtual pass-through as a fault would."""
    deliver = end.deliver
    dropped: list[int] = []

    def tail_drop(frame: bytes, time_ns: int) -> None:
        if not dropped and len(frame) > 14 + 20 + 20 and frame[12:14] == b"\x08\x00" and frame[23] == 6:
            tcp = 14 + (frame[14] & 0x0F) * 4
            total = int.from_bytes(frame[16:18], "big")
            payload = frame[tcp + (frame[tcp + 12] >> 4) * 4:14 + total]
            if len(payload) >= 64 and data.endswith(payload):
                dropped.append(len(payload))
                end.counters.frames_in += 1
                return
        deliver(frame, time_ns)

    end.deliver = tail_drop  # type: ignore[method-assign]
    end.passthrough_blocker = lambda unit: "tail-drop fault"  # type: ignore[method-assign]
    return dropped


def _echo_with_loss(rack_tlp: bool, loss: float = 0.01, tail_drop: bool = False) -> tuple[float, list]:
    config = TcpConfig(time_wait_ns=1000 * MS, rack_tlp=rack_tlp)
    world = default_world(SEED, services=False, offloads=NicOffloads(lso=True, rsc=True), tcp_config=config)
    server = run_program(world.host("winsrv").kernel, echo_server, SockAddr.parse("0.0.0.0:7"))
    world.run_for(1_000_000)
    if loss:
        world.set_faults("client", FaultConfig(loss=loss))
    data = pattern(SEED, 1 << 20)
    dropped = _drop_the_tail(world.host("client").link.ends[0], data) if tail_drop else None
    start = world.now_ns
    client = run_program(world.host("client").kernel, echo_client, SockAddr.parse("10.0.0.1:7"), data)
    world.run_while(lambda: not (client.done and server.done), max_events=10_000_000)
    client.raise_error()
    assert client.result.received_sha256 == hashlib.sha256(data).hexdigest()
    counters = [world.host(h).stack.counters for h in ("client", "winsrv")]
    assert dropped is None or len(dropped) == 1  # the fault hit the tail
    return (world.now_ns - start) / MS, counters


def test_a_lossy_echo_recovers_every_loss_without_a_retransmission_timeout() -> None:
    ms, counters = _echo_with_loss(True)
    assert sum(c.tcp_timeout_retransmissions for c in counters) == 0
    assert sum(c.tcp_rack_retransmissions for c in counters) > 0  # the losses were real and RACK found them
    assert ms < 300  # less than one minimum RTO for the whole megabyte


def test_a_lost_tail_segment_is_repaired_by_a_tail_loss_probe_not_a_timeout() -> None:
    ms, counters = _echo_with_loss(True, loss=0.0, tail_drop=True)
    client = counters[0]
    assert client.tcp_timeout_retransmissions == 0
    assert client.tcp_tlp_probes == 1  # nothing came back for the lost tail: the PTO probed it
    assert ms < 300


def test_the_same_lost_tail_without_rack_tlp_waits_for_a_timeout() -> None:
    ms, counters = _echo_with_loss(False, loss=0.0, tail_drop=True)
    assert sum(c.tcp_timeout_retransmissions for c in counters) > 0
    assert sum(c.tcp_rack_retransmissions + c.tcp_tlp_probes for c in counters) == 0
    assert ms > 300
