"""The kernel request queue hand-over (HTTP.sys's model): khttpd queues a dynamic request,
the user-mode server takes it with an IOCTL on \\Device\\khttpd and answers with another.

    IOCTL_KHTTPD_RECEIVE_REQUEST   (HttpReceiveHttpRequest) the IRP's system buffer is a
                                   KHTTPD_REQUEST that khttpd fills; pends until a request is queued.
    IOCTL_KHTTPD_SEND_RESPONSE     (HttpSendHttpResponse) the system buffer is a KHTTPD_RESPONSE
                                   (status, content type, body) for a request id; khttpd frames it
                                   on the client's connection.

No socket and no second TCP connection: the request crosses to user mode as a structure,
which is the point of the design.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Generator

from stack.kernel import (IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL, KEVENT,
                          STATUS_CANCELLED, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER, STATUS_PENDING,
                          STATUS_SUCCESS, Executive, IoCompleteRequest, IoGetCurrentIrpStackLocation, IoMarkIrpPending,
                          KernelMode, KeSetEvent, KeWaitForSingleObject, NotificationEvent, current_kernel, kroutine)


def CTL_CODE(DeviceType: int, Function: int, Method: int, Access: int) -> int:
    return (DeviceType << 16) | (Access << 14) | (Function << 2) | Method


FILE_DEVICE_NETWORK = 0x12
METHOD_NEITHER = 3
IOCTL_KHTTPD_RECEIVE_REQUEST = CTL_CODE(FILE_DEVICE_NETWORK, 0x801, METHOD_NEITHER, 0)
IOCTL_KHTTPD_SEND_RESPONSE = CTL_CODE(FILE_DEVICE_NETWORK, 0x802, METHOD_NEITHER, 0)


@dataclass(slots=True)
class KHTTPD_REQUEST:
    RequestId: int = 0
    Method: str = ""
    Target: bytes = b""
    Headers: tuple = ()
    Body: bytes = b""


@dataclass(slots=True)
class KHTTPD_RESPONSE:
    RequestId: int
    StatusCode: int
    ContentType: str
    Body: bytes


@dataclass(eq=False)
class KhttpdQueueEntry:
    request_id: int
    request: Any  # http.Request
    done: KEVENT = field(default_factory=lambda: KEVENT(NotificationEvent, False))
    response: KHTTPD_RESPONSE | None = None


@dataclass(eq=False)
class KhttpdRequestQueue:
    queued: deque = field(default_factory=deque)  # entries no user-mode receive has taken yet
    receivers: deque = field(default_factory=deque)  # pended IOCTL_KHTTPD_RECEIVE_REQUEST IRPs
    taken: dict = field(default_factory=dict)  # request id -> entry, waiting for its response
    next_id: int = 1
    delivered: int = 0


def _complete(irp: Any, status: int, information: int = 0) -> int:
    irp.IoStatus.Status = status
    irp.IoStatus.Information = information
    IoCompleteRequest(irp)
    return status


def _deliver(q: KhttpdRequestQueue, entry: KhttpdQueueEntry, irp: Any) -> int:
    out: KHTTPD_REQUEST = irp.system_buffer
    r = entry.request
    out.RequestId, out.Method, out.Target, out.Headers, out.Body = (entry.request_id, r.method, r.target, r.headers,
                                                                   r.body)
    q.taken[entry.request_id] = entry
    q.delivered += 1
    return _complete(irp, STATUS_SUCCESS, len(r.raw))


@kroutine("khttpd")
def KhttpdDispatchCreateClose(DeviceObject: Any, Irp: Any) -> int:
    return _complete(Irp, STATUS_SUCCESS)


@kroutine("khttpd")
def KhttpdDispatchDeviceControl(DeviceObject: Any, Irp: Any) -> int:
    from .state import khttpd_globals
    g = khttpd_globals(current_kernel())
    q: KhttpdRequestQueue | None = getattr(g, "request_queue", None) if g is not None else None
    code = IoGetCurrentIrpStackLocation(Irp).parameters[2]
    if q is None:
        return _complete(Irp, STATUS_INVALID_DEVICE_REQUEST)
    if code == IOCTL_KHTTPD_RECEIVE_REQUEST:
        if not isinstance(Irp.system_buffer, KHTTPD_REQUEST):
            return _complete(Irp, STATUS_INVALID_PARAMETER)
        if q.queued:
            return _deliver(q, q.queued.popleft(), Irp)
        IoMarkIrpPending(Irp)
        q.receivers.append(Irp)
        return STATUS_PENDING
    if code == IOCTL_KHTTPD_SEND_RESPONSE:
        response = Irp.system_buffer
        entry = q.taken.pop(getattr(response, "RequestId", None), None)
        if entry is None:
            return _complete(Irp, STATUS_INVALID_PARAMETER)
        entry.response = response
        KeSetEvent(entry.done)
        return _complete(Irp, STATUS_SUCCESS)
    return _complete(Irp, STATUS_INVALID_DEVICE_REQUEST)


def install(driver: Any) -> KhttpdRequestQueue:
    for major in (IRP_MJ_CREATE, IRP_MJ_CLOSE, IRP_MJ_CLEANUP):
        driver.MajorFunction[major] = KhttpdDispatchCreateClose
    driver.MajorFunction[IRP_MJ_DEVICE_CONTROL] = KhttpdDispatchDeviceControl
    return KhttpdRequestQueue()


def cancel_all(q: KhttpdRequestQueue) -> None:
    """Unload: pended receives end with STATUS_CANCELLED; waiting connections get no response."""
    while q.receivers:
        _complete(q.receivers.popleft(), STATUS_CANCELLED)
    for entry in list(q.queued) + list(q.taken.values()):
        KeSetEvent(entry.done)
    q.queued.clear()
    q.taken.clear()


@kroutine("khttpd")
def KhttpdQueueRequest(q: KhttpdRequestQueue, request: Any) -> Generator[Any, Any, KHTTPD_RESPONSE | None]:
    """Queue a dynamic request for the user-mode server and wait for its response."""
    entry = KhttpdQueueEntry(q.next_id, request)
    q.next_id += 1
    if q.receivers:
        _deliver(q, entry, q.receivers.popleft())
    else:
        q.queued.append(entry)
    yield KeWaitForSingleObject(entry.done, Executive, KernelMode, False, None)
    return entry.response
