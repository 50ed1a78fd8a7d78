"""echosrv: the WDK "WSK Sample TCP Echo Server" (network/wsk/echosrv/wsksmple.c) in Python.

Read it next to the C file: the same routines in the same order, the same calls, statuses,
pool tags and WPP trace points.  What C keeps in globals (the registration, the work
queue, the listening socket context, the WPP control block) lives per loaded instance in
`DriverObject.extension["globals"]`, because one Python module may be loaded on several
emulated hosts.  A routine that waits is a generator run on the worker thread.

Load with `IoLoadDriver(kernel, DRIVER_IMAGE)`; trace with
`kernel.wpp.start("echosrvtrace", ECHOSRV_CONTROL_GUID, flags=0x3)`.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Generator

from stack.kernel import (KEVENT, STATUS_INSUFFICIENT_RESOURCES, STATUS_MORE_PROCESSING_REQUIRED,
                          STATUS_REQUEST_NOT_ACCEPTED, STATUS_SUCCESS, STATUS_UNSUCCESSFUL, WPP_CLEANUP,
                          WPP_DEFINE_CONTROL_GUID, WPP_INIT_TRACING, DoTraceMessage, DriverImage, Executive,
                          ExAllocatePoolZero, ExFreePool, IoAllocateIrp, IoAllocateMdl, IoFreeIrp, IoFreeMdl,
                          IoReuseIrp, IoSetCompletionRoutine, KeInitializeEvent, KernelMode, KeSetEvent,
                          KeWaitForSingleObject, MmBuildMdlForNonPagedPool, NT_SUCCESS, PoolObject,
                          PsCreateSystemThread, SynchronizationEvent, current_kernel, kroutine)
from stack.kernel.ex import ExAllocatePoolObject, ExFreePoolObject
from stack.kernel.pool import NonPagedPoolNx
from stack.wsk import (AF_INET6, IN6ADDR_ANY, IPPROTO_IPV6, IPPROTO_TCP, IPV6_V6ONLY, MAKE_WSK_VERSION,
                       NPI_WSK_INTERFACE_ID, SOCK_STREAM, SOCKADDR_IN6, WSK_BUF, WSK_CLIENT_DISPATCH,
                       WSK_CLIENT_LISTEN_DISPATCH, WSK_CLIENT_NPI, WSK_EVENT_ACCEPT, WSK_EVENT_CALLBACK_CONTROL,
                       WSK_EVENT_CALLBACK_CONTROL_SIZE, WSK_FLAG_LISTEN_SOCKET, WSK_INFINITE_WAIT,
                       WSK_PROVIDER_NPI, WSK_REGISTRATION, WSK_SET_STATIC_EVENT_CALLBACKS, WskCaptureProviderNPI,
                       WskDeregister, WskRegister, WskReleaseProviderNPI, WskSetOption)

MODULE = "echosrv"

# Software Tracing definitions (WPP_CONTROL_GUIDS)
ECHOSRV_CONTROL_GUID = "998bdf51-0349-4fbc-870c-d6130a955a5f"
TRCERROR = "TRCERROR"  # 0x1
TRCINFO = "TRCINFO"  # 0x2

# Pool tags used for memory allocations ('sksw' etc. in C: they read backwards in memory)
WSKSAMPLE_SOCKET_POOL_TAG = "wsks"
WSKSAMPLE_BUFFER_POOL_TAG = "wskb"
WSKSAMPLE_GENERIC_POOL_TAG = "wskx"

# Default length for data buffers used in send and receive operations
WSKSAMPLE_DATA_BUFFER_LENGTH = 2048

# Maximum number of operations that can be outstanding on a socket at any time
WSKSAMPLE_OP_COUNT = 2

OpHandler = Callable[["WSKSAMPLE_SOCKET_OP_CONTEXT"], Any]


class WSKSAMPLE_WORK_QUEUE:
    """A work queue processed by a dedicated worker thread: in C the global
    `WskSampleWorkQueue` {SLIST_HEADER Head 0x0; KEVENT Event 0x10; BOOLEAN Stop 0x28;
    PETHREAD Thread 0x30} (sizeof 0x40: SLIST_HEADER is 16-aligned), so its Event is at
    echosrv!WskSampleWorkQueue+0x10."""

    EVENT_OFFSET = 0x10

    def __init__(self) -> None:
        self.Head: list[WSKSAMPLE_SOCKET_OP_CONTEXT] = []  # SLIST: pushed at the end, flushed whole
        self.Event = KEVENT()
        self.Stop = False
        self.Thread: Any = None


class WSKSAMPLE_SOCKET_OP_CONTEXT:
    """The context for one WSK socket operation (embedded in the socket context).

    sizeof on x64: SLIST_ENTRY QueueEntry 0x0 (16 bytes, 16-aligned), OpHandler 0x10,
    SocketContext 0x18, Irp 0x20, DataBuffer 0x28, DataMdl 0x30, BufferLength 0x38,
    DataLength 0x40; padded to the SLIST_ENTRY's alignment: 0x50."""

    SIZE = 0x50

    def __init__(self, socket_context: "WSKSAMPLE_SOCKET_CONTEXT", index: int) -> None:
        self.address = 0  # set once the socket context has its pool address
        self.index = index
        self.OpHandler: OpHandler | None = None
        self.SocketContext = socket_context
        self.Irp: Any = None
        self.DataBuffer = 0
        self.DataMdl: Any = None
        self.BufferLength = 0
        self.DataLength = 0


