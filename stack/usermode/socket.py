"""A small Berkeley-style socket API for user-mode programs on an emulated host.

A program is a generator function run as a thread of the host (`run_program`);
each socket call is a generator that enters the kernel as Winsock does on Windows
(NtCreateFile, NtDeviceIoControlFile with an IOCTL_AFD_* code, NtClose): an IRP for
\\Device\\Afd (afd.sys, stack.afd), waiting on the IRP's event when it pends:

    def client(ctx):
        sock = yield from Socket.create(AF_INET, SOCK_STREAM)
        yield from sock.connect(SockAddr.parse("10.0.0.1:7"))
        yield from sock.send(b"hello")
        data = yield from sock.recv(100)
        yield from sock.close()

Data lives in `UserBuffer`s (emulated pages the program owns); `send(bytes)`
writes the bytes into a scratch buffer first (the program preparing its data,
not a stack copy), `send(UserBuffer)` sends the buffer's pages as they are.
Errors raise `SocketError(status)`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

from stack.kernel import (IRP_MJ_CLEANUP, IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL, KEVENT, STATUS_INSUFFICIENT_RESOURCES, STATUS_PENDING,
                          STATUS_SUCCESS, IoBuildDeviceIoControlRequest, IoCallDriver, IoGetDeviceObjectPointer,
                          IoGetNextIrpStackLocation, KeDelayExecutionThread, KeWaitForSingleObject,
                          NotificationEvent, PsCreateSystemThread, current_kernel, kroutine)
from stack.kernel.ex import ExAllocatePoolWithTag, ExFreePoolWithTag
from stack.kernel.irp import IoStatusBlock
from stack.kernel.ke import KThread
from stack.kernel.kernel import Kernel
from stack.kernel.ntstatus import NT_SUCCESS, STATUS_BUFFER_OVERFLOW, status_name
from stack.kernel.pool import PagedPool
from stack.kernel.symbols import pop_kernel, push_kernel
from stack.afd.device import (IOCTL_AFD_ACCEPT, IOCTL_AFD_BIND, IOCTL_AFD_CONNECT, IOCTL_AFD_DISCONNECT,
                              IOCTL_AFD_GET_INFO, IOCTL_AFD_RECV, IOCTL_AFD_RECV_DATAGRAM, IOCTL_AFD_SEND,
                              IOCTL_AFD_SEND_DATAGRAM, IOCTL_AFD_SET_OPTION, IOCTL_AFD_START_LISTEN, SOCK_DGRAM,
                              SOCK_STREAM, AfdRequest, FileObject)
from stack.tcpip.addr import AF_INET, AF_INET6, SockAddr

USER_TAG = "UsrB"
MSG_WAITALL = 0x8

__all__ = ["AF_INET", "AF_INET6", "SOCK_STREAM", "SOCK_DGRAM", "MSG_WAITALL", "SockAddr", "Socket", "SocketError",
           "Overlapped",
           "UserBuffer", "Program", "run_program", "spawn", "join", "accept_retrying"]


class SocketError(OSError):
    """A socket call failed with an NTSTATUS."""

    def __init__(self, status: int, call: str) -> None:
        self.status = status
        self.call = call
        super().__init__(f"{call} failed: {status_name(status)}")


def program_closing() -> bool:
    """True while a program's generator is being closed rather than run: Python threw
    GeneratorExit into it (it was garbage-collected, or closed, while blocked in a call).

    Its `finally:` clauses then run outside any machine - with no kernel current, or some
    other world's - and could not wait for an IRP anyway.  So then a socket call (close
    included) raises GeneratorExit again at once, which ends the rest of that cleanup, and
    UserBuffer.free forgets its pages: the handles and buffers go with the discarded machine."""
    return sys.exc_info()[0] is GeneratorExit


class UserBuffer:
    """Memory a program owns: `size` bytes of pageable pool (locked by AFD when used)."""

    def __init__(self, size: int, kernel: Kernel | None = None) -> None:
        if size <= 0:
            raise ValueError("buffer size must be positive")
        self.kernel = kernel or current_kernel()
        self.size = size
        self.va = ExAllocatePoolWithTag(PagedPool, size, USER_TAG)
        if not self.va:  # malloc's NULL, as the program sees it: an error it can catch
            raise SocketError(STATUS_INSUFFICIENT_RESOURCES, "allocate buffer")
        self.owner: Program | None = None
        _opened(self)

    def views(self, offset: int = 0, length: int | None = None) -> list[memoryview]:
        """Zero-copy views of the buffer's bytes."""
        if length is None:
            length = self.size - offset
        return self.kernel.mem.views(self.va + offset, length)

    def write(self, data: bytes | bytearray | memoryview, offset: int = 0) -> None:
        # As a memoryview, so the write cuts it page by page without copying each piece first.
        self.kernel.mem.write(self.va + offset, data if isinstance(data, memoryview) else memoryview(data))

    def read(self, length: int | None = None, offset: int = 0) -> bytes:
        if length is None:
            length = self.size - offset
        return b"".join(self.views(offset, length))

    def free(self) -> None:
        if self.va and not program_closing():
            ExFreePoolWithTag(self.va, USER_TAG)
            _released(self)
        self.va = 0


