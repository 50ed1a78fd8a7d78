"""OID requests through NdisOidRequest to netvmini's MiniportOidRequest."""

from __future__ import annotations

from ndis_harness import MAC_A, MAC_B, ethernet, two_hosts

from stack.ndis import (NDIS_OFFLOAD, NDIS_OFFLOAD_PARAMETERS, NDIS_OID_REQUEST, NDIS_PACKET_TYPE_BROADCAST,
                        NDIS_PACKET_TYPE_DIRECTED, NDIS_PACKET_TYPE_PROMISCUOUS, NDIS_STATISTICS_INFO,
                        NDIS_STATUS_BUFFER_TOO_SHORT, NDIS_STATUS_INVALID_OID, NDIS_STATUS_SUCCESS,
                        NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG, OID_802_3_CURRENT_ADDRESS,
                        OID_802_3_PERMANENT_ADDRESS, OID_GEN_CURRENT_PACKET_FILTER, OID_GEN_LINK_SPEED,
                        OID_GEN_MAXIMUM_FRAME_SIZE, OID_GEN_STATISTICS, OID_TCP_OFFLOAD_CURRENT_CONFIG,
                        OID_TCP_OFFLOAD_PARAMETERS, NdisOidRequest, NdisRequestSetInformation)
from stack.ndis.oid import NDIS_OFFLOAD_PARAMETERS_LSOV2_DISABLED, NDIS_OFFLOAD_PARAMETERS_TX_RX_DISABLED


def oid(h, request: NDIS_OID_REQUEST, side: str = "a") -> int:
    proto = h.proto_a if side == "a" else h.proto_b
    return h.machine.run_in(proto.kernel, NdisOidRequest, proto.open, request)


def test_oid_values_are_the_real_ones():
    assert (OID_GEN_CURRENT_PACKET_FILTER, OID_802_3_CURRENT_ADDRESS, OID_802_3_PERMANENT_ADDRESS) == \
        (0x0001010E, 0x01010102, 0x01010101)
    assert (OID_GEN_LINK_SPEED, OID_GEN_MAXIMUM_FRAME_SIZE, OID_GEN_STATISTICS) == (0x00010107, 0x00010106, 0x00020106)
    assert (OID_TCP_OFFLOAD_CURRENT_CONFIG, OID_TCP_OFFLOAD_PARAMETERS) == (0xFC01020B, 0xFC01020C)


def test_query_mac_addresses_link_speed_and_frame_size():
    h = two_hosts()
    req = NDIS_OID_REQUEST(OID_802_3_CURRENT_ADDRESS)
    assert oid(h, req) == NDIS_STATUS_SUCCESS and bytes(req.InformationBuffer) == MAC_A and req.BytesWritten == 6
    req = NDIS_OID_REQUEST(OID_802_3_PERMANENT_ADDRESS)
    assert oid(h, req) == NDIS_STATUS_SUCCESS and bytes(req.InformationBuffer) == MAC_A
    req = NDIS_OID_REQUEST(OID_GEN_LINK_SPEED)
    assert oid(h, req) == NDIS_STATUS_SUCCESS and req.ulong() == 10_000_000  # 1 Gb/s in 100 b/s units
    req = NDIS_OID_REQUEST(OID_GEN_MAXIMUM_FRAME_SIZE)
    assert oid(h, req) == NDIS_STATUS_SUCCESS and req.ulong() == 1500


def test_query_into_a_short_buffer_reports_bytes_needed():
    h = two_hosts()
    req = NDIS_OID_REQUEST(OID_802_3_CURRENT_ADDRESS, InformationBufferLength=4)
    assert oid(h, req) == NDIS_STATUS_BUFFER_TOO_SHORT and req.BytesNeeded == 6


def test_unknown_oid_is_rejected():
    h = two_hosts()
    assert oid(h, NDIS_OID_REQUEST(0x0DEAD001)) == NDIS_STATUS_INVALID_OID


def test_packet_filter_set_and_query_and_directed_only_drops_broadcast():
    h = two_hosts()
    req = NDIS_OID_REQUEST(OID_GEN_CURRENT_PACKET_FILTER, RequestType=NdisRequestSetInformation,
                           InformationBuffer=NDIS_PACKET_TYPE_DIRECTED.to_bytes(4, "little"))
    assert oid(h, req, "b") == NDIS_STATUS_SUCCESS
    q = NDIS_OID_REQUEST(OID_GEN_CURRENT_PACKET_FILTER)
    oid(h, q, "b")
    assert q.ulong() == NDIS_PACKET_TYPE_DIRECTED
    h.send_a(ethernet(b"\xff" * 6, MAC_A, bytes(50)))
    h.send_a(ethernet(MAC_B, MAC_A, bytes(50)))
    h.run()
    assert len(h.proto_b.received) == 1
    assert h.nic_b.counters.drops["filtered"] == 1


def test_promiscuous_filter_receives_frames_for_other_macs():
    h = two_hosts()
    value = NDIS_PACKET_TYPE_PROMISCUOUS | NDIS_PACKET_TYPE_BROADCAST
    oid(h, NDIS_OID_REQUEST(OID_GEN_CURRENT_PACKET_FILTER, RequestType=NdisRequestSetInformation,
                            InformationBuffer=value.to_bytes(4, "little")), "b")
    h.send_a(ethernet(bytes.fromhex("02aabbccddee"), MAC_A, bytes(50)))
    h.run()
    assert len(h.proto_b.received) == 1


def test_offload_current_config_reflects_offload_parameters_set():
    h = two_hosts()
    req = NDIS_OID_REQUEST(OID_TCP_OFFLOAD_CURRENT_CONFIG)
    assert oid(h, req) == NDIS_STATUS_SUCCESS
    config = req.InformationBuffer
    assert isinstance(config, NDIS_OFFLOAD)
    assert config.Checksum.IPv4Transmit.TcpChecksum == 1 and config.LsoV2.IPv4.MaxOffLoadSize == 65536
    params = NDIS_OFFLOAD_PARAMETERS(TCPIPv4Checksum=NDIS_OFFLOAD_PARAMETERS_TX_RX_DISABLED,
                                     LsoV2IPv4=NDIS_OFFLOAD_PARAMETERS_LSOV2_DISABLED)
    assert oid(h, NDIS_OID_REQUEST(OID_TCP_OFFLOAD_PARAMETERS, RequestType=NdisRequestSetInformation,
                                   InformationBuffer=params)) == NDIS_STATUS_SUCCESS
    assert not h.nic_a.offloads.tx_checksum and not h.nic_a.offloads.lso
    req = NDIS_OID_REQUEST(OID_TCP_OFFLOAD_CURRENT_CONFIG)
    oid(h, req)
    assert req.InformationBuffer.Checksum.IPv4Transmit.TcpChecksum == 0
    assert req.InformationBuffer.LsoV2.IPv4.MaxOffLoadSize == 0
    assert h.proto_a.status_indications == [NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG]


def test_statistics_count_traffic():
    h = two_hosts()
    h.send_a(ethernet(MAC_B, MAC_A, bytes(86)))
    h.run()
    req = NDIS_OID_REQUEST(OID_GEN_STATISTICS)
    assert oid(h, req, "b") == NDIS_STATUS_SUCCESS
    stats = req.InformationBuffer
    assert isinstance(stats, NDIS_STATISTICS_INFO)
    assert stats.ifHCInUcastPkts == 1 and stats.ifHCInOctets == 100
    req = NDIS_OID_REQUEST(OID_GEN_STATISTICS)
    oid(h, req, "a")
    assert req.InformationBuffer.ifHCOutOctets == 100