class WSKSAMPLE_SOCKET_CONTEXT(PoolObject):
    """The context for one WSK socket, with its operation contexts embedded: Socket 0x0,
    WorkQueue 0x8, Closing/Disconnecting/StopListening 0x10, OpContext[2] 0x20 (aligned
    for their SLIST_ENTRY): 0xC0."""

    POOL_SIZE = 0x20 + WSKSAMPLE_OP_COUNT * WSKSAMPLE_SOCKET_OP_CONTEXT.SIZE

    def __init__(self) -> None:
        self.Socket: Any = None
        self.WorkQueue: WSKSAMPLE_WORK_QUEUE | None = None
        self.Closing = False
        self.Disconnecting = False
        self.StopListening = False
        self.OpContext = [WSKSAMPLE_SOCKET_OP_CONTEXT(self, i) for i in range(WSKSAMPLE_OP_COUNT)]


class EchosrvGlobals:
    """The C file's globals, for one loaded instance."""

    def __init__(self) -> None:
        self.WskSampleRegistration = WSK_REGISTRATION()
        self.WskSampleListeningSocketContext: WSKSAMPLE_SOCKET_CONTEXT | None = None
        self.WskSampleWorkQueue = WSKSAMPLE_WORK_QUEUE()
        self.WskSampleCtlGuid = WPP_DEFINE_CONTROL_GUID("WskSampleCtlGuid", ECHOSRV_CONTROL_GUID,
                                                        [TRCERROR, TRCINFO])


def _g() -> EchosrvGlobals:
    drv = current_kernel().drivers.get(MODULE)
    if drv is None or "globals" not in drv.extension:
        raise RuntimeError("echosrv is not loaded on this host")
    return drv.extension["globals"]


def Trace(flag: str, fmt: str, *args: Any) -> None:
    """DoTraceMessage against this instance's WskSampleCtlGuid."""
    DoTraceMessage(_g().WskSampleCtlGuid, flag, fmt, *args)


# Client-level callback table
WskSampleClientDispatch = WSK_CLIENT_DISPATCH(MAKE_WSK_VERSION(1, 0), 0, None,
                                              symbol="echosrv!WskSampleClientDispatch")

# IPv6 wildcard address and port number 40007 to listen on (C: 0x479c, network order)
IPv6ListeningAddress = SOCKADDR_IN6(AF_INET6, 40007, 0, IN6ADDR_ANY, 0)


# --- driver entry and unload ----------------------------------------------------------------------