@kroutine("nt")
def NtCreateFile(DeviceObject: Any, Irp: Any) -> int:
    return IoCallDriver(DeviceObject, Irp)


@kroutine("nt")
def NtDeviceIoControlFile(DeviceObject: Any, Irp: Any) -> int:
    return IoCallDriver(DeviceObject, Irp)


@kroutine("nt")
def NtClose(DeviceObject: Any, Irp: Any) -> int:
    return IoCallDriver(DeviceObject, Irp)


# The system service each kind of socket call enters the kernel through (the arguments are
# the emulator's: the device and the IRP the I/O manager builds from the handle and buffers).
_SYSTEM_SERVICE = {IRP_MJ_CREATE: NtCreateFile, IRP_MJ_DEVICE_CONTROL: NtDeviceIoControlFile, IRP_MJ_CLEANUP: NtClose}

_CALL_NAMES = {IRP_MJ_CREATE: "socket", IRP_MJ_CLEANUP: "closesocket"}


def _afd_call(major: int, ioctl: int, file_object: FileObject, request: AfdRequest) -> Generator[Any, Any, tuple[int, int]]:
    """Enter the kernel with an IRP for \\Device\\Afd, wait if it pends.  Returns (status, information)."""
    if program_closing():
        raise GeneratorExit  # keep closing: skip the rest of the cleanup, touch no kernel
    status, event, iosb = _afd_issue(major, ioctl, file_object, request)
    if status == STATUS_PENDING:
        yield KeWaitForSingleObject(event)
    return iosb.Status, iosb.Information


def _afd_issue(major: int, ioctl: int, file_object: FileObject,
               request: AfdRequest) -> tuple[int, KEVENT, IoStatusBlock]:
    """Enter the kernel with an IRP for \\Device\\Afd and return at once: (what the system service
    returned, the event the I/O manager sets on completion, the IO_STATUS_BLOCK it fills)."""
    k = current_kernel()
    if k.cpu_model is not None:  # (no call to charge when no processor spends time)
        k.charge("syscall")  # NtDeviceIoControlFile: user -> kernel and back
    device = IoGetDeviceObjectPointer("\\Device\\Afd")
    if device is None:
        raise SocketError(0xC0000034, "open \\Device\\Afd")  # STATUS_OBJECT_NAME_NOT_FOUND
    event = KEVENT(NotificationEvent, False)
    iosb = IoStatusBlock()
    irp = IoBuildDeviceIoControlRequest(ioctl, device, request, 0, None, 0, False, event, iosb)
    if irp is None and major == IRP_MJ_CLEANUP:  # closing a handle must succeed: the reserve IRP
        with k.verifier.suspended():
            irp = IoBuildDeviceIoControlRequest(ioctl, device, request, 0, None, 0, False, event, iosb)
    if irp is None:
        raise SocketError(STATUS_INSUFFICIENT_RESOURCES, _CALL_NAMES.get(major, "DeviceIoControl"))
    loc = IoGetNextIrpStackLocation(irp)
    loc.major = major
    loc.file_object = file_object
    irp.original_file_object = file_object
    return _SYSTEM_SERVICE[major](device, irp), event, iosb


class Overlapped:
    """An overlapped WSASend in flight (WSAOVERLAPPED with an event): WSASend returned 0 when afd
    completed it at once, SOCKET_ERROR with WSA_IO_PENDING when it pended (`pending`)."""

    def __init__(self, status: int, event: KEVENT, iosb: IoStatusBlock, call: str) -> None:
        self.pending = status == STATUS_PENDING
        self.event = event
        self.iosb = iosb
        self.call = call

    def result(self) -> Generator[Any, Any, int]:
        """WSAGetOverlappedResult(fWait=TRUE): wait for the completion; the bytes sent, or SocketError."""
        if not self.event.signaled:
            yield KeWaitForSingleObject(self.event)
        if not NT_SUCCESS(self.iosb.Status):
            raise SocketError(self.iosb.Status, self.call)
        return self.iosb.Information


