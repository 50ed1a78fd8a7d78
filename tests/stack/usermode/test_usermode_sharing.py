"""User-mode sockets share transport addresses by the same table as WSK (sharing.py): each lab
program is its own security context, and SO_REUSEADDR / SO_EXCLUSIVEADDRUSE go through
\\Device\\Afd before the bind."""

from __future__ import annotations

from typing import Any, Generator

from stack.kernel.ntstatus import STATUS_ACCESS_DENIED, STATUS_ADDRESS_ALREADY_EXISTS
from stack.usermode.socket import SockAddr, Socket, SocketError, run_program
from stack.world import default_world

SECOND = 1_000_000_000


def _listen(address: str, options: tuple[str, ...] = ()) -> Any:
    def program() -> Generator[Any, Any, Any]:
        sock = yield from Socket.create()
        for option in options:
            yield from sock.setsockopt(option, 1)
        try:
            yield from sock.bind(SockAddr.parse(address))
            yield from sock.listen()
        except SocketError as err:
            return err.status
        info = yield from sock.info()
        return info
    return program


def _run(world, *programs) -> list[Any]:
    results = []
    for i, fn in enumerate(programs):  # one after the other, each a program (owner) of its own
        prog = run_program(world.host("winsrv").kernel, fn, name=f"prog{i}")
        world.run_while(lambda: not prog.done, max_time_ns=world.now_ns + SECOND)
        prog.raise_error()
        results.append(prog.result)
    return results


def test_specific_listen_after_another_programs_wildcard_listen_is_access_denied() -> None:
    world = default_world(5, services=False)
    first, second = _run(world, _listen("0.0.0.0:6000"), _listen("10.0.0.1:6000"))
    assert isinstance(first, dict) and second == STATUS_ACCESS_DENIED


def test_second_wildcard_listen_is_in_use_unless_both_set_reuseaddr() -> None:
    world = default_world(5, services=False)
    _, second = _run(world, _listen("0.0.0.0:6001"), _listen("0.0.0.0:6001"))
    assert second == STATUS_ADDRESS_ALREADY_EXISTS
    first, second = _run(world, _listen("0.0.0.0:6002", ("SO_REUSEADDR",)), _listen("0.0.0.0:6002", ("SO_REUSEADDR",)))
    assert first["SO_REUSEADDR"] == 1 and second["SO_REUSEADDR"] == 1 and second["state"] == "LISTEN"


def test_exclusive_address_refuses_a_reuseaddr_bind() -> None:
    world = default_world(5, services=False)
    first, second = _run(world, _listen("0.0.0.0:6003", ("SO_EXCLUSIVEADDRUSE",)),
                         _listen("0.0.0.0:6003", ("SO_REUSEADDR",)))
    assert first["SO_EXCLUSIVEADDRUSE"] == 1 and second == STATUS_ACCESS_DENIED