@kroutine(MODULE)
def DriverEntry(DriverObject: Any, RegistryPath: str) -> int:
    g = EchosrvGlobals()
    DriverObject.extension["globals"] = g

    # Allocate a socket context that will be used for queueing an operation
    # to setup a listening socket that will accept incoming connections
    g.WskSampleListeningSocketContext = WskSampleAllocateSocketContext(g.WskSampleWorkQueue, 0)
    if g.WskSampleListeningSocketContext is None:
        return STATUS_INSUFFICIENT_RESOURCES

    # Register with WSK.
    wskClientNpi = WSK_CLIENT_NPI(None, WskSampleClientDispatch)
    status = WskRegister(wskClientNpi, g.WskSampleRegistration)
    if not NT_SUCCESS(status):
        WskSampleFreeSocketContext(g.WskSampleListeningSocketContext)
        return status

    # Initialize and start the global work queue
    status = WskSampleStartWorkQueue(g.WskSampleWorkQueue)
    if not NT_SUCCESS(status):
        WskDeregister(g.WskSampleRegistration)
        WskSampleFreeSocketContext(g.WskSampleListeningSocketContext)
        return status

    # Enqueue the first operation to setup the listening socket
    WskSampleEnqueueOp(g.WskSampleListeningSocketContext.OpContext[0], WskSampleOpStartListen)

    # Everything has been initiated successfully. Now we can enable the unload routine.
    DriverObject.driver_unload = WskSampleUnload

    # Initialize software tracing (last, as in the sample: the traces above are lost)
    WPP_INIT_TRACING(g.WskSampleCtlGuid, DriverObject, RegistryPath)
    Trace(TRCINFO, "LOADED")
    return STATUS_SUCCESS


@kroutine(MODULE)
def WskSampleUnload(DriverObject: Any) -> Generator[Any, Any, None]:
    g = _g()
    Trace(TRCINFO, "UNLOAD START")

    # Stop listening: closes the listening socket.  Accepted connections stay open
    # until their peers disconnect, and WskDeregister waits for them.
    WskSampleEnqueueOp(g.WskSampleListeningSocketContext.OpContext[1], WskSampleOpStopListen)

    # Deregister with WSK: returns once every captured NPI is released and every socket closed.
    yield from WskDeregister(g.WskSampleRegistration)

    # No socket is left, so no operation can be queued any more: stop the worker.
    yield from WskSampleStopWorkQueue(g.WskSampleWorkQueue)

    Trace(TRCINFO, "UNLOAD END")
    WPP_CLEANUP(g.WskSampleCtlGuid, DriverObject)


# --- the work queue ---------------------------------------------------------------------------------

@kroutine(MODULE)
def WskSampleStartWorkQueue(WorkQueue: WSKSAMPLE_WORK_QUEUE) -> int:
    WorkQueue.Head = []  # InitializeSListHead
    KeInitializeEvent(WorkQueue.Event, SynchronizationEvent, False)
    k = current_kernel()
    WorkQueue.Event.place(k, k.image_global(MODULE, "WskSampleWorkQueue", 0x40) + WorkQueue.EVENT_OFFSET)
    WorkQueue.Stop = False
    # PsCreateSystemThread + ObReferenceObjectByHandle + ZwClose: the thread object itself.
    WorkQueue.Thread = PsCreateSystemThread(WskSampleWorkerThread, WorkQueue, name="echosrv worker")
    if WorkQueue.Thread is None:  # PsCreateSystemThread's status
        return STATUS_INSUFFICIENT_RESOURCES
    return STATUS_SUCCESS


@kroutine(MODULE)
def WskSampleStopWorkQueue(WorkQueue: WSKSAMPLE_WORK_QUEUE) -> Generator[Any, Any, None]:
    WorkQueue.Stop = True
    KeSetEvent(WorkQueue.Event, 0, False)
    yield KeWaitForSingleObject(WorkQueue.Thread, Executive, KernelMode, False, None)
    WorkQueue.Thread = None  # ObDereferenceObject
    WorkQueue.Event.unplace()  # the image (and its globals) goes away with the driver


@kroutine(MODULE)
def WskSampleAllocateSocketContext(WorkQueue: WSKSAMPLE_WORK_QUEUE,
                                   BufferLength: int) -> WSKSAMPLE_SOCKET_CONTEXT | None:
    socketContext = ExAllocatePoolObject(NonPagedPoolNx, WSKSAMPLE_SOCKET_CONTEXT, WSKSAMPLE_SOCKET_POOL_TAG)
    if socketContext is not None:
        socketContext.WorkQueue = WorkQueue
        for i in range(WSKSAMPLE_OP_COUNT):
            op = socketContext.OpContext[i]
            op.address = socketContext.address + 0x20 + i * WSKSAMPLE_SOCKET_OP_CONTEXT.SIZE
            op.Irp = IoAllocateIrp(1, False)
            if op.Irp is None:
                break
            if BufferLength > 0:
                op.DataBuffer = ExAllocatePoolZero(NonPagedPoolNx, BufferLength, WSKSAMPLE_BUFFER_POOL_TAG)
                if not op.DataBuffer:
                    break
                op.DataMdl = IoAllocateMdl(op.DataBuffer, BufferLength, False, False, None)
                if op.DataMdl is None:
                    break
                MmBuildMdlForNonPagedPool(op.DataMdl)
                op.BufferLength = BufferLength
        else:
            Trace(TRCINFO, "AllocateSocketContext: %p", socketContext)
            return socketContext

    Trace(TRCERROR, "AllocateSocketContext: FAIL")
    if socketContext is not None:
        WskSampleFreeSocketContext(socketContext)
    return None


