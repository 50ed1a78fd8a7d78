"""netio.sys's half of WSK: the Network Module Registrar (NMR) calls wsk.h declares.

`WskRegister`, `WskDeregister`, `WskCaptureProviderNPI` and `WskReleaseProviderNPI` are
exported by netio.sys (`netio!WskRegister` ...), not by the provider: a client registers with
the NMR, which attaches it to whichever WSK provider registered (afd.sys, stack.afd) - now or
when the provider arrives.  Attaching and detaching are the provider's business
(`provider.attach_client` / `detach_client`: afd keeps the list `afd!AfdWskClientListHead`).

`k.extensions["wsk.nmr"]` exists as soon as a client registers (registration does not need
the provider).  `WskCaptureProviderNPI` and `WskDeregister` return a `WskStatus`: an int a
system thread may also `yield from` to wait, as the C calls block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generator

from stack.kernel import (STATUS_DEVICE_NOT_READY, STATUS_INVALID_PARAMETER, STATUS_NOINTERFACE, STATUS_PENDING,
                          STATUS_SUCCESS, STATUS_TIMEOUT, KEVENT, Executive, KernelMode, KeResetEvent, KeSetEvent,
                          KeWaitForSingleObject, NotificationEvent, current_kernel, kroutine)
from stack.kernel.kernel import Kernel

from .constants import WSK_INFINITE_WAIT, WSK_MAJOR_VERSION, WSK_NO_WAIT
from .structs import WSK_CLIENT_NPI, WSK_PROVIDER_NPI, WSK_REGISTRATION

SUPPORTED_MAJOR_VERSION = 1


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


@dataclass(slots=True, eq=False)
class WskClient:
    """One WskRegister: what WSK_PROVIDER_NPI.Client points at (PWSK_CLIENT)."""

    npi: WSK_CLIENT_NPI
    registration: WSK_REGISTRATION
    owner: str  # the registering driver's module
    captures: int = 0
    static_event_mask: int = 0
    sockets: set[int] = field(default_factory=set)  # socket addresses owned by this client
    sockets_ever: int = 0
    deregistering: bool = False
    deregistered: KEVENT = field(default_factory=lambda: KEVENT(NotificationEvent, False))
    entry: int = 0  # the provider's list entry for this client (afd!AfdWskClientListHead), 0 when detached

    @property
    def quiescent(self) -> bool:
        return self.captures == 0 and not self.sockets

    def maybe_finish_deregistration(self) -> None:
        if self.deregistering and self.quiescent and not self.deregistered.signaled:
            KeSetEvent(self.deregistered, 0, False)


@dataclass(slots=True, eq=False)
class WskNmr:
    """The Network Module Registrar's view for WSK on one kernel."""

    clients: list[WskClient] = field(default_factory=list)
    provider: Any = None  # the registered provider (stack.afd's WskProvider) or None
    provider_ready: KEVENT = field(default_factory=lambda: KEVENT(NotificationEvent, False))


def nmr(k: Kernel) -> WskNmr:
    state = k.extensions.get("wsk.nmr")
    if state is None:
        state = k.extensions["wsk.nmr"] = WskNmr()
    return state


def NmrRegisterProvider(k: Kernel, provider: Any) -> None:
    """The provider's side (afd's DriverEntry): attach every client registered so far."""
    state = nmr(k)
    state.provider = provider
    for client in state.clients:
        provider.attach_client(client)
    KeSetEvent(state.provider_ready, 0, False)  # captures waiting for the provider go on


def NmrDeregisterProvider(k: Kernel) -> None:
    state = nmr(k)
    provider, state.provider = state.provider, None
    KeResetEvent(state.provider_ready)
    if provider is not None:
        for client in state.clients:
            provider.detach_client(client)


def _client_of(registration: WSK_REGISTRATION) -> WskClient | None:
    client = registration.ReservedRegistrationContext
    return client if isinstance(client, WskClient) else None


