"""The lab: hosts (a kernel each, with its NIC, NDIS and tcpip), links and a learning switch.

    world = default_world(seed=1)       # winsrv 10.0.0.1/fd00::1, client 10.0.0.2/fd00::2, dns, httpbin
    world.host("client").transport      # the host's stack.tcpip.transport.Transport
    world.set_faults("client", FaultConfig(loss=0.02))
    world.run_until_idle()

Every host runs netio and afd.sys (the kernel half of Winsock and the WSK provider) from boot.
`default_world()` is the standard lab with its services running: kfs, echosrv (port 40007) and khttpd (port 80) on winsrv, with the user-mode
web server khttpd hands dynamic requests to on winsrv:8080; and the `dns` (10.0.0.53) and
`httpbin` (10.0.0.80, httpbin.org) hosts.  `default_world(services=False)` is the bare lab:
winsrv and client with tcpip, netio and afd only.

One scheduler and one event bus for the whole world; every host's randomness
(MACs, ISNs, address-space layout, link faults) derives from the world's seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Interface, IPv6Interface, ip_address
from typing import Any, Callable

from stack.kernel.events import EventBus
from stack.kernel.kernel import Kernel
from stack.kernel.ntstatus import NT_SUCCESS, status_name
from stack.kernel.scheduler import Scheduler
from stack.ndis import install_nic
from stack.ndis.constants import OID_TCP_OFFLOAD_PARAMETERS, NdisRequestSetInformation
from stack.ndis.oid import (NDIS_OFFLOAD_PARAMETERS, NDIS_OFFLOAD_PARAMETERS_LSOV2_DISABLED,
                            NDIS_OFFLOAD_PARAMETERS_LSOV2_ENABLED, NDIS_OFFLOAD_PARAMETERS_RSC_DISABLED,
                            NDIS_OFFLOAD_PARAMETERS_RSC_ENABLED, NDIS_OFFLOAD_PARAMETERS_TX_RX_DISABLED,
                            NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED, NDIS_OID_REQUEST)
from stack.ndis.protocol import NdisOidRequest
from stack.nic import Capture, EmulatedNic, FaultConfig, Link, NicOffloads, Switch
from stack.nic.itr import DEFAULT_SETTING as DEFAULT_ITR_SETTING
from stack.tcpip.driver import load_tcpip
from stack.tcpip.stack import TcpipStack
from stack.tcpip.tcp import TcpConfig
from stack.tcpip.transport import Transport
from stack.afd import load_afd
from stack.tdi.tdx import load_tdx

DEFAULT_PREFIX4 = 24
DEFAULT_PREFIX6 = 64
SERVICE_HOST_RING = 64  # NIC ring sizes of the lab's dns and httpbin hosts


class WorldError(RuntimeError):
    """A world operation that cannot be done (unknown host, duplicate name, boot failure)."""


@dataclass
class Host:
    name: str
    kernel: Kernel
    mac: bytes
    ipv4: IPv4Interface | None
    ipv6: IPv6Interface | None
    nic: EmulatedNic
    adapter: Any
    link: Link
    switch_port: Any
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def stack(self) -> TcpipStack:
        stack = self.kernel.extensions.get("tcpip")
        if stack is None:
            raise WorldError(f"tcpip is not loaded on {self.name}")
        return stack

    @property
    def transport(self) -> Transport:
        return self.stack.transport

    def set_offloads(self, *, lso: bool | None = None, rsc: bool | None = None,
                     checksum: bool | None = None, lso_max_size: int | None = None) -> None:
        """Switch the adapter's offloads the way Windows does (Set-NetAdapterLso/-Rsc/-Checksum...):
        OID_TCP_OFFLOAD_PARAMETERS down tcpip's binding, then the miniport's offload status
        indication tells tcpip.  Queued as a kernel event: it happens when the machine next runs.
        `lso_max_size` sets the adapter's LSOv2 MaxOffLoadSize (up to 256 KiB) first, so that the
        same indication reports it (ValueError when out of range)."""
        k = self.kernel
        if lso_max_size is not None:
            sized = replace(self.nic.offloads, lso_max_size=lso_max_size)  # validates it now
            k.scheduler.call_soon(k, self._set_max_offload_size, sized.lso_max_size, label="LSOv2 MaxOffLoadSize")
            if lso is None:
                lso = self.nic.offloads.lso
        params = NDIS_OFFLOAD_PARAMETERS()
        if checksum is not None:
            value = NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED if checksum else NDIS_OFFLOAD_PARAMETERS_TX_RX_DISABLED
            params.IPv4Checksum = params.TCPIPv4Checksum = params.UDPIPv4Checksum = value
            params.TCPIPv6Checksum = params.UDPIPv6Checksum = value
        if lso is not None:
            params.LsoV2IPv4 = params.LsoV2IPv6 = (NDIS_OFFLOAD_PARAMETERS_LSOV2_ENABLED if lso
                                                   else NDIS_OFFLOAD_PARAMETERS_LSOV2_DISABLED)
        if rsc is not None:
            params.RscIPv4 = params.RscIPv6 = (NDIS_OFFLOAD_PARAMETERS_RSC_ENABLED if rsc
                                               else NDIS_OFFLOAD_PARAMETERS_RSC_DISABLED)
        binding = next(i.binding for i in self.stack.interfaces if i.binding is not None)
        request = NDIS_OID_REQUEST(OID_TCP_OFFLOAD_PARAMETERS, NdisRequestSetInformation, params)
        k.scheduler.call_soon(k, NdisOidRequest, binding, request, label="OID_TCP_OFFLOAD_PARAMETERS")

    def _set_max_offload_size(self, size: int) -> None:
        """The adapter's LSOv2 MaxOffLoadSize changes (its offload status indication reports it)."""
        self.nic.offloads = replace(self.nic.offloads, lso_max_size=size)

    @property
    def address4(self):
        return self.ipv4.ip if self.ipv4 is not None else None

    @property
    def address6(self):
        return self.ipv6.ip if self.ipv6 is not None else None

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.ipv4} {self.ipv6}>"


