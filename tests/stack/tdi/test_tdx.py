"""tdx: TDI requests as IRPs, TDI's statuses for bad requests, event handlers at DISPATCH_LEVEL."""

from __future__ import annotations

import sys

import pytest
from pathlib import Path
from typing import Any

from stack.kernel import (DISPATCH_LEVEL, STATUS_ADDRESS_ALREADY_ASSOCIATED, STATUS_ADDRESS_NOT_ASSOCIATED,
                          STATUS_INVALID_ADDRESS, STATUS_INVALID_ADDRESS_COMPONENT, STATUS_INVALID_CONNECTION,
                          STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_EA_NAME, STATUS_INVALID_PARAMETER,
                          STATUS_MORE_PROCESSING_REQUIRED, STATUS_PENDING, STATUS_SUCCESS, IoAllocateIrp, current_kernel,
                          kroutine)
from stack.kernel.ke import KeDelayExecutionThread
from stack.kernel.mdl import mdl_chain_bytes
from stack.tcpip.addr import SockAddr
from stack.tdi import (TDI_EVENT_CHAINED_RECEIVE, TDI_EVENT_CONNECT, TDI_EVENT_DISCONNECT, TDI_EVENT_RECEIVE,
                       TDI_QUERY_ACCEPT, TDI_RECEIVE_AT_DISPATCH_LEVEL, TDI_DISCONNECT_RELEASE,
                       TDI_CONNECTION_INFORMATION, FILE_FULL_EA_INFORMATION, TRANSPORT_ADDRESS, TdiBuildAccept,
                       TdiBuildAssociateAddress, TdiBuildDisconnect, TdiBuildListen, TdiBuildReceive, TdiBuildSend,
                       TdiBuildSendDatagram, TdiBuildReceiveDatagram, TdiBuildSetEventHandler, TdiConnectionContext,
                       TdiTransportAddress)
from stack.tdi import sockets as ks
from stack.tdi.build import _build
from stack.usermode.socket import SOCK_DGRAM, Socket

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from world_harness import lab, run_programs, start  # noqa: E402

PORT = 5000


def _address(family: int, port: int = PORT) -> FILE_FULL_EA_INFORMATION:
    return FILE_FULL_EA_INFORMATION(TdiTransportAddress, TRANSPORT_ADDRESS(SockAddr("0.0.0.0" if family == 4
                                                                                    else "::", port)))


def _buffer(size: int):
    return ks._buffer(size)


def test_bad_requests_get_tdis_statuses_not_exceptions():
    world = lab(seed=2)
    statuses: dict[str, int] = {}

    def server():
        status, _ = ks.open_tdi(4, FILE_FULL_EA_INFORMATION("NotAnEa", b""))
        statuses["wrong EA name"] = status
        status, _ = ks.open_tdi(4, FILE_FULL_EA_INFORMATION(TdiTransportAddress, TRANSPORT_ADDRESS("[::]:1")))
        statuses["IPv6 address on \\Device\\Tcp"] = status
        status, _ = ks.open_tdi(4, FILE_FULL_EA_INFORMATION(TdiTransportAddress, b"\x01"))
        statuses["truncated TRANSPORT_ADDRESS"] = status
        _, ao = ks.open_tdi(4, _address(4))
        _, co = ks.open_tdi(4, FILE_FULL_EA_INFORMATION(TdiConnectionContext, "ctx"))
        buffer, mdl = _buffer(16)
        statuses["send unassociated"], _ = yield from ks.tdi_request(TdiBuildSend, co, mdl, 0, 16)
        statuses["listen unassociated"], _ = yield from ks.tdi_request(TdiBuildListen, co, 0, None, None)
        statuses["accept without listen"], _ = yield from ks.tdi_request(TdiBuildAccept, co, None, None)
        statuses["event handler on a connection"], _ = yield from ks.tdi_request(
            TdiBuildSetEventHandler, co, TDI_EVENT_RECEIVE, None, None)
        statuses["bad handle"], _ = yield from ks.tdi_request(TdiBuildAssociateAddress, co, 0x1234)
        statuses["associate"], _ = yield from ks.tdi_request(TdiBuildAssociateAddress, co, ao.handle)
        statuses["associate twice"], _ = yield from ks.tdi_request(TdiBuildAssociateAddress, co, ao.handle)
        statuses["send before connect"], _ = yield from ks.tdi_request(TdiBuildSend, co, mdl, 0, 16)
        statuses["unknown event type"], _ = yield from ks.tdi_request(TdiBuildSetEventHandler, ao, 99, None, None)

        def unknown_minor(irp, dev, fo, routine, ctx):
            _build(irp, dev, fo, routine, ctx, 0x33, None)

        statuses["unknown minor"], _ = yield from ks.tdi_request(unknown_minor, co)
        ks._free_buffer(buffer, mdl)
        ks.close_tdi(co)
        ks.close_tdi(ao)

    run_programs(world, start(world, "winsrv", server))
    assert statuses == {
        "wrong EA name": STATUS_INVALID_EA_NAME,
        "IPv6 address on \\Device\\Tcp": STATUS_INVALID_ADDRESS_COMPONENT,
        "truncated TRANSPORT_ADDRESS": STATUS_INVALID_ADDRESS_COMPONENT,
        "send unassociated": STATUS_INVALID_CONNECTION,
        "listen unassociated": STATUS_ADDRESS_NOT_ASSOCIATED,
        "accept without listen": STATUS_INVALID_CONNECTION,
        "event handler on a connection": STATUS_INVALID_ADDRESS,
        "bad handle": 0xC0000008,  # STATUS_INVALID_HANDLE
        "associate": STATUS_SUCCESS,
        "associate twice": STATUS_ADDRESS_ALREADY_ASSOCIATED,
        "send before connect": STATUS_INVALID_CONNECTION,
        "unknown event type": STATUS_INVALID_PARAMETER,
        "unknown minor": STATUS_INVALID_DEVICE_REQUEST,
    }


