"""A TAP bridge: the lab's switch gets a port whose far end is a TAP device in a
network namespace of its own, so the host's kernel TCP/IP exchanges real Ethernet
frames with the emulated stack and nothing leaves that namespace.

Linux only, as root.  The namespace is ``wskdbg-<pid>``; the TAP device is born
inside it (the opening thread briefly enters the namespace with setns(2)), gets
10.0.0.100/24 and fd00::64/64, and ``/etc/netns/<ns>/hosts`` names the lab's
hosts so ``ip netns exec <ns> ping winsrv`` works.  Teardown runs on detach, at
exit, on SIGTERM/SIGHUP, and - for a crash or SIGKILL - from a small watchdog
process that removes the namespace when this process is gone.  Stale namespaces
of dead processes are removed on start.

Three parts:

* `TapPort`: the world side, a FramePort cabled to a switch port through a Link
  (so loss and latency can be injected on it); inputs of kind ``frame`` enter
  the lab through it, frames leaving the lab wait in its outbox.
* `TapDevice`: the host side, the TAP file descriptor; reads frames (submitted
  to the hub) and writes the outbox (a full TAP queue drops, as a wire would).
* `TapNamespace`: creates, configures, enters (`exec`) and removes the namespace.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import errno
import fcntl
import heapq
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from stack.nic import Link
from stack.nic.link import FrameSink

from .realtime import BridgeError, BridgeHub
from .record import KIND_FRAME, BridgeInput

if TYPE_CHECKING:
    from stack.world import World

NS_PREFIX = "wskdbg-"
DEFAULT_IFNAME = "wsktap0"
DEFAULT_IPV4 = "10.0.0.100/24"
DEFAULT_IPV6 = "fd00::64/64"
DEFAULT_MAC = "02:00:5e:00:00:64"
MIN_FRAME = 60  # a real wire pads shorter frames; the TAP hands them over unpadded
MAX_FRAME = 65535
READS_PER_SERVICE = 128

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"
NETNS_ETC_DIR = "/etc/netns"


class TapUnavailable(BridgeError):
    """The TAP bridge cannot run here (not Linux, not root, no /dev/net/tun, no `ip`)."""


def tap_unavailable_reason() -> str | None:
    """Why a TAP bridge cannot be made on this machine, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "the TAP bridge needs Linux"
    if os.geteuid() != 0:
        return "the TAP bridge needs root (network namespaces and /dev/net/tun)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun on this machine"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    return None


# --------------------------------------------------------------------------------------------
# world side


@dataclass(slots=True)
class TapPortCounters:
    frames_in: int = 0  # from the host into the lab
    bytes_in: int = 0
    frames_out: int = 0  # from the lab towards the host (put in the outbox)
    bytes_out: int = 0
    padded: int = 0


