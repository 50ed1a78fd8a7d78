"""OID requests and the structures their information buffers carry.

Scalar OIDs carry little-endian bytes (a ULONG, a MAC address) in
``InformationBuffer``; structured ones carry the dataclasses below, whose
field names follow ntddndis.h.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .constants import NdisRequestQueryInformation

NDIS_OFFLOAD_NOT_SUPPORTED = 0
NDIS_OFFLOAD_SUPPORTED = 1
NDIS_ENCAPSULATION_IEEE_802_3 = 0x00000002

# NDIS_OFFLOAD_PARAMETERS values
NDIS_OFFLOAD_PARAMETERS_NO_CHANGE = 0
NDIS_OFFLOAD_PARAMETERS_TX_RX_DISABLED = 1
NDIS_OFFLOAD_PARAMETERS_TX_ENABLED_RX_DISABLED = 2
NDIS_OFFLOAD_PARAMETERS_RX_ENABLED_TX_DISABLED = 3
NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED = 4
NDIS_OFFLOAD_PARAMETERS_LSOV2_DISABLED = 1
NDIS_OFFLOAD_PARAMETERS_LSOV2_ENABLED = 2
NDIS_OFFLOAD_PARAMETERS_RSC_DISABLED = 1
NDIS_OFFLOAD_PARAMETERS_RSC_ENABLED = 2


@dataclass(slots=True)
class NDIS_OID_REQUEST:
    Oid: int
    RequestType: int = NdisRequestQueryInformation
    InformationBuffer: Any = None  # bytes/bytearray for scalar OIDs, a dataclass for structured ones
    InformationBufferLength: int = 0  # 0: no limit (the emulation's convenience)
    PortNumber: int = 0
    BytesWritten: int = 0
    BytesRead: int = 0
    BytesNeeded: int = 0
    RequestId: int = 0
    Status: int = 0  # filled in when it completes
    RequestHandle: Any = None  # the binding it was issued on

    def ulong(self) -> int:
        """The InformationBuffer read as a ULONG (for scalar query results)."""
        return int.from_bytes(bytes(self.InformationBuffer)[:4], "little")


@dataclass(slots=True)
class NDIS_CHECKSUM_V4:
    Encapsulation: int = NDIS_ENCAPSULATION_IEEE_802_3
    IpOptionsSupported: int = NDIS_OFFLOAD_SUPPORTED
    TcpOptionsSupported: int = NDIS_OFFLOAD_SUPPORTED
    TcpChecksum: int = NDIS_OFFLOAD_NOT_SUPPORTED
    UdpChecksum: int = NDIS_OFFLOAD_NOT_SUPPORTED
    IpChecksum: int = NDIS_OFFLOAD_NOT_SUPPORTED


@dataclass(slots=True)
class NDIS_CHECKSUM_V6:
    Encapsulation: int = NDIS_ENCAPSULATION_IEEE_802_3
    IpExtensionHeadersSupported: int = NDIS_OFFLOAD_NOT_SUPPORTED
    TcpOptionsSupported: int = NDIS_OFFLOAD_SUPPORTED
    TcpChecksum: int = NDIS_OFFLOAD_NOT_SUPPORTED
    UdpChecksum: int = NDIS_OFFLOAD_NOT_SUPPORTED


@dataclass(slots=True)
class NDIS_TCP_IP_CHECKSUM_OFFLOAD:
    IPv4Transmit: NDIS_CHECKSUM_V4 = field(default_factory=NDIS_CHECKSUM_V4)
    IPv4Receive: NDIS_CHECKSUM_V4 = field(default_factory=NDIS_CHECKSUM_V4)
    IPv6Transmit: NDIS_CHECKSUM_V6 = field(default_factory=NDIS_CHECKSUM_V6)
    IPv6Receive: NDIS_CHECKSUM_V6 = field(default_factory=NDIS_CHECKSUM_V6)


@dataclass(slots=True)
class NDIS_LSOV2_IPV4:
    Encapsulation: int = NDIS_ENCAPSULATION_IEEE_802_3
    MaxOffLoadSize: int = 0
    MinSegmentCount: int = 0


@dataclass(slots=True)
class NDIS_LSOV2_IPV6:
    Encapsulation: int = NDIS_ENCAPSULATION_IEEE_802_3
    MaxOffLoadSize: int = 0
    MinSegmentCount: int = 0
    IpExtensionHeadersSupported: int = NDIS_OFFLOAD_NOT_SUPPORTED
    TcpOptionsSupported: int = NDIS_OFFLOAD_SUPPORTED


@dataclass(slots=True)
class NDIS_TCP_LARGE_SEND_OFFLOAD_V2:
    IPv4: NDIS_LSOV2_IPV4 = field(default_factory=NDIS_LSOV2_IPV4)
    IPv6: NDIS_LSOV2_IPV6 = field(default_factory=NDIS_LSOV2_IPV6)


@dataclass(slots=True)
class NDIS_RSC_ENABLED:
    Enabled: bool = False


@dataclass(slots=True)
class NDIS_TCP_RECV_SEG_COALESCE_OFFLOAD:
    """Receive segment coalescing, per IP version (NDIS 6.30)."""

    IPv4: NDIS_RSC_ENABLED = field(default_factory=NDIS_RSC_ENABLED)
    IPv6: NDIS_RSC_ENABLED = field(default_factory=NDIS_RSC_ENABLED)


@dataclass(slots=True)
class NDIS_OFFLOAD:
    """OID_TCP_OFFLOAD_CURRENT_CONFIG / HARDWARE_CAPABILITIES: what the NIC does now (or can)."""

    Checksum: NDIS_TCP_IP_CHECKSUM_OFFLOAD = field(default_factory=NDIS_TCP_IP_CHECKSUM_OFFLOAD)
    LsoV2: NDIS_TCP_LARGE_SEND_OFFLOAD_V2 = field(default_factory=NDIS_TCP_LARGE_SEND_OFFLOAD_V2)
    Rsc: NDIS_TCP_RECV_SEG_COALESCE_OFFLOAD = field(default_factory=NDIS_TCP_RECV_SEG_COALESCE_OFFLOAD)


@dataclass(slots=True)
class NDIS_OFFLOAD_PARAMETERS:
    """OID_TCP_OFFLOAD_PARAMETERS (set): NO_CHANGE leaves a setting alone."""

    IPv4Checksum: int = NDIS_OFFLOAD_PARAMETERS_NO_CHANGE
    TCPIPv4Checksum: int = NDIS_OFFLOAD_PARAMETERS_NO_CHANGE
    UDPIPv4Checksum: int = NDIS_OFFLOAD_PARAMETERS_NO_CHANGE
    TCPIPv6Checksum: int = NDIS_OFFLOAD_PARAMETERS_NO_CHANGE
    UDPIPv6Checksum: int = NDIS_OFFLOAD_PARAMETERS_NO_CHANGE
    LsoV2IPv4: int = NDIS_OFFLOAD_PARAMETERS_NO_CHANGE
    LsoV2IPv6: int = NDIS_OFFLOAD_PARAMETERS_NO_CHANGE
    RscIPv4: int = NDIS_OFFLOAD_PARAMETERS_NO_CHANGE  # NDIS_OFFLOAD_PARAMETERS_RSC_ENABLED / _DISABLED
    RscIPv6: int = NDIS_OFFLOAD_PARAMETERS_NO_CHANGE


@dataclass(slots=True)
class NDIS_STATISTICS_INFO:
    """OID_GEN_STATISTICS."""

    SupportedStatistics: int = 0
    ifInDiscards: int = 0
    ifInErrors: int = 0
    ifHCInOctets: int = 0
    ifHCInUcastPkts: int = 0
    ifHCInMulticastPkts: int = 0
    ifHCInBroadcastPkts: int = 0
    ifHCOutOctets: int = 0
    ifHCOutUcastPkts: int = 0
    ifHCOutMulticastPkts: int = 0
    ifHCOutBroadcastPkts: int = 0
    ifOutErrors: int = 0
    ifOutDiscards: int = 0