class Socket:
    """A socket handle: a FileObject on \\Device\\Afd."""

    def __init__(self, file_object: FileObject, family: int, sock_type: int) -> None:
        self.file_object = file_object
        self.family = family
        self.type = sock_type
        self.closed = False
        self._scratch: UserBuffer | None = None
        self.remote: SockAddr | None = None
        self.owner: Program | None = None
        _opened(self)

    @staticmethod
    def create(family: int = AF_INET, sock_type: int = SOCK_STREAM) -> Generator[Any, Any, "Socket"]:
        file_object = FileObject()
        status, _ = yield from _afd_call(IRP_MJ_CREATE, 0, file_object, AfdRequest(value=(family, sock_type)))
        if not NT_SUCCESS(status):
            raise SocketError(status, "socket")
        return Socket(file_object, family, sock_type)

    def _ioctl(self, code: int, request: AfdRequest, call: str) -> Generator[Any, Any, int]:
        if self.closed:
            raise SocketError(0xC0000008, call)  # STATUS_INVALID_HANDLE
        status, information = yield from _afd_call(IRP_MJ_DEVICE_CONTROL, code, self.file_object, request)
        if not NT_SUCCESS(status):
            raise SocketError(status, call)
        return information

    # -- setup ---------------------------------------------------------------------------------
    def bind(self, address: SockAddr) -> Generator[Any, Any, None]:
        yield from self._ioctl(IOCTL_AFD_BIND, AfdRequest(address=address), "bind")

    def listen(self, backlog: int = 16) -> Generator[Any, Any, None]:
        yield from self._ioctl(IOCTL_AFD_START_LISTEN, AfdRequest(backlog=backlog), "listen")

    def accept(self) -> Generator[Any, Any, "Socket"]:
        request = AfdRequest()
        yield from self._ioctl(IOCTL_AFD_ACCEPT, request, "accept")
        child = Socket(request.result, self.family, SOCK_STREAM)
        child.remote = request.address
        return child

    def accept_ex(self, buffer: UserBuffer, length: int | None = None) -> Generator[Any, Any, tuple["Socket", int]]:
        """AcceptEx with a receive buffer: (new socket, bytes of its first data already in `buffer`)."""
        request = AfdRequest(buffer_va=buffer.va, length=length or buffer.size)
        received = yield from self._ioctl(IOCTL_AFD_ACCEPT, request, "AcceptEx")
        child = Socket(request.result, self.family, SOCK_STREAM)
        child.remote = request.address
        return child, received

    def connect(self, address: SockAddr) -> Generator[Any, Any, None]:
        yield from self._ioctl(IOCTL_AFD_CONNECT, AfdRequest(address=address), "connect")
        self.remote = address

    def setsockopt(self, option: str, value: Any) -> Generator[Any, Any, None]:
        """"TCP_NODELAY", "IPV6_V6ONLY", "SO_REUSEADDR" or "SO_EXCLUSIVEADDRUSE" (before bind), or
        "SO_SNDBUF" (bytes afd buffers before a send's completion waits; 0: no buffering, a send
        completes when the peer has acknowledged it - see stack/afd/sendbuf.py)."""
        yield from self._ioctl(IOCTL_AFD_SET_OPTION, AfdRequest(option=option, value=value), "setsockopt")

    def getsockopt(self, option: str) -> Generator[Any, Any, Any]:
        """"SO_SNDBUF" (8192 unless set) or "TCP_NODELAY"."""
        request = AfdRequest(option=option)
        yield from self._ioctl(IOCTL_AFD_GET_INFO, request, "getsockopt")
        return request.result

    def ideal_send_backlog(self) -> Generator[Any, Any, int]:
        """WSAIoctl(SIO_IDEAL_SEND_BACKLOG_QUERY) (idealsendbacklogquery): the connection's ISB."""
        request = AfdRequest(option="SIO_IDEAL_SEND_BACKLOG_QUERY")
        yield from self._ioctl(IOCTL_AFD_GET_INFO, request, "WSAIoctl")
        return request.result

    def info(self) -> Generator[Any, Any, dict]:
        request = AfdRequest()
        yield from self._ioctl(IOCTL_AFD_GET_INFO, request, "getsockname")
        return request.result

    # -- data ------------------------------------------------------------------------------------
    def _buffer_for(self, data: bytes | bytearray | memoryview) -> UserBuffer:
        if self._scratch is None or self._scratch.size < len(data):
            if self._scratch is not None:
                self._scratch.free()
            self._scratch = UserBuffer(max(len(data), 4096))
        self._scratch.write(data)
        return self._scratch

    def send(self, data: "bytes | bytearray | memoryview | UserBuffer", length: int | None = None,
             offset: int = 0) -> Generator[Any, Any, int]:
        """Send everything (a blocking send).  Returns once afd has buffered the data (by default: at
        once, or when earlier buffered sends are acknowledged - KB 214397), or with SO_SNDBUF 0 when
        the peer has acknowledged it."""
        if isinstance(data, UserBuffer):
            buf = data
            n = data.size - offset if length is None else length
        else:
            n = len(data)
            if n == 0:
                return 0
            buf = self._buffer_for(data)
            offset = 0
        return (yield from self._ioctl(IOCTL_AFD_SEND, AfdRequest(buffer_va=buf.va + offset, length=n), "send"))

    def send_overlapped(self, buffer: UserBuffer, length: int | None = None,
                        offset: int = 0) -> Generator[Any, Any, Overlapped]:
        """WSASend with a WSAOVERLAPPED: issue the send and return without waiting.  The buffer must
        stay untouched until the send completes (afd copies it unless SO_SNDBUF is 0)."""
        if self.closed:
            raise SocketError(0xC0000008, "WSASend")  # STATUS_INVALID_HANDLE
        if program_closing():
            raise GeneratorExit
        n = buffer.size - offset if length is None else length
        status, event, iosb = _afd_issue(IRP_MJ_DEVICE_CONTROL, IOCTL_AFD_SEND, self.file_object,
                                         AfdRequest(buffer_va=buffer.va + offset, length=n))
        if status != STATUS_PENDING and not NT_SUCCESS(status):
            raise SocketError(status, "WSASend")
        return Overlapped(status, event, iosb, "WSASend")
        yield  # a generator, like every socket call

    def transmit_packets(self, data: bytes | bytearray | memoryview, flags: int = 0) -> Generator[Any, Any, int]:
        """TransmitPackets: send `data`; with TF_DISCONNECT (afd.TF_DISCONNECT) the FIN goes with it."""
        if not data:
            return 0
        buf = self._buffer_for(data)
        return (yield from self._ioctl(IOCTL_AFD_SEND, AfdRequest(buffer_va=buf.va, length=len(data), flags=flags),
                                       "TransmitPackets"))

    def recv_into(self, buffer: UserBuffer, length: int | None = None, offset: int = 0,
                  flags: int = 0) -> Generator[Any, Any, int]:
        """Receive up to `length` bytes into the buffer; 0 means the peer closed."""
        n = buffer.size - offset if length is None else length
        return (yield from self._ioctl(IOCTL_AFD_RECV, AfdRequest(buffer_va=buffer.va + offset, length=n,
                                                                  flags=flags), "recv"))

    def recv(self, max_bytes: int, flags: int = 0) -> Generator[Any, Any, bytes]:
        if self._scratch is None or self._scratch.size < max_bytes:
            if self._scratch is not None:
                self._scratch.free()
            self._scratch = UserBuffer(max(max_bytes, 4096))
        n = yield from self.recv_into(self._scratch, max_bytes, 0, flags)
        return self._scratch.read(n) if n else b""

    def sendto(self, data: bytes | bytearray | memoryview, address: SockAddr) -> Generator[Any, Any, int]:
        buf = self._buffer_for(data)
        return (yield from self._ioctl(IOCTL_AFD_SEND_DATAGRAM, AfdRequest(address=address, buffer_va=buf.va,
                                                                           length=len(data)), "sendto"))

    def recvfrom(self, max_bytes: int) -> Generator[Any, Any, tuple[bytes, SockAddr]]:
        if self._scratch is None or self._scratch.size < max_bytes:
            if self._scratch is not None:
                self._scratch.free()
            self._scratch = UserBuffer(max(max_bytes, 4096))
        request = AfdRequest(buffer_va=self._scratch.va, length=max_bytes)
        status, n = yield from _afd_call(IRP_MJ_DEVICE_CONTROL, IOCTL_AFD_RECV_DATAGRAM, self.file_object, request)
        if not NT_SUCCESS(status) and status != STATUS_BUFFER_OVERFLOW:
            raise SocketError(status, "recvfrom")
        return self._scratch.read(n) if n else b"", request.address  # type: ignore[return-value]

    # -- teardown ----------------------------------------------------------------------------------
    def shutdown(self, abortive: bool = False) -> Generator[Any, Any, None]:
        """Send FIN (waits until it is acknowledged) or, abortive, a RST."""
        yield from self._ioctl(IOCTL_AFD_DISCONNECT, AfdRequest(abortive=abortive), "shutdown")

    def close(self) -> Generator[Any, Any, None]:
        if self.closed:
            return
        self.closed = True
        _released(self)
        yield from _afd_call(IRP_MJ_CLEANUP, 0, self.file_object, AfdRequest())
        if self._scratch is not None:
            self._scratch.free()
            self._scratch = None