@kroutine(MODULE)
def WskSampleFreeSocketContext(SocketContext: WSKSAMPLE_SOCKET_CONTEXT) -> None:
    # Freed only after every WSK call on the socket completed and every queued operation ran.
    for i in range(WSKSAMPLE_OP_COUNT):
        op = SocketContext.OpContext[i]
        if op.Irp is not None:
            IoFreeIrp(op.Irp)
            op.Irp = None
        if op.DataMdl is not None:
            IoFreeMdl(op.DataMdl)
            op.DataMdl = None
        if op.DataBuffer:
            ExFreePool(op.DataBuffer)
            op.DataBuffer = 0
    Trace(TRCINFO, "FreeSocketContext: %p", SocketContext)
    ExFreePoolObject(SocketContext, WSKSAMPLE_SOCKET_POOL_TAG)  # ExFreePool(SocketContext)


@kroutine(MODULE)
def WskSampleEnqueueOp(SocketOpContext: WSKSAMPLE_SOCKET_OP_CONTEXT, OpHandler: OpHandler) -> None:
    workQueue = SocketOpContext.SocketContext.WorkQueue
    SocketOpContext.OpHandler = OpHandler
    was_empty = not workQueue.Head
    workQueue.Head.append(SocketOpContext)  # InterlockedPushEntrySList
    handler = current_kernel().symbol_address(getattr(OpHandler, "symbol", ""))
    if was_empty:
        Trace(TRCINFO, "EnqueueOp: %p %p (%p) SetEvent", SocketOpContext.SocketContext, SocketOpContext, handler)
        # The queue was empty: the worker may be waiting for more operations.
        KeSetEvent(workQueue.Event, 0, False)
    else:
        Trace(TRCINFO, "EnqueueOp: %p %p (%p)", SocketOpContext.SocketContext, SocketOpContext, handler)


@kroutine(MODULE)
def WskSampleWorkerThread(Context: WSKSAMPLE_WORK_QUEUE) -> Generator[Any, Any, int]:
    workQueue = Context
    while True:
        # Flush all the queued operations into a local list (already in FIFO order here,
        # where the C code reverses the flushed SLIST)
        listEntry, workQueue.Head = workQueue.Head, []
        if not listEntry:
            # There's no work to do. If we are allowed to stop, then stop.
            if workQueue.Stop:
                Trace(TRCINFO, "WorkerThread: WQ %p exit", _queue_address(workQueue))
                break
            Trace(TRCINFO, "WorkerThread: WQ %p wait", _queue_address(workQueue))
            yield KeWaitForSingleObject(workQueue.Event, Executive, KernelMode, False, None)
            continue
        Trace(TRCINFO, "WorkerThread: WQ %p process", _queue_address(workQueue))
        # Process the operations one by one
        for socketOpContext in listEntry:
            result = socketOpContext.OpHandler(socketOpContext)
            if inspect.isgenerator(result):  # a compound operation that waits (OpStartListen)
                yield from result
    return STATUS_SUCCESS  # PsTerminateSystemThread(STATUS_SUCCESS)


def _queue_address(workQueue: WSKSAMPLE_WORK_QUEUE) -> int:
    """&WskSampleWorkQueue: a global in the echosrv image."""
    return current_kernel().symbol_address(f"{MODULE}!WskSampleWorkQueue")


# --- listening ---------------------------------------------------------------------------------------