def _client(server: str, payload: bytes, reply: int = 0, sndbuf: int | None = None):
    def client():
        sock = yield from Socket.create(SockAddr.parse(server).family)
        if sndbuf is not None:
            yield from sock.setsockopt("SO_SNDBUF", sndbuf)
        yield from sock.connect(SockAddr.parse(server))
        yield from sock.send(payload)
        got = b""
        while len(got) < reply:
            chunk = yield from sock.recv(reply - len(got))
            if not chunk:
                break
            got += chunk
        yield from sock.shutdown()
        yield from sock.close()
        return got
    return client


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []  # (handler, IRQL, flags)
        self.data = bytearray()
        self.endpoint: Any = None
        self.irp_buffer: Any = None


@kroutine("tdxtest")
def TestConnectHandler(TdiEventContext, RemoteAddressLength, RemoteAddress, UserDataLength, UserData,
                       OptionsLength, Options, ConnectionContext, AcceptIrp):
    rec: Recorder = TdiEventContext
    rec.calls.append(("connect", current_kernel().irql, 0))
    endpoint = rec.endpoint
    irp = IoAllocateIrp(2)
    TdiBuildAccept(irp, endpoint.file_object.DeviceObject, endpoint.file_object, None, None, None, None)
    ConnectionContext.value = rec
    AcceptIrp.value = irp
    rec.accept_irp = irp
    return STATUS_MORE_PROCESSING_REQUIRED


@kroutine("tdxtest")
def TestReceiveHandler(TdiEventContext, ConnectionContext, ReceiveFlags, BytesIndicated, BytesAvailable,
                       BytesTaken, Tsdu, IoRequestPacket):
    """Take 10 bytes of the lookahead, ask for the rest with a TDI_RECEIVE IRP (the first time)."""
    rec: Recorder = TdiEventContext
    rec.calls.append(("receive", current_kernel().irql, ReceiveFlags))
    if rec.irp_buffer is not None:
        rec.data += bytes(Tsdu[:BytesIndicated])
        BytesTaken.value = BytesIndicated
        return STATUS_SUCCESS
    rec.data += bytes(Tsdu[:10])
    BytesTaken.value = 10
    rec.irp_buffer = ks._buffer(BytesAvailable - 10)
    endpoint = rec.endpoint
    irp = IoAllocateIrp(2)
    TdiBuildReceive(irp, endpoint.file_object.DeviceObject, endpoint.file_object, TestReceiveIrpComplete, rec,
                    rec.irp_buffer[1], 0, BytesAvailable - 10)
    IoRequestPacket.value = irp
    return STATUS_MORE_PROCESSING_REQUIRED