@kroutine("netio")
def WskRegister(WskClientNpi: WSK_CLIENT_NPI, WskRegistration: WSK_REGISTRATION) -> int:
    k = current_kernel()
    if not isinstance(WskClientNpi, WSK_CLIENT_NPI) or WskClientNpi.Dispatch is None:
        return STATUS_INVALID_PARAMETER
    if not isinstance(WskRegistration, WSK_REGISTRATION) or _client_of(WskRegistration) is not None:
        return STATUS_INVALID_PARAMETER
    frames = [f.symbol for f in k.frames if not f.symbol.startswith(("nt!", "netio!", "afd!"))]
    owner = frames[-1].split("!", 1)[0] if frames else "unknown"
    client = WskClient(WskClientNpi, WskRegistration, owner)
    WskRegistration.ReservedRegistrationContext = client
    WskRegistration.ReservedRegistrationState = 1
    state = nmr(k)
    state.clients.append(client)
    if state.provider is not None:
        state.provider.attach_client(client)
    return STATUS_SUCCESS


@kroutine("netio")
def WskCaptureProviderNPI(WskRegistration: WSK_REGISTRATION, WaitTimeout: int,
                          WskProviderNpi: WSK_PROVIDER_NPI) -> WskStatus:
    """Plain call: the answer without waiting.  `yield from` it on a thread to wait as C does."""
    k = current_kernel()
    client = _client_of(WskRegistration)
    if client is None or client.deregistering:
        return WskStatus(STATUS_DEVICE_NOT_READY)
    if WSK_MAJOR_VERSION(client.npi.Dispatch.Version) != SUPPORTED_MAJOR_VERSION:
        return WskStatus(STATUS_NOINTERFACE)
    state = nmr(k)
    if state.provider is not None:
        _capture(client, state.provider, WskProviderNpi)
        return WskStatus(STATUS_SUCCESS)
    if WaitTimeout == WSK_NO_WAIT:
        return WskStatus(STATUS_DEVICE_NOT_READY)

    def wait() -> Generator[Any, Any, int]:
        timeout = None if WaitTimeout == WSK_INFINITE_WAIT else -int(WaitTimeout) * 10_000
        status = yield KeWaitForSingleObject(state.provider_ready, Executive, KernelMode, False, timeout)
        if status == STATUS_TIMEOUT or state.provider is None or client.deregistering:
            return STATUS_DEVICE_NOT_READY
        _capture(client, state.provider, WskProviderNpi)
        return STATUS_SUCCESS

    return WskStatus(STATUS_DEVICE_NOT_READY, wait)


def _capture(client: WskClient, provider: Any, npi: WSK_PROVIDER_NPI) -> None:
    client.captures += 1
    npi.Client = client
    npi.Dispatch = provider.dispatch


@kroutine("netio")
def WskReleaseProviderNPI(WskRegistration: WSK_REGISTRATION) -> None:
    client = _client_of(WskRegistration)
    if client is None or client.captures <= 0:
        return
    client.captures -= 1
    client.maybe_finish_deregistration()


@kroutine("netio")
def WskDeregister(WskRegistration: WSK_REGISTRATION) -> WskStatus:
    """Start deregistering; `yield from WskDeregister(&reg)` waits (as the C call does) until
    every captured NPI is released and every socket of this client is closed."""
    k = current_kernel()
    client = _client_of(WskRegistration)
    if client is None:
        return WskStatus(STATUS_INVALID_PARAMETER)
    client.deregistering = True
    client.maybe_finish_deregistration()

    def wait() -> Generator[Any, Any, int]:
        yield KeWaitForSingleObject(client.deregistered, Executive, KernelMode, False, None)
        _forget(k, client)
        return STATUS_SUCCESS

    if client.quiescent:
        _forget(k, client)
        return WskStatus(STATUS_SUCCESS)
    return WskStatus(STATUS_PENDING, wait)


def _forget(k: Kernel, client: WskClient) -> None:
    state = nmr(k)
    if client in state.clients:
        state.clients.remove(client)
    if state.provider is not None:
        state.provider.detach_client(client)
    client.registration.ReservedRegistrationContext = None
    client.registration.ReservedRegistrationState = 0