@kroutine(MODULE)
def WskSampleOpStartListen(SocketOpContext: WSKSAMPLE_SOCKET_OP_CONTEXT) -> Generator[Any, Any, None]:
    g = _g()
    wskProviderNpi = WSK_PROVIDER_NPI()
    # Capture the WSK Provider NPI
    status = yield from WskCaptureProviderNPI(g.WskSampleRegistration, WSK_INFINITE_WAIT, wskProviderNpi)
    if NT_SUCCESS(status):
        # Create a listening socket
        yield from WskSampleSetupListeningSocket(wskProviderNpi, SocketOpContext)
        # Release the WSK provider NPI since we won't use it anymore
        WskReleaseProviderNPI(g.WskSampleRegistration)
    else:
        # Fails if WskDeregister ran (driver unload) before the WSK subsystem became ready.
        Trace(TRCINFO, "OpStartListen: WskCaptureProviderNPI failed 0x%lx", status)


@kroutine(MODULE)
def WskSampleSetupListeningSocket(WskProviderNpi: WSK_PROVIDER_NPI,
                                  SocketOpContext: WSKSAMPLE_SOCKET_OP_CONTEXT) -> Generator[Any, Any, None]:
    socketContext = SocketOpContext.SocketContext
    irp = SocketOpContext.Irp
    listeningSocket = None
    dispatch = None
    compEvent = KEVENT()
    KeInitializeEvent(compEvent, SynchronizationEvent, False)

    if socketContext.Socket is not None:
        # The accept event reported a NULL AcceptSocket: the listening socket died.
        # Close it and create a new one (unless the driver is unloading).
        if socketContext.StopListening:
            return
        IoReuseIrp(irp, STATUS_UNSUCCESSFUL)
        IoSetCompletionRoutine(irp, WskSampleSyncIrpCompletionRoutine, compEvent, True, True, True)
        socketContext.Socket.Dispatch.WskCloseSocket(socketContext.Socket, irp)
        yield KeWaitForSingleObject(compEvent, Executive, KernelMode, False, None)
        socketContext.Socket = None
        IoReuseIrp(irp, STATUS_UNSUCCESSFUL)
    else:
        # First, have WskAcceptEvent enabled automatically on the listening socket.
        callbackControl = WSK_EVENT_CALLBACK_CONTROL(NPI_WSK_INTERFACE_ID, WSK_EVENT_ACCEPT)
        status = WskProviderNpi.Dispatch.WskControlClient(
            WskProviderNpi.Client, WSK_SET_STATIC_EVENT_CALLBACKS, WSK_EVENT_CALLBACK_CONTROL_SIZE,
            callbackControl, 0, None, None, None)
        if not NT_SUCCESS(status):
            Trace(TRCERROR, "SetupListeningSocket: WSK_SET_STATIC_EVENT_CALLBACKS FAIL 0x%lx", status)
            return

    # A listening socket over AF_INET6, put into dual-family mode (IPV6_V6ONLY FALSE)
    # so AF_INET traffic is handled over the same socket.
    IoSetCompletionRoutine(irp, WskSampleSyncIrpCompletionRoutine, compEvent, True, True, True)
    WskProviderNpi.Dispatch.WskSocket(WskProviderNpi.Client, AF_INET6, SOCK_STREAM, IPPROTO_TCP,
                                      WSK_FLAG_LISTEN_SOCKET, socketContext, WskSampleClientListenDispatch,
                                      None, None, None, irp)
    yield KeWaitForSingleObject(compEvent, Executive, KernelMode, False, None)
    if not NT_SUCCESS(irp.IoStatus.Status):
        Trace(TRCERROR, "SetupListeningSocket: WskSocket FAIL 0x%lx", irp.IoStatus.Status)
        return

    listeningSocket = irp.IoStatus.Information
    dispatch = listeningSocket.Dispatch

    # Set IPV6_V6ONLY to FALSE before the bind operation
    optionValue = 0
    IoReuseIrp(irp, STATUS_UNSUCCESSFUL)
    IoSetCompletionRoutine(irp, WskSampleSyncIrpCompletionRoutine, compEvent, True, True, True)
    dispatch.WskControlSocket(listeningSocket, WskSetOption, IPV6_V6ONLY, IPPROTO_IPV6, 4, optionValue, 0, None,
                              None, irp)
    yield KeWaitForSingleObject(compEvent, Executive, KernelMode, False, None)
    if not NT_SUCCESS(irp.IoStatus.Status):
        Trace(TRCERROR, "SetupListeningSocket: IPV6_V6ONLY FAIL 0x%lx", irp.IoStatus.Status)
        yield from _close_failed_listener(irp, compEvent, dispatch, listeningSocket)
        return

    # Bind to the wildcard address: from then on WskAcceptEvent reports connections.
    IoReuseIrp(irp, STATUS_UNSUCCESSFUL)
    IoSetCompletionRoutine(irp, WskSampleSyncIrpCompletionRoutine, compEvent, True, True, True)
    dispatch.WskBind(listeningSocket, IPv6ListeningAddress, 0, irp)
    yield KeWaitForSingleObject(compEvent, Executive, KernelMode, False, None)
    if not NT_SUCCESS(irp.IoStatus.Status):
        Trace(TRCERROR, "SetupListeningSocket: WskBind FAIL 0x%lx", irp.IoStatus.Status)
        yield from _close_failed_listener(irp, compEvent, dispatch, listeningSocket)
        return

    # Keep the socket only once everything succeeded.
    socketContext.Socket = listeningSocket
    Trace(TRCINFO, "SetupListeningSocket: %p %p", socketContext, SocketOpContext)


