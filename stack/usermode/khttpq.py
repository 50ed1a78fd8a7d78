"""The user-mode web server reading khttpd's kernel request queue (HTTP.sys's model).

    run_program(kernel, request_queue_server, stats)

Each turn: IOCTL_KHTTPD_RECEIVE_REQUEST on \\Device\\khttpd (pends until khttpd queues a
request), the same application as the socket server (webserver.answer), then
IOCTL_KHTTPD_SEND_RESPONSE with the status, type and body.  Ends when khttpd unloads
(the pended receive completes with STATUS_CANCELLED) or after `count` requests.
"""

from __future__ import annotations

from typing import Any, Generator

from stack.drivers.khttpd.queue import (IOCTL_KHTTPD_RECEIVE_REQUEST, IOCTL_KHTTPD_SEND_RESPONSE, KHTTPD_REQUEST,
                                        KHTTPD_RESPONSE)
from stack.kernel import (KEVENT, IRP_MJ_DEVICE_CONTROL, NT_SUCCESS, STATUS_PENDING, IoBuildDeviceIoControlRequest,
                          IoCallDriver, IoGetDeviceObjectPointer, IoGetNextIrpStackLocation, KeWaitForSingleObject,
                          NotificationEvent)
from stack.kernel.irp import IoStatusBlock

from .webserver import WebServerStats, answer


def _ioctl(code: int, buffer: Any) -> Generator[Any, Any, int]:
    device = IoGetDeviceObjectPointer("\\Device\\khttpd")
    if device is None:
        return 0xC0000034  # STATUS_OBJECT_NAME_NOT_FOUND
    event = KEVENT(NotificationEvent, False)
    iosb = IoStatusBlock()
    irp = IoBuildDeviceIoControlRequest(code, device, buffer, 0, None, 0, False, event, iosb)
    IoGetNextIrpStackLocation(irp).major = IRP_MJ_DEVICE_CONTROL
    if IoCallDriver(device, irp) == STATUS_PENDING:
        yield KeWaitForSingleObject(event)
    return iosb.Status


def request_queue_server(stats: WebServerStats | None = None, count: int | None = None) -> Generator[Any, Any, int]:
    stats = stats or WebServerStats()
    served = 0
    while count is None or served < count:
        request = KHTTPD_REQUEST()
        status = yield from _ioctl(IOCTL_KHTTPD_RECEIVE_REQUEST, request)
        if not NT_SUCCESS(status):
            break
        code, content_type, body = answer(request.Method, request.Target, request.Body, stats)
        yield from _ioctl(IOCTL_KHTTPD_SEND_RESPONSE, KHTTPD_RESPONSE(request.RequestId, code, content_type, body))
        served += 1
    return served