class TapPort:
    """The lab side of the TAP: cabled to a switch port through `link`."""

    kinds = frozenset({KIND_FRAME})

    def __init__(self, world: "World", *, name: str = "tap", latency_ns: int = 20_000,
                 bandwidth_bps: int = 10_000_000_000, queue_frames: int = 1024) -> None:
        self.world = world
        self.name = name
        self._tx: FrameSink | None = None
        self.counters = TapPortCounters()
        self.outbox: list[tuple[int, int, bytes]] = []  # heap of (arrival time, seq, frame)
        self._out_seq = 0
        self.keep_outbox = True  # a replay has no device to write to: it only counts
        self.switch_port = world.switch.add_port(name)
        self.link = Link(world.scheduler, name=f"{name}-link", bandwidth_bps=bandwidth_bps, latency_ns=latency_ns,
                         queue_frames=queue_frames, rng=random.Random(f"{world.seed}:link:{name}"), bus=world.bus)
        self.link.connect(self, self.switch_port)  # ends[0]: TAP -> switch, ends[1]: switch -> TAP
        for capture in getattr(world, "captures", ()):
            capture.attach_link(self.link)

    # FramePort
    def attach(self, sink: FrameSink | None) -> None:
        self._tx = sink

    def deliver(self, frame: bytes, time_ns: int) -> None:
        """A frame leaves the lab towards the host; it is written once the clock reaches `time_ns`."""
        c = self.counters
        c.frames_out += 1
        c.bytes_out += len(frame)
        if not self.keep_outbox:
            return
        self._out_seq += 1
        heapq.heappush(self.outbox, (time_ns, self._out_seq, bytes(frame)))

    def due_frames(self, now_ns: int) -> list[bytes]:
        box = self.outbox
        out: list[bytes] = []
        while box and box[0][0] <= now_ns:
            out.append(heapq.heappop(box)[2])
        return out

    # WorldEndpoint
    def input_kernel(self, inp: BridgeInput) -> None:
        return None  # a frame on a cable belongs to no host

    def apply(self, inp: BridgeInput) -> str:
        frame = inp.data
        c = self.counters
        c.frames_in += 1
        c.bytes_in += len(frame)
        if self._tx is not None:
            self._tx.deliver(frame, self.world.scheduler.now_ns)
        return _frame_summary(frame)


def _frame_summary(frame: bytes) -> str:
    try:
        from stack.tcpip.wire import summarize_frame
        return summarize_frame(frame)
    except Exception:  # a malformed frame from outside is still carried; the stack counts it
        return "(unparsed frame)"


# --------------------------------------------------------------------------------------------
# host side


def pad_frame(frame: bytes) -> bytes:
    return frame if len(frame) >= MIN_FRAME else frame + bytes(MIN_FRAME - len(frame))


@dataclass(slots=True)
class TapDeviceCounters:
    read_frames: int = 0
    read_bytes: int = 0
    written_frames: int = 0
    written_bytes: int = 0
    write_drops: int = 0


class TapDevice:
    """The host side: the TAP file descriptor, read into the hub, written from the port's outbox."""

    def __init__(self, fd: int, port: TapPort) -> None:
        self.fd = fd
        self.port = port
        self.counters = TapDeviceCounters()
        self.hub: BridgeHub | None = None

    def start(self, hub: BridgeHub) -> None:
        self.hub = hub
        assert hub.selector is not None
        hub.selector.register(self.fd, 1, self._readable)  # EVENT_READ

    def _readable(self, _fileobj: Any, _mask: int) -> None:
        hub = self.hub
        if hub is None:
            return
        c = self.counters
        for _ in range(READS_PER_SERVICE):
            try:
                frame = os.read(self.fd, MAX_FRAME)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    return
                raise
            if not frame:
                return
            c.read_frames += 1
            c.read_bytes += len(frame)
            if len(frame) < MIN_FRAME:
                self.port.counters.padded += 1
            hub.submit(KIND_FRAME, data=pad_frame(frame))

    def service(self, time_ns: int) -> None:
        c = self.counters
        for frame in self.port.due_frames(time_ns):
            try:
                os.write(self.fd, frame)
            except OSError as exc:  # the TAP queue is full or the device is down: a lost frame
                if exc.errno not in (errno.EAGAIN, errno.ENOBUFS, errno.EIO, errno.EINVAL):
                    raise
                c.write_drops += 1
                continue
            c.written_frames += 1
            c.written_bytes += len(frame)

    def stop(self) -> None:
        hub = self.hub
        if hub is not None and hub.selector is not None:
            try:
                hub.selector.unregister(self.fd)
            except (KeyError, ValueError):
                pass
        self.hub = None


# --------------------------------------------------------------------------------------------
# the namespace


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise BridgeError(f"`{' '.join(argv)}` failed: {proc.stderr.strip() or proc.returncode}")
    return proc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_namespaces() -> list[str]:
    """Names of the wskdbg namespaces on this machine."""
    try:
        names = os.listdir(NETNS_RUN_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(NS_PREFIX))


