"""WSK sockets and transport address sharing (MS Learn "Sharing Transport Addresses"):
SO_REUSEADDR / SO_EXCLUSIVEADDRUSE through WskControlSocket, their real values back from
WskGetOption, and the bind results of the documented table for listening, connection and
datagram sockets, with the default security descriptor's access check by OwningProcess."""

from __future__ import annotations

from typing import Any

from wsk_harness import Call, WskLab

from stack import wsk
from stack.kernel import IoFreeIrp
from stack.kernel.ntstatus import (STATUS_ACCESS_DENIED, STATUS_ADDRESS_ALREADY_EXISTS, STATUS_INVALID_DEVICE_STATE,
                                   STATUS_INVALID_PARAMETER, STATUS_SUCCESS)

ANY = wsk.SOCKADDR_IN(wsk.AF_INET, 5000, wsk.INADDR_ANY)
SPECIFIC = wsk.SOCKADDR_IN(wsk.AF_INET, 5000, bytes([10, 0, 0, 1]))


def socket(lab: WskLab, category: int, owner: Any = None) -> Any:
    def go() -> Any:
        c = Call()
        datagram = category == wsk.WSK_FLAG_DATAGRAM_SOCKET
        status = lab.dispatch.WskSocket(lab.npi.Client, wsk.AF_INET, wsk.SOCK_DGRAM if datagram else wsk.SOCK_STREAM,
                                        wsk.IPPROTO_UDP if datagram else wsk.IPPROTO_TCP, category, None, None,
                                        owner, None, None, c.irp)
        assert status == STATUS_SUCCESS and c.status == STATUS_SUCCESS
        IoFreeIrp(c.irp)
        return c.information
    return lab.call(go)


def get_option(lab: WskLab, sock: Any, code: int) -> tuple[int, int]:
    out = wsk.Ref(None)

    def go() -> int:
        c = Call()
        sock.Dispatch.WskControlSocket(sock, wsk.WskGetOption, code, wsk.SOL_SOCKET, 0, None, 4, out, None, c.irp)
        IoFreeIrp(c.irp)
        return c.status
    return lab.call(go), out.value


def test_neither_option_is_set_by_default_and_get_option_returns_what_was_set() -> None:
    lab = WskLab()
    sock = socket(lab, wsk.WSK_FLAG_LISTEN_SOCKET)
    assert get_option(lab, sock, wsk.SO_REUSEADDR) == (STATUS_SUCCESS, 0)
    assert get_option(lab, sock, wsk.SO_EXCLUSIVEADDRUSE) == (STATUS_SUCCESS, 0)
    assert lab.control(sock, wsk.SOL_SOCKET, wsk.SO_EXCLUSIVEADDRUSE, 1) == STATUS_SUCCESS
    assert get_option(lab, sock, wsk.SO_EXCLUSIVEADDRUSE) == (STATUS_SUCCESS, 1)
    assert get_option(lab, sock, wsk.SO_REUSEADDR) == (STATUS_SUCCESS, 0)


def test_the_two_options_exclude_each_other_and_are_set_only_before_the_bind() -> None:
    lab = WskLab()
    sock = socket(lab, wsk.WSK_FLAG_LISTEN_SOCKET)
    assert lab.control(sock, wsk.SOL_SOCKET, wsk.SO_REUSEADDR, 1) == STATUS_SUCCESS
    assert lab.control(sock, wsk.SOL_SOCKET, wsk.SO_EXCLUSIVEADDRUSE, 1) == STATUS_INVALID_PARAMETER
    assert lab.bind(sock, ANY) == STATUS_SUCCESS
    assert lab.control(sock, wsk.SOL_SOCKET, wsk.SO_REUSEADDR, 0) == STATUS_INVALID_DEVICE_STATE


def test_specific_listen_after_another_owners_wildcard_listen_is_access_denied() -> None:
    lab = WskLab()
    assert lab.bind(socket(lab, wsk.WSK_FLAG_LISTEN_SOCKET, "procA"), ANY) == STATUS_SUCCESS
    assert lab.bind(socket(lab, wsk.WSK_FLAG_LISTEN_SOCKET, "procB"), SPECIFIC) == STATUS_ACCESS_DENIED
    assert lab.bind(socket(lab, wsk.WSK_FLAG_LISTEN_SOCKET, "procA"), SPECIFIC) == STATUS_SUCCESS  # same owner


def test_wildcard_listen_after_a_specific_one_succeeds_and_a_second_wildcard_is_in_use() -> None:
    lab = WskLab()
    assert lab.bind(socket(lab, wsk.WSK_FLAG_LISTEN_SOCKET, "procA"), SPECIFIC) == STATUS_SUCCESS
    assert lab.bind(socket(lab, wsk.WSK_FLAG_LISTEN_SOCKET, "procB"), ANY) == STATUS_SUCCESS
    assert lab.bind(socket(lab, wsk.WSK_FLAG_LISTEN_SOCKET, "procC"), ANY) == STATUS_ADDRESS_ALREADY_EXISTS


def test_reuseaddr_on_both_sockets_shares_the_wildcard_address() -> None:
    lab = WskLab()
    for owner in ("procA", "procB"):
        sock = socket(lab, wsk.WSK_FLAG_LISTEN_SOCKET, owner)
        assert lab.control(sock, wsk.SOL_SOCKET, wsk.SO_REUSEADDR, 1) == STATUS_SUCCESS
        assert lab.bind(sock, ANY) == STATUS_SUCCESS


def test_reuseaddr_cannot_take_an_exclusive_address_and_default_wildcard_after_exclusive_is_in_use() -> None:
    lab = WskLab()
    first = socket(lab, wsk.WSK_FLAG_DATAGRAM_SOCKET, "procA")
    assert lab.control(first, wsk.SOL_SOCKET, wsk.SO_EXCLUSIVEADDRUSE, 1) == STATUS_SUCCESS
    assert lab.bind(first, ANY) == STATUS_SUCCESS
    reuse = socket(lab, wsk.WSK_FLAG_DATAGRAM_SOCKET, "procB")
    assert lab.control(reuse, wsk.SOL_SOCKET, wsk.SO_REUSEADDR, 1) == STATUS_SUCCESS
    assert lab.bind(reuse, ANY) == STATUS_ACCESS_DENIED
    assert lab.bind(socket(lab, wsk.WSK_FLAG_DATAGRAM_SOCKET, "procB"), ANY) == STATUS_ADDRESS_ALREADY_EXISTS


def test_closing_the_first_socket_frees_the_address() -> None:
    lab = WskLab()
    first = socket(lab, wsk.WSK_FLAG_CONNECTION_SOCKET, "procA")
    assert lab.bind(first, ANY) == STATUS_SUCCESS
    assert lab.bind(socket(lab, wsk.WSK_FLAG_CONNECTION_SOCKET, "procB"), ANY) == STATUS_ADDRESS_ALREADY_EXISTS
    lab.close(first)
    lab.run()
    assert lab.bind(socket(lab, wsk.WSK_FLAG_CONNECTION_SOCKET, "procB"), ANY) == STATUS_SUCCESS
