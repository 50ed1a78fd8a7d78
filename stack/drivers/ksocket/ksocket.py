"""ksocket.c: a synchronous WSK wrapper (wbenny/KSOCKET) on the async-context pattern.

Every call: reset the context (KeResetEvent, IoReuseIrp, IoSetCompletionRoutine), call the
WSK routine with the context's IRP, and wait on the event only if it returned
STATUS_PENDING; the completion routine sets the event and returns
STATUS_MORE_PROCESSING_REQUIRED so the IRP can be reused.  Routines that wait are
generators: callers `yield from` them.  Globals (registration, provider NPI) live per
loaded instance in `DriverObject.extension["ksocket"]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generator

from stack.kernel import (KEVENT, STATUS_ACCESS_VIOLATION, STATUS_INSUFFICIENT_RESOURCES,
                          STATUS_MORE_PROCESSING_REQUIRED, STATUS_PENDING, STATUS_SUCCESS, STATUS_UNSUCCESSFUL,
                          Executive, IoAllocateIrp, IoAllocateMdl, IoFreeIrp, IoFreeMdl, IoReuseIrp,
                          IoSetCompletionRoutine, IoWriteAccess, KeInitializeEvent, KernelMode, KeResetEvent,
                          KeSetEvent, KeWaitForSingleObject, MmProbeAndLockPages, MmUnlockPages, NT_SUCCESS,
                          PoolObject, SynchronizationEvent, current_kernel, kroutine)
from stack.kernel.bugcheck import KernelBugCheck
from stack.kernel.ex import ExAllocatePoolObject, ExFreePoolObject
from stack.kernel.pool import PagedPool
from stack.wsk import (AF_INET, INADDR_ANY, MAKE_WSK_VERSION, NS_ALL, SOCKADDR_IN, WSK_BUF, WSK_CLIENT_DISPATCH,
                       WSK_CLIENT_NPI, WSK_FLAG_CONNECTION_SOCKET, WSK_FLAG_DATAGRAM_SOCKET,
                       WSK_FLAG_LISTEN_SOCKET, WSK_INFINITE_WAIT, WSK_PROVIDER_NPI, WSK_REGISTRATION, Ref,
                       WskCaptureProviderNPI, WskDeregister, WskRegister, WskReleaseProviderNPI)

MODULE = "ksocket"
MEMORY_TAG = "Ks  "  # '  sK'


@dataclass(slots=True)
class KSOCKET_ASYNC_CONTEXT:
    CompletionEvent: KEVENT = field(default_factory=KEVENT)
    Irp: Any = None


class KSOCKET(PoolObject):
    """sizeof(KSOCKET) on x64: WskSocket 0x0, the WskDispatch union 0x8, then
    AsyncContext {KEVENT CompletionEvent 0x10; PIRP Irp 0x28} (0x20): 0x30 in all."""

    POOL_SIZE = 0x30
    EMBEDDED = {"AsyncContext.CompletionEvent": 0x10}

    def __init__(self) -> None:
        self.WskSocket: Any = None
        self.WskDispatch: Any = None  # the union of the provider's dispatch-table pointers
        self.AsyncContext = KSOCKET_ASYNC_CONTEXT()


@dataclass(slots=True)
class KsocketGlobals:
    WskRegistration: WSK_REGISTRATION = field(default_factory=WSK_REGISTRATION)
    WskProvider: WSK_PROVIDER_NPI = field(default_factory=WSK_PROVIDER_NPI)
    # berkeley.c's globals
    KsArray: list[Any] = field(default_factory=lambda: [None] * 128)
    KsIndex: int = 0


WskDispatch = WSK_CLIENT_DISPATCH(MAKE_WSK_VERSION(1, 0), 0, None, symbol=f"{MODULE}!WskDispatch")


def ks_globals() -> KsocketGlobals:
    drv = current_kernel().drivers.get(MODULE)
    if drv is None:
        raise RuntimeError("ksocket is not loaded on this host")
    return drv.extension.setdefault("ksocket", KsocketGlobals())


# --- the async context ---------------------------------------------------------------------------

@kroutine(MODULE)
def KspAsyncContextCompletionRoutine(DeviceObject: Any, Irp: Any, CompletionEvent: KEVENT) -> int:
    KeSetEvent(CompletionEvent, 0, False)  # IO_NO_INCREMENT
    return STATUS_MORE_PROCESSING_REQUIRED


@kroutine(MODULE)
def KspAsyncContextAllocate(AsyncContext: KSOCKET_ASYNC_CONTEXT) -> int:
    KeInitializeEvent(AsyncContext.CompletionEvent, SynchronizationEvent, False)
    AsyncContext.Irp = IoAllocateIrp(1, False)
    if AsyncContext.Irp is None:
        return STATUS_INSUFFICIENT_RESOURCES
    IoSetCompletionRoutine(AsyncContext.Irp, KspAsyncContextCompletionRoutine, AsyncContext.CompletionEvent,
                           True, True, True)
    return STATUS_SUCCESS


@kroutine(MODULE)
def KspAsyncContextFree(AsyncContext: KSOCKET_ASYNC_CONTEXT) -> None:
    IoFreeIrp(AsyncContext.Irp)


@kroutine(MODULE)
def KspAsyncContextReset(AsyncContext: KSOCKET_ASYNC_CONTEXT) -> None:
    KeResetEvent(AsyncContext.CompletionEvent)
    IoReuseIrp(AsyncContext.Irp, STATUS_UNSUCCESSFUL)
    IoSetCompletionRoutine(AsyncContext.Irp, KspAsyncContextCompletionRoutine, AsyncContext.CompletionEvent,
                           True, True, True)


@kroutine(MODULE)
def KspAsyncContextWaitForCompletion(AsyncContext: KSOCKET_ASYNC_CONTEXT, Status: int) -> Generator[Any, Any, int]:
    """Wait only when the call pended; the IRP then holds the final status."""
    if Status == STATUS_PENDING:
        yield KeWaitForSingleObject(AsyncContext.CompletionEvent, Executive, KernelMode, False, None)
        Status = AsyncContext.Irp.IoStatus.Status
    return Status


# --- public API ------------------------------------------------------------------------------------

@kroutine(MODULE)
def KsInitialize() -> Generator[Any, Any, int]:
    g = ks_globals()
    WskClient = WSK_CLIENT_NPI(None, WskDispatch)
    Status = WskRegister(WskClient, g.WskRegistration)
    if not NT_SUCCESS(Status):
        return Status
    # The provider NPI stays captured for the driver's lifetime.
    Status = yield from WskCaptureProviderNPI(g.WskRegistration, WSK_INFINITE_WAIT, g.WskProvider)
    if not NT_SUCCESS(Status):
        yield from WskDeregister(g.WskRegistration)
        return Status
    return STATUS_SUCCESS


@kroutine(MODULE)
def KsDestroy() -> Generator[Any, Any, None]:
    g = ks_globals()
    WskReleaseProviderNPI(g.WskRegistration)
    yield from WskDeregister(g.WskRegistration)


@kroutine(MODULE)
def KsGetAddrInfo(NodeName: str, ServiceName: str, Hints: Any, Result: Ref) -> Generator[Any, Any, int]:
    g = ks_globals()
    AsyncContext = KSOCKET_ASYNC_CONTEXT()
    Status = KspAsyncContextAllocate(AsyncContext)
    if not NT_SUCCESS(Status):
        return Status
    Status = g.WskProvider.Dispatch.WskGetAddressInfo(g.WskProvider.Client, NodeName, ServiceName, NS_ALL, None,
                                                      Hints, Result, None, None, AsyncContext.Irp)
    Status = yield from KspAsyncContextWaitForCompletion(AsyncContext, Status)
    KspAsyncContextFree(AsyncContext)
    return Status


@kroutine(MODULE)
def KsFreeAddrInfo(AddrInfo: Any) -> None:
    g = ks_globals()
    g.WskProvider.Dispatch.WskFreeAddressInfo(g.WskProvider.Client, AddrInfo)


@kroutine(MODULE)
def KsCreateSocket(Socket: Ref, AddressFamily: int, SocketType: int, Protocol: int,
                   Flags: int) -> Generator[Any, Any, int]:
    g = ks_globals()
    # The original allocates KSOCKET from PagedPool (its event is then touched at DISPATCH_LEVEL).
    NewSocket = ExAllocatePoolObject(PagedPool, KSOCKET, MEMORY_TAG)
    if NewSocket is None:
        return STATUS_INSUFFICIENT_RESOURCES
    Status = KspAsyncContextAllocate(NewSocket.AsyncContext)
    if not NT_SUCCESS(Status):
        ExFreePoolObject(NewSocket, MEMORY_TAG)
        return Status
    Status = g.WskProvider.Dispatch.WskSocket(g.WskProvider.Client, AddressFamily, SocketType, Protocol, Flags,
                                              None, None, None, None, None, NewSocket.AsyncContext.Irp)
    Status = yield from KspAsyncContextWaitForCompletion(NewSocket.AsyncContext, Status)
    if NT_SUCCESS(Status):
        NewSocket.WskSocket = NewSocket.AsyncContext.Irp.IoStatus.Information
        NewSocket.WskDispatch = NewSocket.WskSocket.Dispatch
        Socket.value = NewSocket
    else:
        KspAsyncContextFree(NewSocket.AsyncContext)
        ExFreePoolObject(NewSocket, MEMORY_TAG)
    return Status


def KsCreateConnectionSocket(Socket: Ref, AddressFamily: int, SocketType: int, Protocol: int) -> Generator:
    return KsCreateSocket(Socket, AddressFamily, SocketType, Protocol, WSK_FLAG_CONNECTION_SOCKET)


def KsCreateListenSocket(Socket: Ref, AddressFamily: int, SocketType: int, Protocol: int) -> Generator:
    return KsCreateSocket(Socket, AddressFamily, SocketType, Protocol, WSK_FLAG_LISTEN_SOCKET)


def KsCreateDatagramSocket(Socket: Ref, AddressFamily: int, SocketType: int, Protocol: int) -> Generator:
    return KsCreateSocket(Socket, AddressFamily, SocketType, Protocol, WSK_FLAG_DATAGRAM_SOCKET)


@kroutine(MODULE)
def KsCloseSocket(Socket: KSOCKET) -> Generator[Any, Any, int]:
    KspAsyncContextReset(Socket.AsyncContext)
    Status = Socket.WskDispatch.WskCloseSocket(Socket.WskSocket, Socket.AsyncContext.Irp)
    Status = yield from KspAsyncContextWaitForCompletion(Socket.AsyncContext, Status)
    KspAsyncContextFree(Socket.AsyncContext)
    ExFreePoolObject(Socket, MEMORY_TAG)
    return Status


@kroutine(MODULE)
def KsBind(Socket: KSOCKET, LocalAddress: Any) -> Generator[Any, Any, int]:
    KspAsyncContextReset(Socket.AsyncContext)
    Status = Socket.WskDispatch.WskBind(Socket.WskSocket, LocalAddress, 0, Socket.AsyncContext.Irp)
    return (yield from KspAsyncContextWaitForCompletion(Socket.AsyncContext, Status))


@kroutine(MODULE)
def KsAccept(Socket: KSOCKET, NewSocket: Ref, LocalAddress: Any, RemoteAddress: Any) -> Generator[Any, Any, int]:
    KspAsyncContextReset(Socket.AsyncContext)
    Status = Socket.WskDispatch.WskAccept(Socket.WskSocket, 0, None, None, LocalAddress, RemoteAddress,
                                          Socket.AsyncContext.Irp)
    Status = yield from KspAsyncContextWaitForCompletion(Socket.AsyncContext, Status)
    if NT_SUCCESS(Status):
        KNewSocket = ExAllocatePoolObject(PagedPool, KSOCKET, MEMORY_TAG)
        if KNewSocket is None:
            return STATUS_INSUFFICIENT_RESOURCES
        KNewSocket.WskSocket = Socket.AsyncContext.Irp.IoStatus.Information
        KNewSocket.WskDispatch = KNewSocket.WskSocket.Dispatch
        Status = KspAsyncContextAllocate(KNewSocket.AsyncContext)  # (unchecked in the original)
        if not NT_SUCCESS(Status):
            ExFreePoolObject(KNewSocket, MEMORY_TAG)
            return Status
        NewSocket.value = KNewSocket
    return Status


@kroutine(MODULE)
def KsConnect(Socket: KSOCKET, RemoteAddress: Any) -> Generator[Any, Any, int]:
    # Bind to the IPv4 wildcard first (KSOCKET connects over AF_INET only).
    LocalAddress = SOCKADDR_IN(AF_INET, 0, INADDR_ANY)
    KspAsyncContextReset(Socket.AsyncContext)
    Status = Socket.WskDispatch.WskBind(Socket.WskSocket, LocalAddress, 0, Socket.AsyncContext.Irp)
    Status = yield from KspAsyncContextWaitForCompletion(Socket.AsyncContext, Status)
    if not NT_SUCCESS(Status):
        return Status
    # N.B. WskSocketConnect could create, bind and connect in one call.
    KspAsyncContextReset(Socket.AsyncContext)
    Status = Socket.WskDispatch.WskConnect(Socket.WskSocket, RemoteAddress, 0, Socket.AsyncContext.Irp)
    return (yield from KspAsyncContextWaitForCompletion(Socket.AsyncContext, Status))


def _lock_buffer(Buffer: int, Length: int) -> tuple[int, Any]:
    """IoAllocateMdl + MmProbeAndLockPages inside __try: STATUS_ACCESS_VIOLATION on a bad buffer."""
    Mdl = IoAllocateMdl(Buffer, Length, False, False, None)
    if Mdl is None:
        return STATUS_INSUFFICIENT_RESOURCES, None
    k = current_kernel()
    if not all(k.mem.is_mapped(page) for page in range(Buffer & ~0xFFF, Buffer + Length, 0x1000)):
        IoFreeMdl(Mdl)  # what __except(EXCEPTION_EXECUTE_HANDLER) catches
        return STATUS_ACCESS_VIOLATION, None
    MmProbeAndLockPages(Mdl, KernelMode, IoWriteAccess)
    return STATUS_SUCCESS, Mdl


@kroutine(MODULE)
def KsSendRecv(Socket: KSOCKET, Buffer: int, Length: Ref, Flags: int, Send: bool) -> Generator[Any, Any, int]:
    Status, Mdl = _lock_buffer(Buffer, Length.value)
    if Mdl is None:
        return Status
    WskBuffer = WSK_BUF(Mdl, 0, Length.value)
    KspAsyncContextReset(Socket.AsyncContext)
    if Send:
        Status = Socket.WskDispatch.WskSend(Socket.WskSocket, WskBuffer, Flags, Socket.AsyncContext.Irp)
    else:
        Status = Socket.WskDispatch.WskReceive(Socket.WskSocket, WskBuffer, Flags, Socket.AsyncContext.Irp)
    Status = yield from KspAsyncContextWaitForCompletion(Socket.AsyncContext, Status)
    if NT_SUCCESS(Status):
        Length.value = Socket.AsyncContext.Irp.IoStatus.Information
    MmUnlockPages(Mdl)
    IoFreeMdl(Mdl)
    return Status


@kroutine(MODULE)
def KsSendRecvUdp(Socket: KSOCKET, Buffer: int, Length: Ref, Flags: int, RemoteAddress: Any,
                  Send: bool) -> Generator[Any, Any, int]:
    Status, Mdl = _lock_buffer(Buffer, Length.value)
    if Mdl is None:
        return Status
    WskBuffer = WSK_BUF(Mdl, 0, Length.value)
    KspAsyncContextReset(Socket.AsyncContext)
    if Send:
        Status = Socket.WskDispatch.WskSendTo(Socket.WskSocket, WskBuffer, Flags, RemoteAddress, 0, None,
                                              Socket.AsyncContext.Irp)
    else:
        Status = Socket.WskDispatch.WskReceiveFrom(Socket.WskSocket, WskBuffer, Flags, RemoteAddress, None, None,
                                                   None, Socket.AsyncContext.Irp)
    Status = yield from KspAsyncContextWaitForCompletion(Socket.AsyncContext, Status)
    if NT_SUCCESS(Status):
        Length.value = Socket.AsyncContext.Irp.IoStatus.Information
    MmUnlockPages(Mdl)
    IoFreeMdl(Mdl)
    return Status


def KsSend(Socket: KSOCKET, Buffer: int, Length: Ref, Flags: int) -> Generator:
    return KsSendRecv(Socket, Buffer, Length, Flags, True)


def KsRecv(Socket: KSOCKET, Buffer: int, Length: Ref, Flags: int) -> Generator:
    return KsSendRecv(Socket, Buffer, Length, Flags, False)


def KsSendTo(Socket: KSOCKET, Buffer: int, Length: Ref, Flags: int, RemoteAddress: Any) -> Generator:
    return KsSendRecvUdp(Socket, Buffer, Length, Flags, RemoteAddress, True)


def KsRecvFrom(Socket: KSOCKET, Buffer: int, Length: Ref, Flags: int, RemoteAddress: Any) -> Generator:
    return KsSendRecvUdp(Socket, Buffer, Length, Flags, RemoteAddress, False)


_ = KernelBugCheck