class World:
    def __init__(self, seed: int = 1, *, memory_mb: int = 64) -> None:
        self.seed = seed
        self.memory_mb = memory_mb
        self.scheduler = Scheduler()
        self.bus = EventBus(clock=lambda: self.scheduler.now_ns)
        self.switch = Switch(self.scheduler, self.bus, name="sw0")
        self.hosts: dict[str, Host] = {}
        self.captures: list[Capture] = []
        self.dns: Any = None  # the lab DNS server (stack.usermode.dns.install), once there is one
        # host -> driver names loaded as auto-start services (start type SERVICE_AUTO_START)
        self.auto_start: dict[str, list[str]] = {}
        # what each new host's NIC ships with: Intel's "Interrupt Moderation Rate" (stack/nic/itr.py)
        self.interrupt_moderation_rate: str | int = DEFAULT_ITR_SETTING

    # -- building ----------------------------------------------------------------------------
    def mac_for(self, name: str) -> bytes:
        """A deterministic MAC for host `name` (Hyper-V's 00-15-5D prefix)."""
        rng = random.Random(f"{self.seed}:mac:{name}")
        return bytes((0x00, 0x15, 0x5D, rng.randrange(256), rng.randrange(256), rng.randrange(256)))

    def add_host(self, name: str, ipv4: str | None = None, ipv6: str | None = None, *,
                 offloads: NicOffloads | None = None, mtu: int = 1500, tcp_config: TcpConfig | None = None,
                 bandwidth_bps: int = 10_000_000_000, latency_ns: int = 20_000, queue_frames: int = 1024,
                 gateway4: str | None = None, gateway6: str | None = None, boot: bool = True,
                 rx_ring_size: int = 512, tx_ring_size: int = 512, interrupt_moderation_ns: int = 10_000,
                 interrupt_moderation_rate: str | int | None = None) -> Host:
        """Add a host on the switch: its kernel, NIC (via NDIS), and tcpip bound with these addresses.

        Addresses without a prefix length get /24 and /64."""
        if name in self.hosts:
            raise WorldError(f"host {name!r} already exists")
        if ipv4 is not None and "/" not in ipv4:
            ipv4 = f"{ipv4}/{DEFAULT_PREFIX4}"
        if ipv6 is not None and "/" not in ipv6:
            ipv6 = f"{ipv6}/{DEFAULT_PREFIX6}"
        kernel = Kernel(name, self.scheduler, self.bus, self.seed, memory_mb=self.memory_mb)
        mac = self.mac_for(name)
        # The miniport reports the speed of the link it is plugged into (a real one reports the
        # negotiated speed): OID_GEN_LINK_SPEED and the general attributes' Xmit/RcvLinkSpeed.
        nic, adapter = install_nic(kernel, mac, name=f"{name}-nic", mtu=mtu, offloads=offloads,
                                   link_speed_bps=bandwidth_bps, rx_ring_size=rx_ring_size, tx_ring_size=tx_ring_size,
                                   interrupt_moderation_ns=interrupt_moderation_ns, run=False)
        nic.set_interrupt_moderation_rate(self.interrupt_moderation_rate if interrupt_moderation_rate is None
                                          else interrupt_moderation_rate)
        port = self.switch.add_port(name)
        link = Link(self.scheduler, name=f"{name}-link", bandwidth_bps=bandwidth_bps, latency_ns=latency_ns,
                    queue_frames=queue_frames, rng=random.Random(f"{self.seed}:link:{name}"), bus=self.bus)
        link.connect(nic, port)
        for capture in self.captures:
            capture.attach_link(link)
        kernel.load_module("netio", "netio.sys", size=0x90000)  # the NMR: WskRegister & co.
        load_tcpip(kernel, tcp_config, interfaces={mac: {"ipv4": ipv4, "ipv6": ipv6, "gateway4": gateway4,
                                                        "gateway6": gateway6}})
        load_afd(kernel)  # the kernel half of Winsock and the WSK provider
        load_tdx(kernel)  # TDI beside WSK: \\Device\\Tcp, \\Device\\Udp ...
        host = Host(name, kernel, mac, IPv4Interface(ipv4) if ipv4 else None, IPv6Interface(ipv6) if ipv6 else None,
                    nic, adapter, link, port)
        self.hosts[name] = host
        if boot:
            self.boot()
        self._update_host_tables()
        if self.dns is not None and boot:
            self._join_dns(host)
        return host

    def _join_dns(self, host: Host) -> None:
        """A host added after the DNS server: in the zone, and resolving through it."""
        from stack.wsk.dns_client import configure_dns
        self.dns.zone.add(host.name, *[a for a in (host.address4, host.address6) if a is not None])
        configure_dns(host.kernel, [self.dns.host.address4])

    def boot(self, max_events: int = 1_000_000) -> None:
        """Run the scheduler until every host's tcpip is loaded and bound to its adapter."""
        def pending() -> bool:
            for host in self.hosts.values():
                stack = host.kernel.extensions.get("tcpip")
                if stack is None or not stack.interfaces:
                    return True
            return False

        self.scheduler.run_while(pending, max_events=max_events)
        if self.scheduler.halted is not None:
            info = self.scheduler.halted
            raise WorldError(f"bug check {info.code:#x} on {info.host} while booting: {info.detail[:400]}")
        if pending():
            raise WorldError("hosts did not finish booting (tcpip not bound)")

    def _update_host_tables(self) -> None:
        names: dict[str, list] = {}
        for host in self.hosts.values():
            names[host.name.lower()] = [a for a in (host.address4, host.address6) if a is not None]
        for host in self.hosts.values():
            stack = host.kernel.extensions.get("tcpip")
            if stack is not None:
                stack.transport.hosts.update(names)

    # -- services ------------------------------------------------------------------------------
    def load_driver(self, host: str, image: Any, *, auto_start: bool = False, max_events: int = 2_000_000) -> int:
        """Load a driver on `host` the way the service control manager does (IoLoadDriver:
        DriverEntry on a system thread) and run the lab until DriverEntry returned its status."""
        from stack.kernel.io import IoLoadDriver
        kernel = self.host(host).kernel
        statuses: list[int] = []
        IoLoadDriver(kernel, image, on_done=statuses.append)
        self.run_while(lambda: not statuses, max_events=max_events)
        self.check()
        if not statuses:
            raise WorldError(f"{image.name} did not finish loading on {host}")
        if not NT_SUCCESS(statuses[0]):
            raise WorldError(f"{image.name} failed to load on {host}: {status_name(statuses[0])}")
        if auto_start:
            self.auto_start.setdefault(host, []).append(image.name.lower())
        return statuses[0]

    def start_services(self, server: str = "winsrv") -> None:
        """The standard lab's services (see the module docstring), loaded in dependency order."""
        from stack.drivers.echosrv import DRIVER_IMAGE as ECHOSRV_IMAGE
        from stack.drivers.khttpd.driver import DRIVER_IMAGE as KHTTPD_IMAGE
        from stack.fs.kfs import DRIVER_IMAGE as KFS_IMAGE
        from stack.usermode import dns, httpbin
        from stack.usermode.socket import run_program
        from stack.usermode.webserver import WebServerStats, webserver

        # The two service hosts are small machines: short NIC rings make them quicker to boot.
        small = {"rx_ring_size": SERVICE_HOST_RING, "tx_ring_size": SERVICE_HOST_RING}
        if self.dns is None:
            if dns.DNS_HOST not in self.hosts:
                self.add_host(dns.DNS_HOST, dns.DNS_IPV4, dns.DNS_IPV6, **small)
            dns.install(self)
        if httpbin.HTTPBIN_HOST not in self.hosts:
            self.add_host(httpbin.HTTPBIN_HOST, httpbin.HTTPBIN_IPV4, httpbin.HTTPBIN_IPV6, **small)
            httpbin.install(self)
        for image in (KFS_IMAGE, ECHOSRV_IMAGE, KHTTPD_IMAGE):
            if image.name.lower() not in self.host(server).kernel.drivers:
                self.load_driver(server, image, auto_start=True)
        host = self.host(server)
        if "webserver" not in host.extras:
            stats = WebServerStats()
            host.extras["webserver_stats"] = stats
            host.extras["webserver"] = run_program(host.kernel, webserver, None, stats, None, name="webserver")
        self.run_until_idle(max_events=1_000_000)
        self.check()

    def set_processors(self, host: str, profile: str = "2003", processors: int = 1) -> Any:
        """Give `host` processors that spend time by `profile` ("zero" turns the model off)."""
        from stack.kernel.cpu import install
        return install(self.host(host).kernel, profile, processors)

    # -- access -------------------------------------------------------------------------------
    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise WorldError(f"no host named {name!r} (hosts: {', '.join(self.hosts)})") from None

    def host_by_address(self, address: str) -> Host:
        wanted = ip_address(address)
        for host in self.hosts.values():
            if wanted in (host.address4, host.address6):
                return host
        raise WorldError(f"no host has address {address}")

    @property
    def now_ns(self) -> int:
        return self.scheduler.now_ns

    # -- faults and captures ---------------------------------------------------------------------
    def set_faults(self, host: str, faults: FaultConfig, direction: int | None = None) -> None:
        """Faults on a host's link: direction 0 = host -> switch, 1 = switch -> host, None = both."""
        self.host(host).link.set_faults(faults, direction)

    def clear_faults(self) -> None:
        for host in self.hosts.values():
            host.link.set_faults(FaultConfig())

    def capture(self) -> Capture:
        """Start capturing every host link (frames as they enter each link)."""
        capture = Capture()
        for host in self.hosts.values():
            capture.attach_link(host.link)
        capture.start()
        self.captures.append(capture)
        return capture

    # -- running ----------------------------------------------------------------------------------
    def run_until_idle(self, max_events: int | None = None, max_time_ns: int | None = None) -> int:
        return self.scheduler.run_until_idle(max_events=max_events, max_time_ns=max_time_ns)

    def run_for(self, ns: int, max_events: int | None = None) -> int:
        return self.scheduler.run_for(ns, max_events=max_events)

    def run_while(self, condition: Callable[[], bool], max_events: int = 10_000_000,
                  max_time_ns: int | None = None) -> bool:
        """Run while `condition()` holds; True once it stops holding (False on idle/limits/crash)."""
        return self.scheduler.run_while(condition, max_events=max_events, max_time_ns=max_time_ns)

    def run_in(self, host: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` now as one event on `host`'s kernel (PASSIVE_LEVEL) and return its result."""
        kernel = self.host(host).kernel
        box: list[Any] = []
        ran: list[bool] = []

        def event() -> None:
            ran.append(True)
            box.append(fn(*args))

        self.scheduler.call_soon(kernel, event, label=f"run_in {host}")
        while not ran and self.scheduler.run_one():
            pass
        self.check()
        return box[0] if box else None

    def check(self) -> None:
        """Raise WorldError if a host bug-checked."""
        info = self.scheduler.halted
        if info is not None:
            raise WorldError(f"bug check {info.code:#x} on {info.host}: {info.detail[:2000]}")


def default_world(seed: int = 1, *, services: bool = True, offloads: NicOffloads | None = None,
                  tcp_config: TcpConfig | None = None, mtu: int = 1500, cpu_profile: str | None = None,
                  processors: int = 1, interrupt_moderation_rate: str | int = DEFAULT_ITR_SETTING) -> World:
    """The standard lab: `winsrv` (10.0.0.1, fd00::1) and `client` (10.0.0.2, fd00::2) on one switch,
    with the lab's services running (services=False: those two hosts with tcpip and AFD only).
    `mtu` sets both NICs (9000 for jumbo frames).  `cpu_profile` ("x64", "2003") gives winsrv
    `processors` processors that spend time once the lab has booted (stack.kernel.cpu); by
    default no host's code takes time.  `interrupt_moderation_rate` is every NIC's Intel "Interrupt
    Moderation Rate" (stack/nic/itr.py): Adaptive, as Intel's adapters ship, or "Off", a named setting,
    interrupts per second."""
    world = World(seed)
    world.interrupt_moderation_rate = interrupt_moderation_rate
    world.add_host("winsrv", "10.0.0.1/24", "fd00::1/64", offloads=offloads, tcp_config=tcp_config, mtu=mtu,
                   boot=False)
    world.add_host("client", "10.0.0.2/24", "fd00::2/64", offloads=offloads, tcp_config=tcp_config, mtu=mtu,
                   boot=False)
    world.boot()
    world._update_host_tables()
    if services:
        world.start_services()
    if cpu_profile is not None:
        world.set_processors("winsrv", cpu_profile, processors)
    return world
