"""The transport hands its clients physical runs, and every run is where its bytes are.

tcpip offers received data to afd (WskReceiveEvent) and to tdx (ClientEventChainedReceive) as
runs (physical address, view): the address of the NIC receive buffer the bytes sit in, which
afd and tdx turn into MDLs over those page frames.  Each check here reads emulated physical
memory at a run's address, through the host's PhysicalMemory, and compares it with the bytes
the sender sent at that point of the stream - for data that arrived in order, data held out of
order until a retransmission filled the hole before it, and data the NIC coalesced (RSC), over
IPv4 and IPv6, through WSK and through TDI.  The client then reads the bytes through the MDLs
it was given, and they must be the stream, byte for byte.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import pytest

import stack.tcpip.stack as tcpip_stack
from stack import wsk
from stack.kernel import STATUS_MORE_PROCESSING_REQUIRED, STATUS_SUCCESS, IoAllocateIrp, current_kernel, kroutine
from stack.kernel.memory import PAGE_SHIFT
from stack.kernel.mdl import mdl_chain_bytes
from stack.nic import FaultConfig
from stack.tcpip.addr import SockAddr
from stack.tcpip.tcp.buffers import ReceiveBuffer
from stack.tcpip.transport import ConnectionEndpoint
from stack.tdi import (TDI_EVENT_CHAINED_RECEIVE, TDI_EVENT_CONNECT, FILE_FULL_EA_INFORMATION, TRANSPORT_ADDRESS,
                       TdiBuildAccept, TdiBuildAssociateAddress, TdiBuildSetEventHandler, TdiConnectionContext,
                       TdiTransportAddress)
from stack.tdi import sockets as ks
from stack.usermode.socket import Socket

from world_harness import lab, run_programs, start

sys.path.insert(0, str(Path(__file__).resolve().parent / "wsk"))
from wsk_harness import TEST_LISTEN_DISPATCH, EventLog, WskLab  # noqa: E402

PORT = 5300
SIZE = 96 * 1024


def physical(kernel: Any, address: int, length: int) -> bytes:
    """`length` bytes of the host's emulated physical memory at physical `address`."""
    phys = kernel.phys
    start = address - (phys.base_pfn << PAGE_SHIFT)
    assert 0 <= start and start + length <= phys.page_count << PAGE_SHIFT, f"{address:#x} is not in memory"
    return bytes(phys.view[start:start + length])


class RunChecker:
    """Wraps every receive handler the transport is given on winsrv and checks the runs it offers."""

    def __init__(self, world: Any, data: bytes) -> None:
        self.kernel = world.host("winsrv").kernel
        self.data = data
        self.position: dict[int, int] = {}  # per connection: stream offset of the next byte offered
        self.located = 0  # bytes offered in runs with a physical address, each one checked
        self.copied = 0  # bytes offered in runs without one (the transport's copies)
        self.runs_seen: set[int] = set()
        self.held_out_of_order: set[int] = set()  # addresses of pieces the receive buffer held out of order
        self.coalesced: set[int] = set()  # addresses of RSC units' other receive buffers

    def wrap(self, handler: Any) -> Any:
        def checked(endpoint: Any, runs: list[tuple[int, memoryview]], nbytes: int, flags: int) -> int:
            if current_kernel() is not self.kernel:
                return handler(endpoint, runs, nbytes, flags)
            pos = self.position.get(id(endpoint), 0)
            assert sum(len(view) for _, view in runs) == nbytes
            for address, view in runs:
                expected = self.data[pos:pos + len(view)]
                assert bytes(view) == expected
                if address >= 0:
                    assert physical(self.kernel, address, len(view)) == expected, (
                        f"run {address:#x}+{len(view):#x} at stream offset {pos:#x} is not where its bytes are")
                    self.located += len(view)
                    self.runs_seen.add(address)
                else:
                    self.copied += len(view)
                pos += len(view)
            taken = handler(endpoint, runs, nbytes, flags)
            self.position[id(endpoint)] = self.position.get(id(endpoint), 0) + taken
            return taken
        return checked

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        checker = self
        set_handlers = ConnectionEndpoint.set_handlers

        def set_checked_handlers(endpoint: ConnectionEndpoint, receive: Any = None, disconnect: Any = None) -> None:
            if receive is not None:
                receive = checker.wrap(receive)
            set_handlers(endpoint, receive, disconnect)

        insert = ReceiveBuffer.insert

        def insert_seen(buffer: ReceiveBuffer, start_seq: int, views: Any, at: Any = None) -> bool:
            checker.held_out_of_order.update(a for a in at or () if a >= 0)
            return insert(buffer, start_seq, views, at)

        unit = tcpip_stack._unit_physical_addresses

        def unit_seen(rx: Any, nb: Any, views: list[memoryview]) -> None:
            unit(rx, nb, views)
            checker.coalesced.update(rx.tail_pas)

        monkeypatch.setattr(ConnectionEndpoint, "set_handlers", set_checked_handlers)
        monkeypatch.setattr(ReceiveBuffer, "insert", insert_seen)
        runs = tcpip_stack._unit_runs

        def runs_seen(nb: Any) -> Any:  # the usual way: views and addresses in one walk
            found = runs(nb)
            if found is not None:
                checker.coalesced.update(found[1][1:])
            return found

        monkeypatch.setattr(tcpip_stack, "_unit_physical_addresses", unit_seen)
        monkeypatch.setattr(tcpip_stack, "_unit_runs", runs_seen)


