"""NDIS 6 constants with their real numeric values (ndis.h, ntddndis.h, nbl*.h)."""

from __future__ import annotations

# --- NDIS_STATUS ------------------------------------------------------------------
NDIS_STATUS_SUCCESS = 0x00000000
NDIS_STATUS_PENDING = 0x00000103
NDIS_STATUS_NOT_RECOGNIZED = 0x00010001
NDIS_STATUS_NOT_ACCEPTED = 0x00010003
NDIS_STATUS_MEDIA_CONNECT = 0x4001000B
NDIS_STATUS_MEDIA_DISCONNECT = 0x4001000C
NDIS_STATUS_LINK_STATE = 0x40010017
NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG = 0x40020006
NDIS_STATUS_FAILURE = 0xC0000001
NDIS_STATUS_INVALID_PARAMETER = 0xC000000D
NDIS_STATUS_RESOURCES = 0xC000009A
NDIS_STATUS_NOT_SUPPORTED = 0xC00000BB
NDIS_STATUS_ADAPTER_NOT_FOUND = 0xC0010006
NDIS_STATUS_RESET_IN_PROGRESS = 0xC001000D
NDIS_STATUS_INVALID_LENGTH = 0xC0010014
NDIS_STATUS_INVALID_DATA = 0xC0010015
NDIS_STATUS_BUFFER_TOO_SHORT = 0xC0010016
NDIS_STATUS_INVALID_OID = 0xC0010017
NDIS_STATUS_SEND_ABORTED = 0xC023000C  # STATUS_NDIS_REQUEST_ABORTED
NDIS_STATUS_MEDIA_DISCONNECTED = 0xC023001F
NDIS_STATUS_PAUSED = 0xC023002A
NDIS_STATUS_INVALID_STATE = 0xC0000184  # STATUS_INVALID_DEVICE_STATE

NDIS_STATUS_NAMES = {v: k for k, v in sorted(globals().items()) if k.startswith("NDIS_STATUS_") and isinstance(v, int)}


def ndis_status_name(status: int) -> str:
    return NDIS_STATUS_NAMES.get(status & 0xFFFFFFFF, f"{status & 0xFFFFFFFF:#010x}")


NDIS_DEFAULT_PORT_NUMBER = 0

# --- send / receive / return flags ----------------------------------------------------
NDIS_SEND_FLAGS_DISPATCH_LEVEL = 0x00000001
NDIS_SEND_FLAGS_CHECK_FOR_LOOPBACK = 0x00000002
NDIS_SEND_FLAGS_SINGLE_QUEUE = 0x00000004
NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL = 0x00000001
NDIS_RETURN_FLAGS_DISPATCH_LEVEL = 0x00000001
NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL = 0x00000001
NDIS_RECEIVE_FLAGS_RESOURCES = 0x00000002  # the protocol must copy; NBLs return when the indication returns
NDIS_RECEIVE_FLAGS_SINGLE_ETHER_TYPE = 0x00000100
NDIS_RECEIVE_FLAGS_SINGLE_VLAN = 0x00000200
NDIS_RECEIVE_FLAGS_PERFECT_FILTERED = 0x00000400
NDIS_RECEIVE_FLAGS_SINGLE_QUEUE = 0x00000800
NDIS_RECEIVE_FLAGS_SHARED_MEMORY_INFO_VALID = 0x00001000
NDIS_RECEIVE_FLAGS_MORE_NBLS = 0x00002000

# --- packet filter (OID_GEN_CURRENT_PACKET_FILTER) ---------------------------------------
NDIS_PACKET_TYPE_DIRECTED = 0x00000001
NDIS_PACKET_TYPE_MULTICAST = 0x00000002
NDIS_PACKET_TYPE_ALL_MULTICAST = 0x00000004
NDIS_PACKET_TYPE_BROADCAST = 0x00000008
NDIS_PACKET_TYPE_PROMISCUOUS = 0x00000020
NDIS_PACKET_TYPE_ALL_LOCAL = 0x00000080

