"""How afd carries a WSK client's IRP: take one stack location, complete exactly once.

A WSK call is a direct call into afd's dispatch table with the client's IRP as a parameter;
nothing calls IoCallDriver.  As "Using IRPs with Winsock Kernel Functions" requires, the IRP
has a stack location left for the WSK subsystem: afd takes it (IoSetNextIrpStackLocation),
so the location the client put its completion routine on becomes the current one, owned by
\\Device\\Afd (`!irp` shows `\\Driver\\AFD` next to the client's routine, with the
length/flags/operation/socket as Args).  An IRP with no location left bug-checks 0x35
NO_MORE_IRP_STACK_LOCATIONS, as running off the bottom of an IRP does.  afd completes the IRP
with IoCompleteRequest when the transport is done, whether during the call or later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from stack.kernel import (IRP_MJ_INTERNAL_DEVICE_CONTROL, STATUS_INVALID_PARAMETER, STATUS_PENDING,
                          IoCompleteRequest, IoMarkIrpPending, IoSetNextIrpStackLocation)
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
    """Parameters of afd's stack location (Args: length, flags, operation, socket)."""

    operation: str
    socket: int
    length: int
    flags: int
    start: Callable[[Irp], int]

    def arguments(self) -> tuple[int, int, int, int]:
        return (self.length, self.flags, WSK_OPERATION_CODES.get(self.operation, 0), self.socket)


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


def afd_take_irp(device: Any, irp: Irp | None, operation: str, socket: int, length: int, flags: int,
                 start: Callable[[Irp], int]) -> int:
    """Take the client's IRP's next stack location for \\Device\\Afd and start the operation."""
    if irp is None:
        return STATUS_INVALID_PARAMETER
    IoSetNextIrpStackLocation(irp)  # bug-checks 0x35 when the client left no location
    loc = irp.stack[irp.current_location - 1]
    loc.major = IRP_MJ_INTERNAL_DEVICE_CONTROL
    loc.minor = 0
    loc.device_object = device
    loc.parameters = WskIrpParameters(operation, socket, length, flags, start)
    irp.note(f"{operation} taken by afd")
    return start(irp)