def namespace_pid(name: str) -> int | None:
    suffix = name[len(NS_PREFIX):] if name.startswith(NS_PREFIX) else ""
    return int(suffix) if suffix.isdigit() else None


def remove_namespace(name: str) -> None:
    """Delete a namespace and its /etc/netns folder (missing ones are fine)."""
    if not name.startswith(NS_PREFIX) or "/" in name:
        raise BridgeError(f"refusing to remove namespace {name!r} (not a wskdbg namespace)")
    if os.path.exists(os.path.join(NETNS_RUN_DIR, name)):
        _run(["ip", "netns", "del", name], check=False)
    shutil.rmtree(os.path.join(NETNS_ETC_DIR, name), ignore_errors=True)


def cleanup_stale_namespaces() -> list[str]:
    """Remove wskdbg namespaces whose process is gone; returns their names."""
    removed = []
    for name in list_namespaces():
        pid = namespace_pid(name)
        if pid is not None and pid != os.getpid() and not _pid_alive(pid):
            remove_namespace(name)
            removed.append(name)
    return removed


def live_namespaces() -> list[str]:
    return [n for n in list_namespaces() if (pid := namespace_pid(n)) is not None and _pid_alive(pid)]


# Runs in its own session, blocks on a pipe from us; when we are gone it removes the namespace.
_WATCHDOG = r"""
import os, shutil, subprocess, sys
name = sys.argv[1]
try:
    while sys.stdin.buffer.read(4096):
        pass
except Exception:
    pass
if os.path.exists(os.path.join("/run/netns", name)):
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
shutil.rmtree(os.path.join("/etc/netns", name), ignore_errors=True)
"""


@dataclass(slots=True)
class TapSettings:
    ifname: str = DEFAULT_IFNAME
    ipv4: str = DEFAULT_IPV4
    ipv6: str = DEFAULT_IPV6
    mac: str = DEFAULT_MAC
    names: dict[str, list[str]] = field(default_factory=dict)  # host name -> addresses, for /etc/hosts