# --- OIDs -------------------------------------------------------------------------------
OID_GEN_SUPPORTED_LIST = 0x00010101
OID_GEN_HARDWARE_STATUS = 0x00010102
OID_GEN_MEDIA_SUPPORTED = 0x00010103
OID_GEN_MEDIA_IN_USE = 0x00010104
OID_GEN_MAXIMUM_LOOKAHEAD = 0x00010105
OID_GEN_MAXIMUM_FRAME_SIZE = 0x00010106
OID_GEN_LINK_SPEED = 0x00010107
OID_GEN_TRANSMIT_BUFFER_SPACE = 0x00010108
OID_GEN_RECEIVE_BUFFER_SPACE = 0x00010109
OID_GEN_VENDOR_ID = 0x0001010C
OID_GEN_VENDOR_DESCRIPTION = 0x0001010D
OID_GEN_CURRENT_PACKET_FILTER = 0x0001010E
OID_GEN_CURRENT_LOOKAHEAD = 0x0001010F
OID_GEN_DRIVER_VERSION = 0x00010110
OID_GEN_MAXIMUM_TOTAL_SIZE = 0x00010111
OID_GEN_MEDIA_CONNECT_STATUS = 0x00010114
OID_GEN_INTERRUPT_MODERATION = 0x00010209  # query and set (stack/ndis/interrupt_moderation.py)
OID_GEN_XMIT_OK = 0x00020101
OID_GEN_RCV_OK = 0x00020102
OID_GEN_XMIT_ERROR = 0x00020103
OID_GEN_RCV_ERROR = 0x00020104
OID_GEN_RCV_NO_BUFFER = 0x00020105
OID_GEN_STATISTICS = 0x00020106
OID_802_3_PERMANENT_ADDRESS = 0x01010101
OID_802_3_CURRENT_ADDRESS = 0x01010102
OID_802_3_MULTICAST_LIST = 0x01010103
OID_802_3_MAXIMUM_LIST_SIZE = 0x01010104
OID_TCP_OFFLOAD_CURRENT_CONFIG = 0xFC01020B
OID_TCP_OFFLOAD_PARAMETERS = 0xFC01020C
OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES = 0xFC01020D

OID_NAMES = {v: k for k, v in sorted(globals().items()) if k.startswith("OID_") and isinstance(v, int)}


def oid_name(oid: int) -> str:
    return OID_NAMES.get(oid, f"OID {oid:#010x}")


# NDIS_REQUEST_TYPE
NdisRequestQueryInformation = 0
NdisRequestSetInformation = 1
NdisRequestQueryStatistics = 2
NdisRequestMethod = 12

NdisMedium802_3 = 0
NdisHardwareStatusReady = 0
MediaConnectStateUnknown = 0
MediaConnectStateConnected = 1
MediaConnectStateDisconnected = 2

# NDIS_NET_BUFFER_LIST_INFO indexes (NetBufferListInfo[])
TcpIpChecksumNetBufferListInfo = 0
IPsecOffloadV1NetBufferListInfo = 1
TcpLargeSendNetBufferListInfo = 2
ClassificationHandleNetBufferListInfo = 3
Ieee8021QNetBufferListInfo = 4
NetBufferListCancelId = 5
MediaSpecificInformation = 6
NetBufferListFrameType = 7
NetBufferListHashValue = 8
NetBufferListHashInfo = 9
WfpNetBufferListInfo = 10
IPsecOffloadV2TunnelNetBufferListInfo = 11
IPsecOffloadV2HeaderNetBufferListInfo = 12
NetBufferListCorrelationId = 13
NetBufferListFilteringInfo = 14
MediaSpecificInformationEx = 15
NblOriginalInterfaceIfIndex = 16
TcpReceiveBytesTransferred = 17
SwitchForwardingReserved = 18
SwitchForwardingDetail = 19
VirtualSubnetInfo = 20
IMReserved = 21
TcpRecvSegCoalesceInfo = 22  # NDIS_RSC_NBL_INFO: CoalescedSegCount | DupAckCount << 16
RscTcpTimestampDelta = 23
GftOffloadInformation = 24
GftFlowEntryId = 25
NetBufferListInfoReserved3 = 26
# The element count Windows' own symbols give on x64 Windows 10 (`dt ndis!_NET_BUFFER_LIST`:
# `+0x090 NetBufferListInfo : [29] Ptr64 Void`, a public capture from early 2021): the two slots past
# NetBufferListInfoReserved3 belong to later NDIS revisions; NetBufferListInfo[] runs 0x90..0x178.
MaxNetBufferListInfo = 29

