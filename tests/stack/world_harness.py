"""Shared helpers for world-level tests: build a lab, run programs to completion with bounds."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any, Callable, Generator

from stack.nic import NicOffloads
from stack.tcpip.addr import SockAddr
from stack.tcpip.tcp import MS, TcpConfig
from stack.usermode.socket import Program, run_program
from stack.world import World, default_world

SECOND = 1_000_000_000


def lab(seed: int = 1, *, lso: bool = True, checksum: bool = True, time_wait_ms: int = 2000,
        max_retransmits: int = 5, rsc: bool = False, interrupt_moderation_rate: str | int = "Adaptive") -> World:
    """The standard two hosts; `interrupt_moderation_rate` "Off" for a test that needs an interrupt per packet."""
    offloads = NicOffloads(tx_checksum=checksum, rx_checksum=checksum, lso=lso, rsc=rsc)
    config = TcpConfig(time_wait_ns=time_wait_ms * MS, max_retransmits=max_retransmits)
    return default_world(seed, services=False, offloads=offloads, tcp_config=config,
                         interrupt_moderation_rate=interrupt_moderation_rate)


def any_address(version: int, port: int) -> SockAddr:
    return SockAddr(IPv4Address(0) if version == 4 else IPv6Address(0), port)


def server_address(world: World, version: int, port: int, host: str = "winsrv") -> SockAddr:
    h = world.host(host)
    return SockAddr(h.address4 if version == 4 else h.address6, port)


def start(world: World, host: str, fn: Callable[..., Generator], *args: Any) -> Program:
    return run_program(world.host(host).kernel, fn, *args)


def run_programs(world: World, *programs: Program, max_events: int = 5_000_000,
                 max_time_ns: int = 600 * SECOND) -> None:
    """Run until every program finished; fail (never hang) past the event or virtual-time bound."""
    deadline = world.now_ns + max_time_ns
    finished = world.run_while(lambda: not all(p.done for p in programs), max_events=max_events,
                               max_time_ns=deadline)
    world.check()
    for p in programs:
        p.raise_error()
    assert finished, (f"programs did not finish by t={world.now_ns / 1e9:.3f}s: "
                      f"{[(p.name, p.done) for p in programs]}")


def echo_exchange(world: World, version: int, data: bytes, *, port: int = 7,
                  max_events: int = 5_000_000, sndbuf: int | None = None) -> tuple[Any, Any]:
    """A user-mode echo server on winsrv and a client on `client` sending `data`: both programs' results.
    `sndbuf`: the client's SO_SNDBUF (None: afd's default send buffering)."""
    from stack.usermode.programs import CHUNK, echo_client, echo_server
    server = start(world, "winsrv", echo_server, any_address(version, port))
    world.run_for(1_000_000)
    client = start(world, "client", echo_client, server_address(world, version, port), data, CHUNK, False, sndbuf)
    run_programs(world, server, client, max_events=max_events)
    return client.result, server.result