class TapNamespace:
    """A network namespace holding one TAP device whose frames this process carries."""

    def __init__(self, settings: TapSettings | None = None, *, name: str | None = None) -> None:
        reason = tap_unavailable_reason()
        if reason is not None:
            raise TapUnavailable(reason)
        self.settings = settings or TapSettings()
        self.name = name or f"{NS_PREFIX}{os.getpid()}"
        self.fd: int | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._old_handlers: dict[int, Any] = {}
        self.created = False

    # -- life -------------------------------------------------------------------------------
    def create(self) -> int:
        """Create the namespace and the TAP device inside it; returns the TAP's descriptor."""
        cleanup_stale_namespaces()
        if os.path.exists(os.path.join(NETNS_RUN_DIR, self.name)):
            remove_namespace(self.name)  # our own leftover (same pid reused)
        _run(["ip", "netns", "add", self.name])
        self.created = True
        self._start_watchdog()
        self._install_exit_handlers()
        try:
            self.fd = self._open_tap_inside()
            self._configure()
        except BaseException:
            self.destroy()
            raise
        return self.fd

    def _open_tap_inside(self) -> int:
        libc = _libc()
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        target = os.open(os.path.join(NETNS_RUN_DIR, self.name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise BridgeError(f"setns into {self.name} failed: {os.strerror(err)}")
            try:
                fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
                try:
                    ifr = struct.pack("16sH22x", self.settings.ifname.encode(), IFF_TAP | IFF_NO_PI)
                    fcntl.ioctl(fd, TUNSETIFF, ifr)
                except OSError:
                    os.close(fd)
                    raise
            finally:
                if libc.setns(own, CLONE_NEWNET) != 0:  # never keep running inside the namespace
                    err = ctypes.get_errno()
                    raise BridgeError(f"could not return from namespace {self.name}: {os.strerror(err)}")
        finally:
            os.close(own)
            os.close(target)
        return fd

    def _configure(self) -> None:
        s, ns, dev = self.settings, self.name, self.settings.ifname
        # Quiet IPv6 autoconfiguration (no router here) and duplicate address detection.
        _run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
              f"net.ipv6.conf.{dev}.accept_ra=0", f"net.ipv6.conf.{dev}.router_solicitations=0",
              f"net.ipv6.conf.{dev}.accept_dad=0", f"net.ipv6.conf.{dev}.dad_transmits=0"], check=False)
        _run(["ip", "-n", ns, "link", "set", "dev", dev, "address", s.mac])
        _run(["ip", "-n", ns, "addr", "add", s.ipv4, "dev", dev])
        _run(["ip", "-n", ns, "-6", "addr", "add", s.ipv6, "dev", dev, "nodad"])
        _run(["ip", "-n", ns, "link", "set", "dev", "lo", "up"])
        _run(["ip", "-n", ns, "link", "set", "dev", dev, "up"])
        etc = os.path.join(NETNS_ETC_DIR, ns)
        os.makedirs(etc, exist_ok=True)
        lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost"]
        for host, addrs in s.names.items():
            lines += [f"{a} {host}" for a in addrs]
        with open(os.path.join(etc, "hosts"), "w", encoding="ascii") as f:
            f.write("\n".join(lines) + "\n")

    def _start_watchdog(self) -> None:
        self._watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, self.name], stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True, close_fds=True)

    def _install_exit_handlers(self) -> None:
        atexit.register(self.destroy)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                old = signal.getsignal(sig)
                if old in (signal.SIG_DFL, None):
                    self._old_handlers[sig] = old
                    signal.signal(sig, _exit_on_signal)
            except ValueError:  # not the main thread: atexit and the watchdog still clean up
                pass

    def destroy(self) -> None:
        """Close the TAP and remove the namespace (safe to call twice)."""
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None
        if self.created:
            self.created = False
            remove_namespace(self.name)
        if self._watchdog is not None:
            try:
                if self._watchdog.stdin is not None:
                    self._watchdog.stdin.close()  # tells it we are done; it finds nothing left
                self._watchdog.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self._watchdog = None
        for sig, old in self._old_handlers.items():
            try:
                if signal.getsignal(sig) is _exit_on_signal:
                    signal.signal(sig, old)
            except ValueError:
                pass
        self._old_handlers.clear()
        try:
            atexit.unregister(self.destroy)
        except Exception:
            pass

    # -- use --------------------------------------------------------------------------------
    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        return subprocess.run(self.exec_argv(argv), **kwargs)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(self.exec_argv(argv), **kwargs)


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through finally blocks and atexit


@dataclass(slots=True)
class TapBridge:
    """A TAP port in the lab plus (live) its namespace and device."""

    port: TapPort
    namespace: TapNamespace | None = None
    device: TapDevice | None = None

    def close(self) -> None:
        if self.device is not None:
            self.device.stop()
        if self.namespace is not None:
            self.namespace.destroy()


def lab_names(world: "World") -> dict[str, list[str]]:
    return {name: [str(a) for a in (h.address4, h.address6) if a is not None] for name, h in world.hosts.items()}


def attach_tap(world: "World", hub: BridgeHub, *, settings: TapSettings | None = None,
               live: bool = True, latency_ns: int = 20_000) -> TapBridge:
    """Plug a TAP port into the lab's switch; with `live`, create the namespace and device too."""
    port = TapPort(world, latency_ns=latency_ns)
    hub.add_endpoint(port)
    bridge = TapBridge(port)
    if not live:
        port.keep_outbox = False
        return bridge
    settings = settings or TapSettings()
    if not settings.names:
        settings.names = lab_names(world)
    ns = TapNamespace(settings)
    fd = ns.create()
    bridge.namespace = ns
    bridge.device = TapDevice(fd, port)
    hub.add_host_side(bridge.device)
    return bridge