@kroutine("tdxtest")
def TestReceiveIrpComplete(DeviceObject, Irp, Context):
    rec: Recorder = Context
    rec.calls.append(("receive irp done", current_kernel().irql, Irp.IoStatus.Information))
    rec.data += mdl_chain_bytes(rec.irp_buffer[1], 0, Irp.IoStatus.Information)
    from stack.kernel import IoFreeIrp
    IoFreeIrp(Irp)
    return STATUS_MORE_PROCESSING_REQUIRED


@kroutine("tdxtest")
def TestDisconnectHandler(TdiEventContext, ConnectionContext, DisconnectDataLength, DisconnectData,
                          DisconnectInformationLength, DisconnectInformation, DisconnectFlags):
    rec: Recorder = TdiEventContext
    rec.calls.append(("disconnect", current_kernel().irql, DisconnectFlags))
    return STATUS_SUCCESS


def test_event_handlers_run_at_dispatch_level_and_a_returned_irp_gets_the_rest_in_order():
    world = lab(seed=4)
    rec = Recorder()
    payload = bytes(range(256)) * 4

    def server():
        _, ao = ks.open_tdi(4, _address(4))
        _, co = ks.open_tdi(4, FILE_FULL_EA_INFORMATION(TdiConnectionContext, rec))
        yield from ks.tdi_request(TdiBuildAssociateAddress, co, ao.handle)
        rec.endpoint = co
        for event, handler in ((TDI_EVENT_RECEIVE, TestReceiveHandler), (TDI_EVENT_DISCONNECT, TestDisconnectHandler),
                               (TDI_EVENT_CONNECT, TestConnectHandler)):
            status, _ = yield from ks.tdi_request(TdiBuildSetEventHandler, ao, event, handler, rec)
            assert status == STATUS_SUCCESS

    run_programs(world, start(world, "winsrv", server))
    # afd's send buffering lets the client's FIN follow its data at once, in the same RSC unit as the
    # bytes the returned IRP takes: the release is still indicated only after that IRP has them.
    run_programs(world, start(world, "client", _client("10.0.0.1:5000", payload)))
    world.run_for(1_000_000_000)
    assert bytes(rec.data) == payload
    kinds = [c[0] for c in rec.calls]
    assert kinds[0] == "connect" and "receive" in kinds and "receive irp done" in kinds and kinds[-1] == "disconnect"
    for name, irql, flags in rec.calls:
        if name in ("connect", "receive", "disconnect"):
            assert irql == DISPATCH_LEVEL, name
        if name == "receive":
            assert flags & TDI_RECEIVE_AT_DISPATCH_LEVEL
    assert rec.calls[-1][2] == TDI_DISCONNECT_RELEASE


@kroutine("tdxtest")
def TestChainedReceiveHandler(TdiEventContext, ConnectionContext, ReceiveFlags, ReceiveLength, StartingOffset,
                              Tsdu, TsduDescriptor):
    rec: Recorder = TdiEventContext
    rec.calls.append(("chained", current_kernel().irql, ReceiveLength))
    rec.data += mdl_chain_bytes(Tsdu, StartingOffset, ReceiveLength)  # the test reads it; a driver could DMA it
    return STATUS_SUCCESS


def test_chained_receive_indicates_an_mdl_over_the_nics_pages_without_a_copy():
    world = lab(seed=6)
    rec = Recorder()
    payload = b"chained receive " * 50

    def server():
        _, ao = ks.open_tdi(6, _address(6))
        _, co = ks.open_tdi(6, FILE_FULL_EA_INFORMATION(TdiConnectionContext, rec))
        yield from ks.tdi_request(TdiBuildAssociateAddress, co, ao.handle)
        rec.endpoint = co
        yield from ks.tdi_request(TdiBuildSetEventHandler, ao, TDI_EVENT_CHAINED_RECEIVE, TestChainedReceiveHandler,
                                  rec)
        yield from ks.tdi_request(TdiBuildSetEventHandler, ao, TDI_EVENT_CONNECT, TestConnectHandler, rec)

    run_programs(world, start(world, "winsrv", server))
    winsrv = world.host("winsrv").kernel
    before = winsrv.copies.total_bytes
    run_programs(world, start(world, "client", _client("[fd00::1]:5000", payload)))
    world.run_for(1_000_000_000)
    assert bytes(rec.data) == payload
    assert all(irql == DISPATCH_LEVEL for name, irql, _ in rec.calls)
    assert winsrv.copies.total_bytes == before  # indicated in place, nothing copied on winsrv


