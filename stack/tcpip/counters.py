"""Protocol counters of one host's transport (what `netstat -s` would print)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields


@dataclass(slots=True)
class ProtocolCounters:
    frames_received: int = 0
    frames_sent: int = 0
    ipv4_received: int = 0
    ipv4_sent: int = 0
    ipv6_received: int = 0
    ipv6_sent: int = 0
    # fragmentation, as `netstat -s` words it (RFC 4293 ipSystemStatsReasm*/OutFrag*)
    ipv4_reassembly_required: int = 0  # fragments received
    ipv4_reassembly_successful: int = 0  # datagrams put back together
    ipv4_reassembly_failures: int = 0  # datagrams given up (timeout, overlap, too long)
    ipv4_datagrams_fragmented: int = 0
    ipv4_fragmentation_failures: int = 0
    ipv4_fragments_created: int = 0
    ipv6_reassembly_required: int = 0
    ipv6_reassembly_successful: int = 0
    ipv6_reassembly_failures: int = 0
    ipv6_datagrams_fragmented: int = 0
    ipv6_fragmentation_failures: int = 0
    ipv6_fragments_created: int = 0
    arp_requests_sent: int = 0
    arp_replies_sent: int = 0
    arp_received: int = 0
    nd_solicitations_sent: int = 0
    nd_advertisements_sent: int = 0
    nd_received: int = 0
    icmp_received: int = 0
    icmp_sent: int = 0
    echo_replies_sent: int = 0
    unreachables_sent: int = 0
    time_exceeded_sent: int = 0  # fragment reassembly time exceeded (ICMP 11/1, ICMPv6 3/1)
    udp_received: int = 0
    udp_sent: int = 0
    tcp_segments_received: int = 0
    tcp_segments_sent: int = 0
    tcp_resets_sent: int = 0
    tcp_active_opens: int = 0
    tcp_passive_opens: int = 0
    # the rest of the RFC 1213 TCP MIB as `netstat -s` prints it, and SYN attack protection
    tcp_failed_connection_attempts: int = 0
    tcp_reset_connections: int = 0
    tcp_current_connections: int = 0
    tcp_segments_retransmitted: int = 0
    # loss recovery by cause (lab lines of `netstat -s`): retransmission timeouts' resends, RACK's
    # (RFC 8985 6.2: marked lost by time), and Tail Loss Probes sent / that repaired a loss (7.3, 7.4)
    tcp_timeout_retransmissions: int = 0
    tcp_rack_retransmissions: int = 0
    tcp_tlp_probes: int = 0
    tcp_tlp_recoveries: int = 0
    tcp_syn_queue_drops: int = 0  # SYNs dropped because a listener's SYN queue was full (no SYN cookies)
    # Connection requests refused because the listener's accept backlog was full: a SYN answered
    # with RST, or a completed handshake reset.  Windows keeps no counter of its own for this (the
    # RSTs add to tcpOutRsts; the client counts a Failed Connection Attempt, tcpAttemptFails).
    tcp_backlog_refusals: int = 0
    # connect() failures for want of a free dynamic (ephemeral) port: STATUS_INSUFFICIENT_RESOURCES,
    # WSAENOBUFS at a Winsock client (Windows counts none; it logs Tcpip event 4231, "all such ports being in use")
    tcp_port_exhaustion_failures: int = 0
    # time-wait TCBs released before 2*MSL because the table was full (MaxFreeTcbs, KB Q151418;
    # Windows counts none: the lab's own line in `!netstat -s`)
    tcp_time_wait_reclaimed: int = 0
    tcp_syn_protection_activations: int = 0  # times a listener switched SYN attack protection on
    tcp_syn_cookie_connections: int = 0  # connections opened from a validated SYN cookie
    lso_sends: int = 0
    checksum_offload_sends: int = 0
    nbls_held: int = 0  # receive NBLs kept past the indication (zero-copy data not yet taken)
    nbl_copies: int = 0  # receive payloads copied so an NBL could go back to the miniport
    loopback_sent: int = 0  # datagrams to our own addresses, turned around without NDIS
    loopback_bytes: int = 0  # ... and their bytes (each copied once into a loopback buffer)
    loopback_received: int = 0
    # (layer, reason) -> frames dropped there
    drops: Counter = field(default_factory=Counter)

    def drop(self, layer: str, reason: str) -> None:
        self.drops[(layer, reason)] += 1

    @property
    def total_drops(self) -> int:
        return sum(self.drops.values())

    def snapshot(self) -> dict[str, object]:
        out: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "drops"}
        out["drops"] = {f"{layer}/{reason}": n for (layer, reason), n in sorted(self.drops.items())}
        return out
