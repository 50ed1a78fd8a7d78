"""A WSK test client ("wsktest") on `winsrv`, IRPs that record their completion, event recorders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generator

from stack import wsk
from stack.kernel import (KEVENT, STATUS_MORE_PROCESSING_REQUIRED, STATUS_SUCCESS, DriverImage, IoAllocateIrp,
                          IoFreeIrp, IoLoadDriver, IoReuseIrp, IoUnloadDriver, IoSetCompletionRoutine, KeResetEvent, KeSetEvent,
                          MmBuildMdlForNonPagedPool, IoAllocateMdl, PsCreateSystemThread, SynchronizationEvent,
                          STATUS_UNSUCCESSFUL, ExAllocatePoolWithTag, current_kernel, kroutine)
from stack.kernel.mdl import mdl_chain_bytes
from stack.kernel.pool import NonPagedPoolNx
from stack.kernel.symbols import pop_kernel, push_kernel
from stack.world import World, default_world

MODULE = "wsktest"


@kroutine(MODULE)
def WskTestDriverEntry(DriverObject: Any, RegistryPath: str) -> int:
    return STATUS_SUCCESS


TEST_IMAGE = DriverImage("wsktest", MODULE, WskTestDriverEntry, pool_tags=())


@kroutine(MODULE)
def WskTestCompletion(DeviceObject: Any, Irp: Any, Context: "Call") -> int:
    Context.done.append((Irp.IoStatus.Status, Irp.IoStatus.Information))
    Context.pending_returned = Irp.pending_returned
    KeSetEvent(Context.event, 0, False)
    return STATUS_MORE_PROCESSING_REQUIRED


class Call:
    """One client IRP (IoAllocateIrp(1)) with a completion routine that records the result."""

    def __init__(self) -> None:
        self.irp = IoAllocateIrp(1, False)
        self.event = KEVENT(SynchronizationEvent, False)
        self.done: list[tuple[int, Any]] = []
        self.pending_returned = False
        IoSetCompletionRoutine(self.irp, WskTestCompletion, self, True, True, True)

    def reuse(self) -> "Call":
        IoReuseIrp(self.irp, STATUS_UNSUCCESSFUL)
        IoSetCompletionRoutine(self.irp, WskTestCompletion, self, True, True, True)
        KeResetEvent(self.event)
        self.done = []
        return self

    @property
    def status(self) -> int | None:
        return self.done[-1][0] if self.done else None

    @property
    def information(self) -> Any:
        return self.done[-1][1] if self.done else None


def buffer(size: int, data: bytes = b"") -> tuple[int, Any]:
    """A nonpaged buffer and its MDL (MmBuildMdlForNonPagedPool), optionally filled."""
    va = ExAllocatePoolWithTag(NonPagedPoolNx, size, "Tst ")
    if data:
        current_kernel().write(va, data)
    mdl = IoAllocateMdl(va, size, False, False, None)
    MmBuildMdlForNonPagedPool(mdl)
    return va, mdl


@dataclass
class EventLog:
    """Records event callbacks; `receive_status` decides what WskReceiveEvent returns."""

    calls: list[tuple] = field(default_factory=list)
    received: bytearray = field(default_factory=bytearray)
    receive_status: int = STATUS_SUCCESS
    accept_bytes: int | None = None  # BytesAccepted to report (None: all)
    kept: list[Any] = field(default_factory=list)

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


@kroutine(MODULE)
def TestAcceptEvent(SocketContext: EventLog, Flags: int, LocalAddress: Any, RemoteAddress: Any, AcceptSocket: Any,
                    AcceptSocketContext: Any, AcceptSocketDispatch: Any) -> int:
    SocketContext.calls.append(("accept", Flags, LocalAddress, RemoteAddress, AcceptSocket))
    AcceptSocketContext.value = SocketContext
    AcceptSocketDispatch.value = TEST_CONNECTION_DISPATCH
    return STATUS_SUCCESS


@kroutine(MODULE)
def TestReceiveEvent(SocketContext: EventLog, Flags: int, DataIndication: Any, BytesIndicated: int,
                     BytesAccepted: Any) -> int:
    log = SocketContext
    chunks = []
    node = DataIndication
    while node is not None:
        chunks.append(mdl_chain_bytes(node.Buffer.Mdl, node.Buffer.Offset, node.Buffer.Length))
        node = node.Next
    if DataIndication is None:  # the socket can no longer receive: close it (wsk.h)
        log.calls.append(("receive-null", Flags, BytesIndicated))
        return STATUS_SUCCESS
    log.calls.append(("receive", Flags, BytesIndicated, b"".join(chunks)))
    status = log.receive_status
    if status == STATUS_SUCCESS:
        take = BytesIndicated if log.accept_bytes is None else log.accept_bytes
        log.received += b"".join(chunks)[:take]
        BytesAccepted.value = take
    elif status == 0x103:  # STATUS_PENDING: keep the indication for WskRelease
        log.kept.append(DataIndication)
    return status


@kroutine(MODULE)
def TestDisconnectEvent(SocketContext: EventLog, Flags: int) -> int:
    SocketContext.calls.append(("disconnect", Flags))
    return STATUS_SUCCESS


@kroutine(MODULE)
def TestSendBacklogEvent(SocketContext: EventLog, IdealBacklogSize: int) -> int:
    SocketContext.calls.append(("backlog", IdealBacklogSize))
    return STATUS_SUCCESS


@kroutine(MODULE)
def TestReceiveFromEvent(SocketContext: EventLog, Flags: int, DataIndication: Any) -> int:
    SocketContext.calls.append(("receive_from", DataIndication.RemoteAddress,
                                mdl_chain_bytes(DataIndication.Buffer.Mdl, DataIndication.Buffer.Offset,
                                                DataIndication.Buffer.Length)))
    return STATUS_SUCCESS


TEST_LISTEN_DISPATCH = wsk.WSK_CLIENT_LISTEN_DISPATCH(TestAcceptEvent, None, None)
TEST_CONNECTION_DISPATCH = wsk.WSK_CLIENT_CONNECTION_DISPATCH(TestReceiveEvent, TestDisconnectEvent,
                                                              TestSendBacklogEvent)
TEST_DATAGRAM_DISPATCH = wsk.WSK_CLIENT_DATAGRAM_DISPATCH(TestReceiveFromEvent)
CLIENT_DISPATCH = wsk.WSK_CLIENT_DISPATCH(wsk.MAKE_WSK_VERSION(1, 0), 0, None)


class WskLab:
    """The default world (afd.sys, the WSK provider, loaded at boot) and a registered test client on winsrv.

    `load_provider=False` stops afd first, so a test can register before the provider comes."""

    def __init__(self, world: World | None = None, load_provider: bool = True, seed: int = 1) -> None:
        self.world = world or default_world(seed, services=False)
        self.k = self.world.host("winsrv").kernel
        if not load_provider:
            IoUnloadDriver(self.k, self.k.drivers["afd"])
            self.run()
        self.load(TEST_IMAGE)
        self.registration = wsk.WSK_REGISTRATION()
        self.npi = wsk.WSK_PROVIDER_NPI()
        if load_provider:
            self.register()

    def load(self, image: DriverImage) -> Any:
        drv = IoLoadDriver(self.k, image)
        self.run()
        return drv

    def register(self) -> None:
        def go() -> None:
            assert wsk.WskRegister(wsk.WSK_CLIENT_NPI(None, CLIENT_DISPATCH), self.registration) == STATUS_SUCCESS
            assert wsk.WskCaptureProviderNPI(self.registration, wsk.WSK_NO_WAIT, self.npi) == STATUS_SUCCESS
        self.call(go)

    @property
    def dispatch(self) -> wsk.WSK_PROVIDER_DISPATCH:
        return self.npi.Dispatch

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn now on winsrv (PASSIVE_LEVEL, inside wsktest's frame) and return its result."""
        @kroutine(MODULE, "WskTestCall")
        def frame() -> Any:
            return fn(*args)
        return self.world.run_in("winsrv", frame)

    def thread(self, body: Callable[..., Generator], *args: Any) -> list[Any]:
        """Start `body(*args)` on a system thread of winsrv; the returned list gets its result."""
        box: list[Any] = []

        @kroutine(MODULE, "WskTestThread")
        def start(_: Any) -> Generator:
            box.append((yield from body(*args)))
            return STATUS_SUCCESS

        push_kernel(self.k)
        try:
            PsCreateSystemThread(start, None, name="wsktest")
        finally:
            pop_kernel()
        return box

    def run(self, ns: int | None = None) -> None:
        if ns is None:
            self.world.run_until_idle()
        else:
            self.world.run_for(ns)
        self.world.check()

    # -- conveniences --------------------------------------------------------------------------
    def socket(self, family: int, category: int, context: Any = None, dispatch: Any = None) -> Any:
        def go() -> Any:
            c = Call()
            socket_type = wsk.SOCK_DGRAM if category == wsk.WSK_FLAG_DATAGRAM_SOCKET else wsk.SOCK_STREAM
            proto = wsk.IPPROTO_UDP if category == wsk.WSK_FLAG_DATAGRAM_SOCKET else wsk.IPPROTO_TCP
            status = self.dispatch.WskSocket(self.npi.Client, family, socket_type, proto, category, context,
                                             dispatch, None, None, None, c.irp)
            assert status == STATUS_SUCCESS and c.status == STATUS_SUCCESS
            IoFreeIrp(c.irp)
            return c.information
        return self.call(go)

    def bind(self, sock: Any, address: Any) -> int:
        def go() -> int:
            c = Call()
            sock.Dispatch.WskBind(sock, address, 0, c.irp)
            IoFreeIrp(c.irp)
            return c.status
        return self.call(go)

    def control(self, sock: Any, level: int, code: int, value: Any, irp: bool = True) -> int:
        def go() -> int:
            c = Call() if irp else None
            status = sock.Dispatch.WskControlSocket(sock, wsk.WskSetOption, code, level, 4, value, 0, None, None,
                                                    c.irp if c else None)
            if c is not None:
                IoFreeIrp(c.irp)
                return c.status
            return status
        return self.call(go)

    def enable_events(self, sock: Any, mask: int) -> int:
        control = wsk.WSK_EVENT_CALLBACK_CONTROL(wsk.NPI_WSK_INTERFACE_ID, mask)
        return self.call(lambda: sock.Dispatch.WskControlSocket(sock, wsk.WskSetOption, wsk.SO_WSK_EVENT_CALLBACK,
                                                                wsk.SOL_SOCKET, 16, control, 0, None, None, None))

    def close(self, sock: Any) -> int:
        def go() -> int:
            c = Call()
            sock.Dispatch.WskCloseSocket(sock, c.irp)
            IoFreeIrp(c.irp)
            return c.status
        return self.call(go)
