"""A host's NIC reports the speed of the link it is plugged into, as a real miniport reports the
negotiated speed: the lab's links carry 10 Gb/s by default, so OID_GEN_LINK_SPEED and the general
attributes NDIS hands tcpip at bind (NDIS_BIND_PARAMETERS' Xmit/RcvLinkSpeed) say 10 Gb/s."""

from __future__ import annotations

from stack.ndis.constants import OID_GEN_LINK_SPEED
from stack.ndis.netvmini import _query
from stack.world import World


def test_each_nic_reports_its_own_links_speed_through_the_oid_and_the_bind_parameters() -> None:
    world = World(seed=1)
    world.add_host("fast", "10.0.0.1", "fd00::1")  # the lab's default link: 10 Gb/s
    world.add_host("slow", "10.0.0.2", "fd00::2", bandwidth_bps=1_000_000_000)
    for name, bps in (("fast", 10_000_000_000), ("slow", 1_000_000_000)):
        host = world.host(name)
        assert host.link.bandwidth_bps == bps
        bind = host.adapter.bind_parameters()
        assert bind.XmitLinkSpeed == bind.RcvLinkSpeed == bind.MaxXmitLinkSpeed == bind.MaxRcvLinkSpeed == bps
        oid = _query(host.adapter.MiniportAdapterContext, OID_GEN_LINK_SPEED)
        assert int.from_bytes(oid, "little") == bps // 100  # OID_GEN_LINK_SPEED counts 100 b/s units