def test_listen_with_query_accept_holds_the_connection_until_tdi_accept():
    world = lab(seed=8)
    steps: list[str] = []
    payload = b"hello after the accept"

    def server():
        _, ao = ks.open_tdi(4, _address(4))
        _, co = ks.open_tdi(4, FILE_FULL_EA_INFORMATION(TdiConnectionContext, None))
        yield from ks.tdi_request(TdiBuildAssociateAddress, co, ao.handle)
        info = TDI_CONNECTION_INFORMATION()
        status, _ = yield from ks.tdi_request(TdiBuildListen, co, TDI_QUERY_ACCEPT, None, info)
        steps.append(f"listen {status:#x} from {info.remote().ip}")
        status, _ = yield from ks.tdi_request(TdiBuildAccept, co, None, None)
        steps.append(f"accept {status:#x}")
        buffer, mdl = ks._buffer(len(payload))
        status, n = yield from ks.tdi_request(TdiBuildReceive, co, mdl, 0x4, len(payload))
        steps.append(mdl_chain_bytes(mdl, 0, n).decode())
        status, _ = yield from ks.tdi_request(TdiBuildReceive, co, mdl, 0, len(payload))  # the client's FIN
        steps.append(f"end of stream {status:#x}")
        status, _ = yield from ks.tdi_request(TdiBuildDisconnect, co, None, TDI_DISCONNECT_RELEASE, None, None)
        steps.append(f"release {status:#x}")
        ks._free_buffer(buffer, mdl)
        ks.close_tdi(co)
        ks.close_tdi(ao)

    server_program = start(world, "winsrv", server)
    world.run_for(10_000_000)
    run_programs(world, start(world, "client", _client("10.0.0.1:5000", payload)), server_program)
    assert steps == ["listen 0x0 from 10.0.0.2", "accept 0x0", payload.decode(), "end of stream 0x0", "release 0x0"]


def test_udp_datagrams_over_tdi_send_datagram_and_receive_datagram():
    world = lab(seed=10)
    got: dict[str, Any] = {}

    def server():
        _, ao = ks.open_tdi(4, _address(4, 5353), device="\\Device\\Udp")
        buffer, mdl = ks._buffer(64)
        info = TDI_CONNECTION_INFORMATION()
        status, n = yield from ks.tdi_request(TdiBuildReceiveDatagram, ao, mdl, 64, None, info, 0)
        got["request"] = mdl_chain_bytes(mdl, 0, n)
        got["from"] = info.remote()
        current_kernel().write(buffer, b"pong")
        status, n = yield from ks.tdi_request(TdiBuildSendDatagram, ao, mdl, 4, info)
        got["sent"] = (status, n)
        ks._free_buffer(buffer, mdl)
        ks.close_tdi(ao)

    def client():
        sock = yield from Socket.create(2, SOCK_DGRAM)
        yield from sock.sendto(b"ping", SockAddr.parse("10.0.0.1:5353"))
        data, _ = yield from sock.recvfrom(64)
        yield from sock.close()
        return data

    server_program = start(world, "winsrv", server)
    world.run_for(10_000_000)
    client_program = start(world, "client", client)
    run_programs(world, client_program, server_program)
    assert got["request"] == b"ping" and str(got["from"].ip) == "10.0.0.2"
    assert got["sent"] == (STATUS_SUCCESS, 4)
    assert client_program.result == b"pong"


def test_irp_names_tdi_minor_functions_for_tdx_devices():
    # WinDbg's !irp prints "[IRP_MJ_INTERNAL_DEVICE_CONTROL(f), N/A(7)]" for a TDI_SEND to \Driver\tdx;
    # this lab names the minor from tdikrnl.h instead.
    from wskdbg.render.irp import IrpLocation, _minor_name
    loc = IrpLocation(1, 0, 0x0F, 0x07, 0, 0, (0, 0, 0, 0), 1, 1, 0, 0, driver="\\Driver\\tdx")
    assert _minor_name(loc) == "TDI_SEND"
    loc.driver = "\\Driver\\AFD"
    assert _minor_name(loc) == "N/A"