# --- NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO (one ULONG; Transmit and Receive views) -----
# Transmit: what the transport asks the NIC to compute.
NDIS_CSUM_TX_IS_IPV4 = 1 << 0
NDIS_CSUM_TX_IS_IPV6 = 1 << 1
NDIS_CSUM_TX_TCP = 1 << 2
NDIS_CSUM_TX_UDP = 1 << 3
NDIS_CSUM_TX_IP_HEADER = 1 << 4
NDIS_CSUM_TX_TCP_HEADER_OFFSET_SHIFT = 16  # 10 bits
# Receive: what the NIC found.
NDIS_CSUM_RX_TCP_FAILED = 1 << 0
NDIS_CSUM_RX_UDP_FAILED = 1 << 1
NDIS_CSUM_RX_IP_FAILED = 1 << 2
NDIS_CSUM_RX_TCP_SUCCEEDED = 1 << 3
NDIS_CSUM_RX_UDP_SUCCEEDED = 1 << 4
NDIS_CSUM_RX_IP_SUCCEEDED = 1 << 5
NDIS_CSUM_RX_LOOPBACK = 1 << 6
NDIS_CSUM_RX_TCP_VALUE_INVALID = 1 << 7  # an RSC unit's rewritten TCP header keeps a stale checksum
NDIS_CSUM_RX_IP_VALUE_INVALID = 1 << 8


def rsc_info(coalesced_segments: int, dup_acks: int = 0) -> int:
    """NDIS_RSC_NBL_INFO as the pointer-sized value NetBufferListInfo[TcpRecvSegCoalesceInfo] holds."""
    return (coalesced_segments & 0xFFFF) | (dup_acks & 0xFFFF) << 16


def rsc_coalesced_segments(value: int) -> int:
    """NET_BUFFER_LIST_COALESCED_SEG_COUNT."""
    return (value or 0) & 0xFFFF


def csum_tx_info(*, ipv4: bool = False, ipv6: bool = False, tcp: bool = False, udp: bool = False,
                 ip_header: bool = False, tcp_header_offset: int = 0) -> int:
    """Encode the Transmit view of NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO."""
    return ((NDIS_CSUM_TX_IS_IPV4 if ipv4 else 0) | (NDIS_CSUM_TX_IS_IPV6 if ipv6 else 0)
            | (NDIS_CSUM_TX_TCP if tcp else 0) | (NDIS_CSUM_TX_UDP if udp else 0)
            | (NDIS_CSUM_TX_IP_HEADER if ip_header else 0)
            | ((tcp_header_offset & 0x3FF) << NDIS_CSUM_TX_TCP_HEADER_OFFSET_SHIFT))


# --- NDIS_TCP_LARGE_SEND_OFFLOAD_NET_BUFFER_LIST_INFO (pointer-sized) -----------------------
NDIS_TCP_LARGE_SEND_OFFLOAD_V1_TYPE = 0
NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE = 1
NDIS_TCP_LARGE_SEND_OFFLOAD_IPv4 = 0
NDIS_TCP_LARGE_SEND_OFFLOAD_IPv6 = 1
_LSO_MSS_MASK = (1 << 20) - 1
_LSO_OFFSET_SHIFT = 20
_LSO_TYPE_SHIFT = 30
_LSO_IPVERSION_SHIFT = 32


def lso_v2_info(mss: int, tcp_header_offset: int, ipv6: bool = False) -> int:
    """Encode LsoV2Transmit: MSS:20, TcpHeaderOffset:10, Type:1 (=V2), Reserved:1, IPVersion:2."""
    return ((mss & _LSO_MSS_MASK) | ((tcp_header_offset & 0x3FF) << _LSO_OFFSET_SHIFT)
            | (NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE << _LSO_TYPE_SHIFT)
            | ((NDIS_TCP_LARGE_SEND_OFFLOAD_IPv6 if ipv6 else 0) << _LSO_IPVERSION_SHIFT))


def lso_mss(info: int) -> int:
    return info & _LSO_MSS_MASK


def lso_tcp_header_offset(info: int) -> int:
    return (info >> _LSO_OFFSET_SHIFT) & 0x3FF


def lso_type(info: int) -> int:
    return (info >> _LSO_TYPE_SHIFT) & 1


def lso_v2_complete_info() -> int:
    """LsoV2TransmitComplete as the miniport writes it back: Type = V2."""
    return NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE << _LSO_TYPE_SHIFT


# --- NET_PNP_EVENT codes the emulation sends protocols ------------------------------------
NetEventPause = 0x0F
NetEventRestart = 0x10

# Adapter (miniport) states, as !ndiskd.netadapter prints them
MINIPORT_STATE_HALTED = "Halted"
MINIPORT_STATE_INITIALIZING = "Initializing"
MINIPORT_STATE_PAUSED = "Paused"
MINIPORT_STATE_PAUSING = "Pausing"
MINIPORT_STATE_RESTARTING = "Restarting"
MINIPORT_STATE_RUNNING = "Running"
MINIPORT_STATE_FAILED = "Failed"
