"""A lab-side SYN flood: crafted TCP SYNs from spoofed addresses, put on the wire
in front of one host (the switch-to-host end of its link), as an attacker on the
segment would.  Not Windows code: the attacker the lab invents to show SYN attack
protection (tcp/listener.py, tcp/syncookie.py) at work.

Each SYN comes from a different spoofed source (an unused address of the host's
IPv4 subnet, a random port and ISN drawn from the world's seed) and nobody
answers the SYN-ACKs, so without protection every one of them would hold a
half-open connection until its retransmissions run out.  The frames are built
once per batch and injected by scheduler events, so 10,000 SYNs cost a few
hundred events.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from stack.tcpip.wire import ETHERTYPE_IPV4, SYN, TcpOptions, build_ethernet, build_ipv4, build_tcp

if TYPE_CHECKING:
    from stack.world import World

BATCH = 50  # SYNs per injection event
FIRST_SPOOFED_HOST = 100  # spoofed sources are .100 .. .249 of the target's /24 (no lab host uses them)
SPOOFED_HOSTS = 150


@dataclass(slots=True)
class SynFlood:
    target: str
    port: int
    count: int
    rate: int  # SYNs per second
    sent: int = 0
    started_ns: int = 0

    @property
    def done(self) -> bool:
        return self.sent >= self.count


def start_syn_flood(world: "World", target: str, port: int, count: int, rate: int = 50_000) -> SynFlood:
    """Schedule `count` spoofed SYNs to `target`:`port`, `rate` per second from now."""
    if count < 1 or rate < 1:
        raise ValueError("count and rate must be >= 1")
    host = world.host(target)
    if host.ipv4 is None:
        raise ValueError(f"{target} has no IPv4 address")
    dst = host.ipv4.ip.packed
    net = int(host.ipv4.network.network_address)
    rng = random.Random(f"{world.seed}:synflood:{target}:{port}:{world.now_ns}")  # each flood its own SYNs
    flood = SynFlood(target, port, count, rate, started_ns=world.now_ns)
    end = host.link.ends[1]  # switch -> host
    gap_ns = max(1, 1_000_000_000 * BATCH // rate)

    def inject() -> None:
        now = world.now_ns
        for _ in range(min(BATCH, flood.count - flood.sent)):
            n = flood.sent
            src = IPv4Address(net + FIRST_SPOOFED_HOST + n % SPOOFED_HOSTS).packed
            mac = bytes((0x02, 0x5F, 0, 0, (n >> 8) & 0xFF, n & 0xFF))  # locally administered, one per SYN
            segment = build_tcp(src, dst, rng.randrange(1024, 65536), port, rng.getrandbits(32), 0, SYN, 64240,
                                options=TcpOptions(mss=1460))
            end.deliver(build_ethernet(host.mac, mac, ETHERTYPE_IPV4, build_ipv4(src, dst, 6, segment)), now)
            flood.sent += 1
        if not flood.done:
            world.scheduler.call_later(gap_ns, None, inject, label="SYN flood")

    world.scheduler.call_later(0, None, inject, label="SYN flood")
    return flood