def accept_retrying(listener: Socket) -> Generator[Any, Any, Socket]:
    """A server's accept loop: an accept that failed for lack of memory (WSAENOBUFS) is tried
    again a millisecond later, as servers do; the connection waits in the backlog meanwhile."""
    while True:
        try:
            return (yield from listener.accept())
        except SocketError as err:
            if err.status != STATUS_INSUFFICIENT_RESOURCES:
                raise
            yield KeDelayExecutionThread(Interval=-10_000)


# --- programs ---------------------------------------------------------------------------------

@dataclass
class Program:
    """A running user program: its thread, and its result or error once it exits."""

    name: str
    kernel: Kernel
    thread: KThread | None = None
    done: bool = False
    result: Any = None
    error: BaseException | None = None
    children: list["Program"] = field(default_factory=list)
    opened: dict[int, "Socket | UserBuffer"] = field(default_factory=dict)  # handles and buffers it holds

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


def _owner() -> Program | None:
    """The program the running thread belongs to.  Kept on the thread itself: a module-level
    map from threads to programs would keep every world whose servers never exit alive."""
    thread = current_kernel().current_thread
    return getattr(thread, "program", None) if thread is not None else None


def _opened(item: "Socket | UserBuffer") -> None:
    owner = _owner()
    if owner is not None:
        owner.opened[id(item)] = item
        item.owner = owner