def _close_failed_listener(irp: Any, compEvent: KEVENT, dispatch: Any, listeningSocket: Any) -> Generator:
    """The sample's `failexit:` label."""
    IoReuseIrp(irp, STATUS_UNSUCCESSFUL)
    IoSetCompletionRoutine(irp, WskSampleSyncIrpCompletionRoutine, compEvent, True, True, True)
    dispatch.WskCloseSocket(listeningSocket, irp)
    yield KeWaitForSingleObject(compEvent, Executive, KernelMode, False, None)


@kroutine(MODULE)
def WskSampleSyncIrpCompletionRoutine(Reserved: Any, Irp: Any, Context: KEVENT) -> int:
    """IRP completion routine used for synchronously waiting for completion."""
    KeSetEvent(Context, 2, False)
    return STATUS_MORE_PROCESSING_REQUIRED


@kroutine(MODULE)
def WskSampleOpStopListen(SocketOpContext: WSKSAMPLE_SOCKET_OP_CONTEXT) -> None:
    socketContext = SocketOpContext.SocketContext
    Trace(TRCINFO, "OpStopListen: %p %p", socketContext, SocketOpContext)
    socketContext.StopListening = True
    if socketContext.Socket is None:
        # The listening socket was never created: only the context needs freeing.
        WskSampleEnqueueOp(SocketOpContext, WskSampleOpFree)
    else:
        WskSampleEnqueueOp(SocketOpContext, WskSampleOpClose)


@kroutine(MODULE)
def WskSampleAcceptEvent(SocketContext: WSKSAMPLE_SOCKET_CONTEXT, Flags: int, LocalAddress: Any,
                         RemoteAddress: Any, AcceptSocket: Any, AcceptSocketContext: Any,
                         AcceptSocketDispatch: Any) -> int:
    listeningSocketContext = SocketContext
    if AcceptSocket is None:
        # The listening socket no longer works (reported at most once): rebuild it
        # with the operation context that started it.
        WskSampleEnqueueOp(listeningSocketContext.OpContext[0], WskSampleOpStartListen)
        return STATUS_REQUEST_NOT_ACCEPTED

    # Allocate socket context for the newly accepted socket.
    socketContext = WskSampleAllocateSocketContext(_g().WskSampleWorkQueue, WSKSAMPLE_DATA_BUFFER_LENGTH)
    if socketContext is None:
        return STATUS_REQUEST_NOT_ACCEPTED
    socketContext.Socket = AcceptSocket
    Trace(TRCINFO, "AcceptEvent: %p", socketContext)

    # Two receives per connection: each completed receive is echoed back with a send,
    # and each completed send issues a new receive, until the peer disconnects.
    for i in range(WSKSAMPLE_OP_COUNT):
        WskSampleEnqueueOp(socketContext.OpContext[i], WskSampleOpReceive)

    # No callbacks on the accepted socket: no context, no dispatch table.
    AcceptSocketContext.value = None
    AcceptSocketDispatch.value = None
    return STATUS_SUCCESS


