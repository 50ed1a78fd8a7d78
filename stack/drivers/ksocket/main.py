"""main.c: KSOCKET's demo DriverEntry.

An HTTP GET of http://httpbin.org/uuid (resolved through WskGetAddressInfo, i.e. the lab's
DNS server over UDP), printed with DbgPrint; then a one-shot TCP server on port 9095 that
prints what the client sent and answers "Hello from WSK!" (with its NUL).  It returns
STATUS_UNSUCCESSFUL so the driver unloads at once, as the original does.

C's stack arrays (`char recv_buffer[1024]`) live in nonpaged pool here: the emulated
kernel stacks are not backed by pages an MDL could describe.
"""

from __future__ import annotations

from typing import Any, Generator

from stack.kernel import (DPFLTR_ERROR_LEVEL, DPFLTR_IHVDRIVER_ID, NT_SUCCESS, STATUS_INSUFFICIENT_RESOURCES, STATUS_UNSUCCESSFUL, DbgPrintEx,
                          DriverImage, ExAllocatePoolWithTag, ExFreePoolWithTag, current_kernel, kroutine)
from stack.kernel.pool import NonPagedPoolNx
from stack.wsk import AF_INET, AF_UNSPEC, AI_CANONNAME, INADDR_ANY, IPPROTO_TCP, SOCK_STREAM, SOCKADDR_IN, Ref

from .berkeley import (accept, addrinfo, bind, closesocket, connect, freeaddrinfo, getaddrinfo, listen, recv, send,
                       socket_connection, socket_listen)
from .ksocket import MEMORY_TAG, MODULE, KsDestroy, KsInitialize

HTTP_REQUEST = b"GET /uuid HTTP/1.1\r\nHost: httpbin.org\r\nConnection: close\r\n\r\n\x00"  # sizeof() counts the NUL
SERVER_REPLY = b"Hello from WSK!\x00"
SERVER_PORT = 9095  # C: htons(9095); SOCKADDR ports are host order in this emulation


def _char_array(size: int, init: bytes = b"") -> int:
    """`char name[size] = init;` as a pool buffer (zero filled)."""
    va = ExAllocatePoolWithTag(NonPagedPoolNx, size, MEMORY_TAG)
    if init and va:
        current_kernel().write(va, init)
    return va


def _free_arrays(*vas: int) -> None:
    for va in vas:
        if va:
            ExFreePoolWithTag(va, MEMORY_TAG)


def _c_string(va: int, size: int) -> str:
    raw = current_kernel().read(va, size)
    return raw.split(b"\x00", 1)[0].decode("latin-1")


@kroutine(MODULE)
def DriverEntry(DriverObject: Any, RegistryPath: str) -> Generator[Any, Any, int]:
    Status = yield from KsInitialize()
    if not NT_SUCCESS(Status):
        return Status

    # Client: an HTTP request to http://httpbin.org/uuid
    send_buffer = _char_array(len(HTTP_REQUEST), HTTP_REQUEST)
    recv_buffer = _char_array(1024)
    if not send_buffer or not recv_buffer:  # (the original does not check; a NULL would fault)
        _free_arrays(send_buffer, recv_buffer)
        yield from KsDestroy()
        return STATUS_INSUFFICIENT_RESOURCES
    hints = addrinfo(ai_flags=AI_CANONNAME, ai_family=AF_UNSPEC, ai_socktype=SOCK_STREAM)
    res = Ref()
    result = yield from getaddrinfo("httpbin.org", "80", hints, res)
    if result != 0 or res.value is None:
        # The original checks nothing and would dereference a garbage `res` here.
        DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_ERROR_LEVEL, "getaddrinfo failed: 0x%08x\n", result)
    else:
        sockfd = yield from socket_connection(AF_INET, SOCK_STREAM, IPPROTO_TCP)
        result = yield from connect(sockfd, res.value.ai_addr, res.value.ai_addrlen)
        result = yield from send(sockfd, send_buffer, len(HTTP_REQUEST), 0)
        result = yield from recv(sockfd, recv_buffer, 1024, 0)
        current_kernel().write(recv_buffer + 1023, b"\x00")
        DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_ERROR_LEVEL, "TCP client:\n%s\n", _c_string(recv_buffer, 1024))
        yield from closesocket(sockfd)
        freeaddrinfo(res.value)
    ExFreePoolWithTag(send_buffer, MEMORY_TAG)
    ExFreePoolWithTag(recv_buffer, MEMORY_TAG)

    # Server: listen on port 9095, print one message, answer, close.
    send_buffer = _char_array(len(SERVER_REPLY), SERVER_REPLY)
    recv_buffer = _char_array(1024)
    if not send_buffer or not recv_buffer:
        _free_arrays(send_buffer, recv_buffer)
        yield from KsDestroy()
        return STATUS_INSUFFICIENT_RESOURCES
    server_sockfd = yield from socket_listen(AF_INET, SOCK_STREAM, 0)
    addr = SOCKADDR_IN(AF_INET, SERVER_PORT, INADDR_ANY)
    result = yield from bind(server_sockfd, addr, 16)
    result = listen(server_sockfd, 1)
    addrlen = Ref(16)
    client_sockfd = yield from accept(server_sockfd, addr, addrlen)
    result = yield from recv(client_sockfd, recv_buffer, 1024 - 1, 0)
    DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_ERROR_LEVEL, "TCP server:\n%s", _c_string(recv_buffer, 1024))
    result = yield from send(client_sockfd, send_buffer, len(SERVER_REPLY), 0)
    yield from closesocket(client_sockfd)
    yield from closesocket(server_sockfd)
    ExFreePoolWithTag(send_buffer, MEMORY_TAG)
    ExFreePoolWithTag(recv_buffer, MEMORY_TAG)

    # Destroy KSOCKET, then fail the load so the driver unloads at once.
    yield from KsDestroy()
    _ = result
    return STATUS_UNSUCCESSFUL


DRIVER_IMAGE = DriverImage("ksocket", MODULE, DriverEntry, image="ksocket.sys", pool_tags=(MEMORY_TAG, "Ksb "),
                           description="KSOCKET demo (wbenny/KSOCKET main.c)")
