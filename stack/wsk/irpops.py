"""How the provider carries a client's IRP: set up the next stack location, call the
wskprov device, complete exactly once whether the transport finishes during the call or later.

A client-allocated IRP (IoAllocateIrp(1)) has its completion routine in location 1.  The
provider fills that location with IRP_MJ_INTERNAL_DEVICE_CONTROL and a `WskIrpParameters`
naming the operation (so `!irp` shows `\\Driver\\wskprov` and the length/flags/op/socket as
Args), then IoCallDriver()s its own device, whose dispatch routine starts the operation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generator

from stack.kernel import (IRP_MJ_INTERNAL_DEVICE_CONTROL, STATUS_INVALID_PARAMETER, STATUS_PENDING,
                          IoCallDriver, IoCompleteRequest, IoGetNextIrpStackLocation, IoMarkIrpPending)
from stack.kernel.irp import Irp

# Operation codes shown as the third !irp argument (where an IOCTL code would be).
WSK_OPERATION_CODES = {
    "WskSocket": 0x01, "WskSocketConnect": 0x02, "WskControlClient": 0x03, "WskGetAddressInfo": 0x04,
    "WskGetNameInfo": 0x05, "WskControlSocket": 0x10, "WskCloseSocket": 0x11, "WskBind": 0x12,
    "WskAccept": 0x13, "WskListen": 0x14, "WskConnect": 0x15, "WskSend": 0x16, "WskReceive": 0x17,
    "WskDisconnect": 0x18, "WskGetLocalAddress": 0x19, "WskGetRemoteAddress": 0x1A, "WskSendTo": 0x1B,
    "WskReceiveFrom": 0x1C, "WskInspectComplete": 0x1D,
}


@dataclass(slots=True)
class WskIrpParameters:
    """Parameters of the wskprov stack location (Args: length, flags, operation, socket)."""

    operation: str
    socket: int
    length: int
    flags: int
    start: Callable[[Irp], int]

    def arguments(self) -> tuple[int, int, int, int]:
        return (self.length, self.flags, WSK_OPERATION_CODES.get(self.operation, 0), self.socket)


class WskStatus(int):
    """An NTSTATUS that a system thread may also `yield from` to wait for the final one.

    `WskCaptureProviderNPI` and `WskDeregister` block in C.  Called plainly they return
    at once (the int is the no-wait answer); `status = yield from WskCaptureProviderNPI(...)`
    waits as the C call would, on the calling thread."""

    _waiter: Callable[[], Generator[Any, Any, int]] | None

    def __new__(cls, value: int, waiter: Callable[[], Generator[Any, Any, int]] | None = None) -> "WskStatus":
        obj = int.__new__(cls, value)
        obj._waiter = waiter
        return obj

    def __iter__(self) -> Generator[Any, Any, int]:
        return self._wait()

    def _wait(self) -> Generator[Any, Any, int]:
        if self._waiter is not None:
            return (yield from self._waiter())
        return int(self)


def complete_irp(irp: Irp, status: int, information: Any = 0) -> None:
    irp.IoStatus.Status = status
    irp.IoStatus.Information = information
    IoCompleteRequest(irp, 0)


class IrpCompletion:
    """Completes one IRP exactly once, whether the lower layer finished synchronously or not.

    Call `done(status, info)` from the transport's completion; call `started(result)` with
    what the transport call returned.  The return value of `started` is what the dispatch
    routine returns (the final status, or STATUS_PENDING after IoMarkIrpPending)."""

    __slots__ = ("irp", "returned", "early", "on_complete")

    def __init__(self, irp: Irp, on_complete: Callable[[int, Any], None] | None = None) -> None:
        self.irp = irp
        self.returned = False
        self.early: tuple[int, Any] | None = None
        self.on_complete = on_complete

    def done(self, status: int, information: Any = 0) -> None:
        if not self.returned:
            self.early = (status, information)
            return
        self._finish(status, information)

    def started(self, result: int) -> int:
        self.returned = True
        if self.early is not None:
            status, info = self.early
            self._finish(status, info)
            return status
        if result == STATUS_PENDING:
            IoMarkIrpPending(self.irp)
            return STATUS_PENDING
        self._finish(result, 0)
        return result

    def _finish(self, status: int, information: Any) -> None:
        complete_irp(self.irp, status, information)
        if self.on_complete is not None:
            self.on_complete(status, information)


def call_wskprov(device: Any, irp: Irp | None, operation: str, socket: int, length: int, flags: int,
                 start: Callable[[Irp], int]) -> int:
    """Hand the client's IRP to the wskprov device with the operation in its stack location."""
    if irp is None:
        return STATUS_INVALID_PARAMETER
    loc = IoGetNextIrpStackLocation(irp)  # bug-checks 0x35 when the client left no location
    loc.major = IRP_MJ_INTERNAL_DEVICE_CONTROL
    loc.minor = 0
    loc.parameters = WskIrpParameters(operation, socket, length, flags, start)
    irp.note(f"{operation} via wskprov")
    return IoCallDriver(device, irp)