def _segments_from(capture, port: int) -> list[int]:
    """Flags of every distinct segment the server's port sent (the capture sees each on two links)."""
    from stack.tcpip.wire.frame import parse_frame
    from stack.tcpip.wire.tcp import TcpHeader
    seen: dict[tuple[int, int, int], None] = {}
    for record in capture.records:
        tcp = parse_frame(record.frame, verify_checksum=False).transport
        if isinstance(tcp, TcpHeader) and tcp.src_port == port:
            seen[(tcp.seq, tcp.ack, tcp.flags)] = None
    return [flags for _, _, flags in seen]


@pytest.mark.parametrize("accept", [True, False], ids=["TDI_ACCEPT", "TDI_DISCONNECT"])
def test_query_accept_holds_the_syn_unanswered_until_tdi_accept_or_tdi_disconnect(accept):
    """TDI_LISTEN with TDI_QUERY_ACCEPT completes when the SYN arrives; nothing answers the SYN until
    the client decides: TDI_ACCEPT sends the SYN-ACK, TDI_DISCONNECT a RST."""
    from stack.tcpip.wire.tcp import ACK, RST, SYN
    world = lab(seed=12)
    capture = world.capture()
    marks: dict[str, int] = {}

    def server():
        _, ao = ks.open_tdi(4, _address(4))
        _, co = ks.open_tdi(4, FILE_FULL_EA_INFORMATION(TdiConnectionContext, None))
        yield from ks.tdi_request(TdiBuildAssociateAddress, co, ao.handle)
        info = TDI_CONNECTION_INFORMATION()
        yield from ks.tdi_request(TdiBuildListen, co, TDI_QUERY_ACCEPT, None, info)
        yield KeDelayExecutionThread(0, False, -2_000 * 10_000)  # decide 2 s later
        marks["before"] = len(_segments_from(capture, PORT))
        if accept:
            status, _ = yield from ks.tdi_request(TdiBuildAccept, co, None, None)
            marks["accept"] = status
            buffer, mdl = ks._buffer(16)
            yield from ks.tdi_request(TdiBuildReceive, co, mdl, 0x4, 5)
            ks._free_buffer(buffer, mdl)
            yield from ks.tdi_request(TdiBuildDisconnect, co, None, TDI_DISCONNECT_RELEASE, None, None)
        else:
            status, _ = yield from ks.tdi_request(TdiBuildDisconnect, co, None, TDI_DISCONNECT_RELEASE, None, None)
            marks["disconnect"] = status
        ks.close_tdi(co)
        ks.close_tdi(ao)

    server_program = start(world, "winsrv", server)
    world.run_for(10_000_000)
    client = start(world, "client", _client("10.0.0.1:5000", b"hello"))
    world.run_while(lambda: not (client.done and server_program.done), max_events=2_000_000)
    capture.stop()
    flags = _segments_from(capture, PORT)
    assert marks["before"] == 0  # the SYN (and its retransmission) had no answer for 2 s
    if accept:
        assert marks["accept"] == 0 and flags[0] == SYN | ACK and client.error is None
    else:
        assert marks["disconnect"] == 0 and flags == [RST | ACK] and client.error is not None


KEPT: list[Any] = []


@kroutine("tdxtest")
def TestKeepingChainedReceiveHandler(TdiEventContext, ConnectionContext, ReceiveFlags, ReceiveLength, StartingOffset,
                                     Tsdu, TsduDescriptor):
    """Keeps every TSDU (STATUS_PENDING): reads it later, then gives it back with TdiReturnChainedReceives."""
    rec: Recorder = TdiEventContext
    rec.calls.append(("chained", current_kernel().irql, ReceiveLength))
    KEPT.append((Tsdu, StartingOffset, ReceiveLength, TsduDescriptor))
    return STATUS_PENDING


