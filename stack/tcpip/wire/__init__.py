"""Wire formats of the emulated transport, kept apart from protocol logic.

Each protocol module has a frozen record (``Ipv4Header``, ``TcpHeader``, ...),
``parse_*`` functions that read from a buffer and raise only ``WireError``,
``emit_*`` functions that write a header into a caller's buffer at an offset
and return the offset past it, and ``build_*`` conveniences returning bytes.
``parse_frame`` decodes a whole Ethernet frame; ``summarize_frame`` prints it
as one tcpdump-like line.
"""

from .arp import (
    ARP_LEN,
    ARP_REPLY,
    ARP_REQUEST,
    ArpPacket,
    build_arp,
    build_arp_reply,
    build_arp_request,
    emit_arp,
    parse_arp,
)
from stack.wire.checksum import (
    as_chunks,
    chunks_length,
    internet_checksum,
    ones_add,
    ones_sum,
    ones_sum_chunks,
    pseudo_header_sum,
    pseudo_header_sum_v4,
    pseudo_header_sum_v6,
    transport_checksum,
    transport_checksum_ok,
)
from .errors import WireError
from .ethernet import (
    BROADCAST_MAC,
    ETHERNET_HEADER_LEN,
    ETHERNET_MIN_FRAME,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    EthernetHeader,
    build_ethernet,
    emit_ethernet,
    format_mac,
    mac_from_str,
    parse_ethernet,
)
from .frame import DecodedFrame, format_tcp_options, parse_frame, summarize_frame
from .icmp import (
    ICMP_DEST_UNREACHABLE,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    ICMP_HEADER_LEN,
    ICMP_PORT_UNREACHABLE,
    IcmpHeader,
    IcmpQuote,
    build_icmp,
    build_icmp_dest_unreachable,
    build_icmp_echo_reply,
    build_icmp_echo_request,
    emit_icmp,
    parse_icmp,
    parse_icmp_quote,
)
from .icmpv6 import (
    ICMPV6_DEST_UNREACHABLE,
    ICMPV6_ECHO_REPLY,
    ICMPV6_ECHO_REQUEST,
    ICMPV6_HEADER_LEN,
    ICMPV6_NEIGHBOR_ADVERTISEMENT,
    ICMPV6_NEIGHBOR_SOLICITATION,
    ICMPV6_PORT_UNREACHABLE,
    Icmpv6Header,
    NeighborAdvertisement,
    NeighborSolicitation,
    build_icmpv6,
    build_icmpv6_dest_unreachable,
    build_icmpv6_echo_reply,
    build_icmpv6_echo_request,
    build_neighbor_advertisement,
    build_neighbor_solicitation,
    emit_icmpv6,
    parse_icmpv6,
    parse_neighbor_message,
)
from .ipv4 import (
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4_HEADER_LEN,
    Ipv4Header,
    build_ipv4,
    emit_ipv4,
    parse_ipv4,
)
from .ipv6 import (
    IPV6_HEADER_LEN,
    Ipv6Header,
    build_ipv6,
    emit_ipv6,
    multicast_mac_v6,
    parse_ipv6,
    solicited_node_multicast,
)
from .tcp import (
    ACK,
    CWR,
    ECE,
    FIN,
    NO_OPTIONS,
    PSH,
    RST,
    SYN,
    TCP_HEADER_LEN,
    URG,
    TcpHeader,
    TcpOptions,
    build_tcp,
    emit_tcp,
    emit_tcp_options,
    format_flags,
    parse_tcp,
    parse_tcp_options,
    tcp_header_length,
    tcp_options_length,
)
from .udp import UDP_HEADER_LEN, UdpHeader, build_udp, emit_udp, parse_udp

from types import ModuleType as _ModuleType

__all__ = [name for name, value in globals().items() if not name.startswith("_") and not isinstance(value, _ModuleType)]