# Socket-level callback table for listening sockets (no conditional accept)
WskSampleClientListenDispatch = WSK_CLIENT_LISTEN_DISPATCH(WskSampleAcceptEvent, None, None)


# --- receive, send, disconnect, close, free -----------------------------------------------------------

@kroutine(MODULE)
def WskSampleOpReceive(SocketOpContext: WSKSAMPLE_SOCKET_OP_CONTEXT) -> None:
    socketContext = SocketOpContext.SocketContext
    if socketContext.Closing or socketContext.Disconnecting:
        # No WskReceive on a socket being disconnected or closed.
        Trace(TRCINFO, "OpReceive: %p %p SKIP", socketContext, SocketOpContext)
        return
    dispatch = socketContext.Socket.Dispatch
    wskbuf = WSK_BUF(SocketOpContext.DataMdl, 0, SocketOpContext.BufferLength)
    IoReuseIrp(SocketOpContext.Irp, STATUS_UNSUCCESSFUL)
    IoSetCompletionRoutine(SocketOpContext.Irp, WskSampleReceiveIrpCompletionRoutine, SocketOpContext,
                           True, True, True)
    Trace(TRCINFO, "OpReceive: %p %p %Iu", socketContext, SocketOpContext, wskbuf.Length)
    # The completion routine acts on the final status.
    dispatch.WskReceive(socketContext.Socket, wskbuf, 0, SocketOpContext.Irp)


@kroutine(MODULE)
def WskSampleReceiveIrpCompletionRoutine(Reserved: Any, Irp: Any, Context: WSKSAMPLE_SOCKET_OP_CONTEXT) -> int:
    socketOpContext = Context
    socketContext = socketOpContext.SocketContext
    Trace(TRCINFO, "ReceiveIrpCompletionRoutine: %p %p 0x%lx %Iu", socketContext, socketOpContext,
          Irp.IoStatus.Status, Irp.IoStatus.Information)
    if not NT_SUCCESS(Irp.IoStatus.Status):
        # Receive failed: close the socket.
        WskSampleEnqueueOp(socketOpContext, WskSampleOpClose)
    elif Irp.IoStatus.Information == 0:
        # Success with 0 bytes: the peer disconnected gracefully; disconnect our half.
        WskSampleEnqueueOp(socketOpContext, WskSampleOpDisconnect)
    else:
        # Echo the received bytes back from the same buffer.
        socketOpContext.DataLength = Irp.IoStatus.Information
        WskSampleEnqueueOp(socketOpContext, WskSampleOpSend)
    return STATUS_MORE_PROCESSING_REQUIRED


@kroutine(MODULE)
def WskSampleOpSend(SocketOpContext: WSKSAMPLE_SOCKET_OP_CONTEXT) -> None:
    socketContext = SocketOpContext.SocketContext
    if socketContext.Closing or socketContext.Disconnecting:
        Trace(TRCINFO, "OpSend: %p %p SKIP", socketContext, SocketOpContext)
        return
    dispatch = socketContext.Socket.Dispatch
    wskbuf = WSK_BUF(SocketOpContext.DataMdl, 0, SocketOpContext.DataLength)
    IoReuseIrp(SocketOpContext.Irp, STATUS_UNSUCCESSFUL)
    IoSetCompletionRoutine(SocketOpContext.Irp, WskSampleSendIrpCompletionRoutine, SocketOpContext,
                           True, True, True)
    Trace(TRCINFO, "OpSend: %p %p %Iu", socketContext, SocketOpContext, wskbuf.Length)
    dispatch.WskSend(socketContext.Socket, wskbuf, 0, SocketOpContext.Irp)


@kroutine(MODULE)
def WskSampleSendIrpCompletionRoutine(Reserved: Any, Irp: Any, Context: WSKSAMPLE_SOCKET_OP_CONTEXT) -> int:
    socketOpContext = Context
    socketContext = socketOpContext.SocketContext
    Trace(TRCINFO, "SendIrpCompletionRoutine: %p %p 0x%lx %Iu", socketContext, socketOpContext,
          Irp.IoStatus.Status, Irp.IoStatus.Information)
    if not NT_SUCCESS(Irp.IoStatus.Status):
        WskSampleEnqueueOp(socketOpContext, WskSampleOpClose)
    else:
        WskSampleEnqueueOp(socketOpContext, WskSampleOpReceive)
    return STATUS_MORE_PROCESSING_REQUIRED