def _sender(server: SockAddr, data: bytes):
    def client():
        sock = yield from Socket.create(server.family)
        yield from sock.connect(server)
        yield from sock.send(data)
        yield from sock.shutdown()
        yield from sock.close()
    return client


def _world(receive: str) -> Any:
    world = lab(seed=17, rsc=receive == "coalesced", max_retransmits=12)
    if receive == "out of order":
        # frames from the client lost and reordered: segments beyond a hole wait in the receive buffer
        world.set_faults("client", FaultConfig(loss=0.03, reorder=0.05, reorder_delay_ns=300_000))
    return world


def _server_address(version: int) -> SockAddr:
    return SockAddr.parse(f"10.0.0.1:{PORT}" if version == 4 else f"[fd00::1]:{PORT}")


def _check_scenario(checker: RunChecker, receive: str) -> None:
    assert checker.located >= SIZE // 2  # most bytes were offered in place, not copied
    if receive == "out of order":
        assert checker.runs_seen & checker.held_out_of_order, "no run offered came from a filled hole"
    if receive == "coalesced":
        assert checker.runs_seen & checker.coalesced, "no run offered came from an RSC unit's other buffers"


# --- WSK: a client's WskReceiveEvent ---------------------------------------------------------------

@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("receive", ["in order", "out of order", "coalesced"])
def test_wsk_receive_event_runs_are_where_their_bytes_are_in_physical_memory(monkeypatch, receive, version):
    data = random.Random(f"{receive}{version}").randbytes(SIZE)
    world = _world(receive)
    checker = RunChecker(world, data)
    checker.install(monkeypatch)
    wsk_lab = WskLab(world)
    log = EventLog()
    sock = wsk_lab.socket(wsk.AF_INET6, wsk.WSK_FLAG_LISTEN_SOCKET, log, TEST_LISTEN_DISPATCH)
    assert wsk_lab.control(sock, wsk.IPPROTO_IPV6, wsk.IPV6_V6ONLY, 0) == STATUS_SUCCESS
    assert wsk_lab.bind(sock, wsk.SOCKADDR_IN6(wsk.AF_INET6, PORT, 0, wsk.IN6ADDR_ANY, 0)) == STATUS_SUCCESS
    assert wsk_lab.enable_events(sock, wsk.WSK_EVENT_ACCEPT | wsk.WSK_EVENT_RECEIVE) == STATUS_SUCCESS
    run_programs(world, start(world, "client", _sender(_server_address(version), data)))
    world.run_for(2_000_000_000)
    assert bytes(log.received) == data  # read through the indications' MDLs
    _check_scenario(checker, receive)
    assert checker.position and all(pos == len(data) for pos in checker.position.values())


# --- TDI: tdx's ClientEventChainedReceive -----------------------------------------------------------

class Chained:
    def __init__(self) -> None:
        self.endpoint: Any = None
        self.data = bytearray()


@kroutine("rxrunstest")
def RunsTestConnectHandler(TdiEventContext, RemoteAddressLength, RemoteAddress, UserDataLength, UserData,
                           OptionsLength, Options, ConnectionContext, AcceptIrp):
    rec: Chained = TdiEventContext
    irp = IoAllocateIrp(2)
    TdiBuildAccept(irp, rec.endpoint.file_object.DeviceObject, rec.endpoint.file_object, None, None, None, None)
    ConnectionContext.value = rec
    AcceptIrp.value = irp
    return STATUS_MORE_PROCESSING_REQUIRED