def test_a_chained_receive_kept_with_status_pending_holds_the_nics_nbls_until_tdi_return_chained_receives():
    from stack.ndis.state import ndis_state
    from stack.tdi import TdiReturnChainedReceives, tdx_globals
    world = lab(seed=14)
    rec = Recorder()
    KEPT.clear()
    payload = b"kept by the client " * 20

    def server():
        _, ao = ks.open_tdi(4, _address(4))
        _, co = ks.open_tdi(4, FILE_FULL_EA_INFORMATION(TdiConnectionContext, rec))
        yield from ks.tdi_request(TdiBuildAssociateAddress, co, ao.handle)
        rec.endpoint = co
        yield from ks.tdi_request(TdiBuildSetEventHandler, ao, TDI_EVENT_CHAINED_RECEIVE,
                                  TestKeepingChainedReceiveHandler, rec)
        yield from ks.tdi_request(TdiBuildSetEventHandler, ao, TDI_EVENT_CONNECT, TestConnectHandler, rec)

    run_programs(world, start(world, "winsrv", server))
    winsrv = world.host("winsrv").kernel
    adapter = ndis_state(winsrv).adapters[0]
    idle = adapter.outstanding_indications
    run_programs(world, start(world, "client", _client("10.0.0.1:5000", payload)))
    world.run_for(1_000_000_000)
    assert KEPT and all(irql == DISPATCH_LEVEL for name, irql, _ in rec.calls if name == "chained")
    # The client owns the TSDUs: the miniport's receive NBLs under them are not back yet.
    assert adapter.outstanding_indications > idle
    assert len(tdx_globals(winsrv).tsdus) == len(KEPT)
    assert b"".join(mdl_chain_bytes(m, o, n) for m, o, n, _ in KEPT) == payload  # still readable, no copy
    world.run_in("winsrv", TdiReturnChainedReceives, [d for *_, d in KEPT], len(KEPT))
    world.run_for(1_000_000)
    assert adapter.outstanding_indications == idle and not tdx_globals(winsrv).tsdus


@kroutine("tdxtest")
def TestReceiveDatagramHandler(TdiEventContext, SourceAddressLength, SourceAddress, OptionsLength, Options,
                               ReceiveDatagramFlags, BytesIndicated, BytesAvailable, BytesTaken, Tsdu, IoRequestPacket):
    rec: Recorder = TdiEventContext
    from stack.tdi.structs import parse_transport_address
    rec.calls.append(("datagram", current_kernel().irql, ReceiveDatagramFlags,
                      parse_transport_address(SourceAddress[:SourceAddressLength])))
    if rec.endpoint is None:  # take it all from the lookahead
        rec.data += bytes(Tsdu[:BytesIndicated])
        BytesTaken.value = BytesIndicated
        return STATUS_SUCCESS
    # take the first 4 bytes, hand back a TDI_RECEIVE_DATAGRAM IRP for the rest
    rec.data += bytes(Tsdu[:4])
    BytesTaken.value = 4
    irp, mdl, info, ao = rec.endpoint
    TdiBuildReceiveDatagram(irp, ao.file_object.DeviceObject, ao.file_object, None, None, mdl, 64, None, info, 0)
    IoRequestPacket.value = irp
    return STATUS_MORE_PROCESSING_REQUIRED


@kroutine("tdxtest")
def TestChainedReceiveDatagramHandler(TdiEventContext, SourceAddressLength, SourceAddress, OptionsLength, Options,
                                      ReceiveDatagramFlags, ReceiveDatagramLength, StartingOffset, Tsdu,
                                      TsduDescriptor):
    rec: Recorder = TdiEventContext
    from stack.tdi.structs import parse_transport_address
    rec.calls.append(("chained datagram", current_kernel().irql, ReceiveDatagramFlags,
                      parse_transport_address(SourceAddress[:SourceAddressLength])))
    rec.data += mdl_chain_bytes(Tsdu, StartingOffset, ReceiveDatagramLength)
    return STATUS_SUCCESS


@pytest.mark.parametrize("family,server,client_ip", [(4, "10.0.0.1:5353", "10.0.0.2"),
                                                     (6, "[fd00::1]:5353", "fd00::2")], ids=["udp", "udp6"])