def _released(item: "Socket | UserBuffer") -> None:
    owner = item.owner
    if owner is not None:
        owner.opened.pop(id(item), None)
        item.owner = None


def _body(program: Program, fn: Callable[..., Generator], args: tuple) -> Generator:
    thread = current_kernel().current_thread
    if thread is not None:
        thread.program = program
    try:
        program.result = yield from fn(*args)
    except Exception as err:  # a user program's failure is its own, never the kernel's
        program.error = err
        if not program_closing():
            yield from _rundown(program)
    finally:
        program.done = True
        if thread is not None:
            thread.program = None
    return STATUS_SUCCESS


def _rundown(program: Program) -> Generator[Any, Any, None]:
    """A program that failed closes the sockets and frees the buffers its thread still held
    (what process exit does with handles and memory), so the peer hears and nothing leaks."""
    for item in list(program.opened.values()):
        try:
            if isinstance(item, Socket):
                yield from item.close()
            else:
                item.free()
        except SocketError:
            pass


def spawn(fn: Callable[..., Generator], *args: Any, name: str | None = None) -> Program:
    """Start `fn(*args)` as a new thread of the current host (from inside a program)."""
    k = current_kernel()
    program = Program(name or getattr(fn, "__name__", "program"), k)

    def start(_: Any) -> Generator:
        return (yield from _body(program, fn, args))

    start.symbol = f"user!{program.name}"  # type: ignore[attr-defined]
    program.thread = PsCreateSystemThread(start, None, name=program.name)
    if program.thread is None:  # CreateThread failed: the program never runs, and says why
        program.error = SocketError(STATUS_INSUFFICIENT_RESOURCES, "CreateThread")
        program.done = True
    return program


def join(program: Program) -> Generator[Any, Any, Any]:
    """Wait for a program (thread) started with `spawn` to exit; returns its result."""
    if not program.done and program.thread is not None:
        yield KeWaitForSingleObject(program.thread)
    return program.result


def run_program(kernel: Kernel, fn: Callable[..., Generator], *args: Any, name: str | None = None) -> Program:
    """Start a program on `kernel` from outside the machine (tests, the debugger)."""
    push_kernel(kernel)
    try:
        return spawn(fn, *args, name=name)
    finally:
        pop_kernel()


_ = (AF_INET6, STATUS_SUCCESS)