@kroutine(MODULE)
def WskSampleOpDisconnect(SocketOpContext: WSKSAMPLE_SOCKET_OP_CONTEXT) -> None:
    socketContext = SocketOpContext.SocketContext
    if socketContext.Closing or socketContext.Disconnecting:
        # Both receives may complete with 0 bytes: disconnect only once.
        Trace(TRCINFO, "OpDisconnect: %p %p SKIP", socketContext, SocketOpContext)
        return
    dispatch = socketContext.Socket.Dispatch
    socketContext.Disconnecting = True
    IoReuseIrp(SocketOpContext.Irp, STATUS_UNSUCCESSFUL)
    IoSetCompletionRoutine(SocketOpContext.Irp, WskSampleDisconnectIrpCompletionRoutine, SocketOpContext,
                           True, True, True)
    Trace(TRCINFO, "OpDisconnect: %p %p", socketContext, SocketOpContext)
    dispatch.WskDisconnect(socketContext.Socket, None, 0, SocketOpContext.Irp)


@kroutine(MODULE)
def WskSampleDisconnectIrpCompletionRoutine(Reserved: Any, Irp: Any,
                                            Context: WSKSAMPLE_SOCKET_OP_CONTEXT) -> int:
    socketOpContext = Context
    socketContext = socketOpContext.SocketContext
    Trace(TRCINFO, "DisconnectIrpCompletionRoutine: %p %p 0x%lx", socketContext, socketOpContext,
          Irp.IoStatus.Status)
    # Disconnect completed: close the socket.
    WskSampleEnqueueOp(socketOpContext, WskSampleOpClose)
    return STATUS_MORE_PROCESSING_REQUIRED


@kroutine(MODULE)
def WskSampleOpClose(SocketOpContext: WSKSAMPLE_SOCKET_OP_CONTEXT) -> None:
    socketContext = SocketOpContext.SocketContext
    if socketContext.Closing:
        # Several failed operations may each queue a close.
        Trace(TRCINFO, "OpClose: %p %p SKIP", socketContext, SocketOpContext)
        return
    socketContext.Closing = True
    dispatch = socketContext.Socket.Dispatch  # the basic dispatch entries of any table
    IoReuseIrp(SocketOpContext.Irp, STATUS_UNSUCCESSFUL)
    IoSetCompletionRoutine(SocketOpContext.Irp, WskSampleCloseIrpCompletionRoutine, SocketOpContext,
                           True, True, True)
    Trace(TRCINFO, "OpClose: %p %p", socketContext, SocketOpContext)
    dispatch.WskCloseSocket(socketContext.Socket, SocketOpContext.Irp)


@kroutine(MODULE)
def WskSampleCloseIrpCompletionRoutine(Reserved: Any, Irp: Any, Context: WSKSAMPLE_SOCKET_OP_CONTEXT) -> int:
    socketOpContext = Context
    socketContext = socketOpContext.SocketContext
    # WskCloseSocket can never fail.
    assert NT_SUCCESS(Irp.IoStatus.Status)
    Trace(TRCINFO, "CloseIrpCompletionRoutine: %p %p 0x%lx", socketContext, socketOpContext, Irp.IoStatus.Status)
    # Free the context behind any operations still queued for this socket (they will skip).
    WskSampleEnqueueOp(socketOpContext, WskSampleOpFree)
    return STATUS_MORE_PROCESSING_REQUIRED


@kroutine(MODULE)
def WskSampleOpFree(SocketOpContext: WSKSAMPLE_SOCKET_OP_CONTEXT) -> None:
    socketContext = SocketOpContext.SocketContext
    Trace(TRCINFO, "OpFree: %p %p", socketContext, SocketOpContext)
    assert socketContext.Closing or socketContext.StopListening
    WskSampleFreeSocketContext(socketContext)


DRIVER_IMAGE = DriverImage("echosrv", MODULE, DriverEntry, image="echosrv.sys",
                           pool_tags=(WSKSAMPLE_SOCKET_POOL_TAG, WSKSAMPLE_BUFFER_POOL_TAG,
                                      WSKSAMPLE_GENERIC_POOL_TAG),
                           description="WSK Sample TCP Echo Server")