@kroutine("rxrunstest")
def RunsTestChainedReceiveHandler(TdiEventContext, ConnectionContext, ReceiveFlags, ReceiveLength, StartingOffset,
                                  Tsdu, TsduDescriptor):
    rec: Chained = TdiEventContext
    rec.data += mdl_chain_bytes(Tsdu, StartingOffset, ReceiveLength)  # read through the MDL chain's PFNs
    return STATUS_SUCCESS


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("receive", ["in order", "out of order", "coalesced"])
def test_tdx_chained_receive_runs_are_where_their_bytes_are_in_physical_memory(monkeypatch, receive, version):
    data = random.Random(f"tdi{receive}{version}").randbytes(SIZE)
    world = _world(receive)
    checker = RunChecker(world, data)
    checker.install(monkeypatch)
    rec = Chained()
    any_ip = "0.0.0.0" if version == 4 else "::"

    def server():
        _, ao = ks.open_tdi(version, FILE_FULL_EA_INFORMATION(TdiTransportAddress,
                                                              TRANSPORT_ADDRESS(SockAddr(any_ip, PORT))))
        _, co = ks.open_tdi(version, FILE_FULL_EA_INFORMATION(TdiConnectionContext, rec))
        yield from ks.tdi_request(TdiBuildAssociateAddress, co, ao.handle)
        rec.endpoint = co
        for event, handler in ((TDI_EVENT_CHAINED_RECEIVE, RunsTestChainedReceiveHandler),
                               (TDI_EVENT_CONNECT, RunsTestConnectHandler)):
            status, _ = yield from ks.tdi_request(TdiBuildSetEventHandler, ao, event, handler, rec)
            assert status == STATUS_SUCCESS

    run_programs(world, start(world, "winsrv", server))
    run_programs(world, start(world, "client", _sender(_server_address(version), data)))
    world.run_for(2_000_000_000)
    assert bytes(rec.data) == data
    _check_scenario(checker, receive)
    assert checker.copied == 0  # a run without an address would have gone to ClientEventReceive


# --- khttpd: a real driver's WskReceiveEvent ---------------------------------------------------------

@pytest.mark.parametrize("version", [4, 6])
def test_khttpd_requests_are_indicated_in_runs_over_the_bytes_in_physical_memory(monkeypatch, version):
    sys.path.insert(0, str(Path(__file__).resolve().parent / "drivers"))
    from khttpd_lab import SERVER4, SERVER6, boot_lab, run_client
    from stack.usermode.webserver import http_fetch

    offered: list[tuple[Any, int, bytes]] = []
    set_handlers = ConnectionEndpoint.set_handlers

    def spy(endpoint: ConnectionEndpoint, receive: Any = None, disconnect: Any = None) -> None:
        if receive is not None:
            handler = receive

            def receive(endpoint: Any, runs: list[tuple[int, memoryview]], nbytes: int, flags: int) -> int:
                k = current_kernel()
                for address, view in runs:  # checked now: the NIC reuses its buffers once they go back
                    if address >= 0:
                        assert physical(k, address, len(view)) == bytes(view)
                    offered.append((k, address, bytes(view)))
                return handler(endpoint, runs, nbytes, flags)
        set_handlers(endpoint, receive, disconnect)

    monkeypatch.setattr(ConnectionEndpoint, "set_handlers", spy)
    world = boot_lab(seed=61, parameters={"Transport": "WSK", "ResponseCache": 1 << 20})  # the event path
    response = run_client(world, http_fetch, SERVER4 if version == 4 else SERVER6, "GET", "/index.html")
    assert response.status == 200
    winsrv = world.host("winsrv").kernel
    requests = [(a, b) for k, a, b in offered if k is winsrv and b.startswith(b"GET /index.html")]
    assert requests and all(address >= 0 for address, _ in requests)  # in place, in the NIC's pages


# --- UDP: a datagram is one run ---------------------------------------------------------------------

@pytest.mark.parametrize("version", [4, 6])
def test_a_datagram_is_handed_up_as_one_run_over_its_bytes_in_physical_memory(version):
    world = lab(seed=19)
    server, client = world.host("winsrv"), world.host("client")
    payload = random.Random(version).randbytes(900)
    got: list[tuple[int, bytes, bytes]] = []

    def receive(endpoint: Any, remote: SockAddr, runs: list[tuple[int, memoryview]], nbytes: int) -> None:
        for address, view in runs:
            assert address >= 0  # in the NIC's receive buffer, not a copy
            got.append((address, bytes(view), physical(current_kernel(), address, len(view))))

    any_ip = "0.0.0.0" if version == 4 else "::"
    status, _ = world.run_in("winsrv", lambda: server.transport.udp_open(SockAddr(any_ip, 9200), receive=receive))
    assert status == STATUS_SUCCESS

    def send() -> int:
        _, endpoint = client.transport.udp_open(SockAddr(any_ip, 0))
        return endpoint.send_bytes_to(SockAddr(server.address4 if version == 4 else server.address6, 9200), payload)

    assert world.run_in("client", send) == STATUS_SUCCESS
    world.run_for(1_000_000_000)
    assert [(view, memory) for _, view, memory in got] == [(payload, payload)]