@pytest.mark.parametrize("event", ["TDI_EVENT_RECEIVE_DATAGRAM", "TDI_EVENT_CHAINED_RECEIVE_DATAGRAM"])
def test_a_datagram_is_indicated_to_the_receive_datagram_handler_at_dispatch_level_with_its_source(
        family, server, client_ip, event):
    from stack.tdi import TDI_EVENT_CHAINED_RECEIVE_DATAGRAM, TDI_EVENT_RECEIVE_DATAGRAM
    world = lab(seed=16)
    rec = Recorder()
    payload = b"datagram to a kernel TDI client"
    handler = TestReceiveDatagramHandler if event == "TDI_EVENT_RECEIVE_DATAGRAM" else TestChainedReceiveDatagramHandler
    kind = TDI_EVENT_RECEIVE_DATAGRAM if event == "TDI_EVENT_RECEIVE_DATAGRAM" else TDI_EVENT_CHAINED_RECEIVE_DATAGRAM

    def server_body():
        _, ao = ks.open_tdi(family, _address(family, 5353), device="\\Device\\Udp" if family == 4 else "\\Device\\Udp6")
        status, _ = yield from ks.tdi_request(TdiBuildSetEventHandler, ao, kind, handler, rec)
        rec.calls.append(("set", status))

    def client():
        sock = yield from Socket.create(2 if family == 4 else 23, SOCK_DGRAM)
        yield from sock.sendto(payload, SockAddr.parse(server))
        yield from sock.close()

    run_programs(world, start(world, "winsrv", server_body))
    run_programs(world, start(world, "client", client))
    world.run_for(100_000_000)
    assert rec.calls[0] == ("set", STATUS_SUCCESS)
    (_, irql, flags, source), = rec.calls[1:]
    assert irql == DISPATCH_LEVEL and flags & TDI_RECEIVE_AT_DISPATCH_LEVEL
    assert str(source.ip) == client_ip
    assert bytes(rec.data) == payload


def test_a_receive_datagram_handler_can_take_part_and_return_an_irp_for_the_rest():
    from stack.tdi import TDI_EVENT_RECEIVE_DATAGRAM
    world = lab(seed=18)
    rec = Recorder()
    payload = b"head" + b"and the rest of the datagram"
    done: dict[str, Any] = {}

    def server_body():
        _, ao = ks.open_tdi(4, _address(4, 5353), device="\\Device\\Udp")
        buffer, mdl = ks._buffer(64)
        info = TDI_CONNECTION_INFORMATION()
        irp = IoAllocateIrp(2)
        rec.endpoint = (irp, mdl, info, ao)
        done["mdl"], done["info"], done["irp"] = mdl, info, irp
        yield from ks.tdi_request(TdiBuildSetEventHandler, ao, TDI_EVENT_RECEIVE_DATAGRAM, TestReceiveDatagramHandler,
                                  rec)

    def client():
        sock = yield from Socket.create(2, SOCK_DGRAM)
        yield from sock.sendto(payload, SockAddr.parse("10.0.0.1:5353"))
        yield from sock.close()

    run_programs(world, start(world, "winsrv", server_body))
    run_programs(world, start(world, "client", client))
    world.run_for(100_000_000)
    irp = done["irp"]
    assert irp.IoStatus.Status == STATUS_SUCCESS and irp.IoStatus.Information == len(payload) - 4
    assert bytes(rec.data) + mdl_chain_bytes(done["mdl"], 0, len(payload) - 4) == payload
    assert str(done["info"].remote().ip) == "10.0.0.2"


def test_datagram_events_are_refused_on_tcp_and_connection_events_on_udp():
    from stack.tdi import TDI_EVENT_RECEIVE_DATAGRAM
    world = lab(seed=20)
    statuses: list[int] = []

    def server_body():
        _, tcp = ks.open_tdi(4, _address(4, 5400))
        _, udp = ks.open_tdi(4, _address(4, 5401), device="\\Device\\Udp")
        status, _ = yield from ks.tdi_request(TdiBuildSetEventHandler, tcp, TDI_EVENT_RECEIVE_DATAGRAM,
                                              TestReceiveDatagramHandler, None)
        statuses.append(status)
        status, _ = yield from ks.tdi_request(TdiBuildSetEventHandler, udp, TDI_EVENT_RECEIVE,
                                              TestReceiveDatagramHandler, None)
        statuses.append(status)

    run_programs(world, start(world, "winsrv", server_body))
    assert statuses == [STATUS_INVALID_PARAMETER, STATUS_INVALID_PARAMETER]
