"""khttpd's configuration and state: the Parameters key's values (KhttpdConfig), the counters
(KhttpdStats), the driver's globals, a connection's block and a send's context, pool tags, WPP,
and the small helpers every part uses (the Date header's clock, the access log, nonpaged MDLs)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from stack.drivers.khttpd.accesslog import AccessLog, AccessLogEntry
from stack.drivers.khttpd.http import HttpServerConnection
from stack.drivers.khttpd.accesslog import LAB_EPOCH_UNIX
from stack.drivers.khttpd.http import http_date
from stack.fs.kfs import VOLUME_DEVICE_NAME
from stack.kernel import (WPP_DEFINE_CONTROL_GUID, ExAllocatePoolWithTag, ExFreePoolWithTag, IoAllocateMdl,
                          IoGetDeviceObjectPointer, Mdl, MmBuildMdlForNonPagedPool, NonPagedPoolNx, current_kernel)
from stack.kernel.io import DeviceObject, DriverObject
from stack.kernel.ke import KEVENT, NotificationEvent
from stack.kernel.lookaside import (LOOKASIDE_LIST_EX, ExAllocateFromLookasideListEx, ExDeleteLookasideListEx,
                                    ExFreeToLookasideListEx, ExInitializeLookasideListEx)


KHTTPD_TAG = "Khtp"  # globals, listen context


CONNECTION_TAG = "Khtc"


BUFFER_TAG = "Khtb"  # receive buffers


HEADER_TAG = "Khth"  # response header buffers


BODY_TAG = "Khtd"  # copy-mode body buffers and relayed responses


SEND_TAG = "Khts"  # per-send contexts


POOL_TAGS = (KHTTPD_TAG, CONNECTION_TAG, BUFFER_TAG, HEADER_TAG, BODY_TAG, SEND_TAG)


HEADER_BUFFER_SIZE = 1024
CONNECTION_BLOCK_SIZE = 0x100
SEND_CONTEXT_SIZE = 0x80
GLOBALS_BLOCK_SIZE = 0x200

# The globals block's LOOKASIDE_LIST_EXs (0x60 bytes each): offset -> the list's field in KhttpdGlobals.
# Every connection's fixed-size blocks come from them, so a connection after the first few reuses the
# blocks of the connections before it instead of going to the pool (`!lookaside -all` shows them).
LOOKASIDE_OFFSETS = {"connection_lookaside": 0x80, "receive_lookaside": 0xE0, "header_lookaside": 0x140,
                     "send_lookaside": 0x1A0}


SERVICE_KEY = "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\khttpd"


# WPP_DEFINE_CONTROL_GUID(khttpd, (6a4e38d4,5b0d,4a6e,9c83,4b2f3f4d7a10), TRCERROR TRCINFO TRCREQUEST TRCCONN TRCFS)
WPP_PROVIDER = WPP_DEFINE_CONTROL_GUID("khttpd", "(6a4e38d4,5b0d,4a6e,9c83,4b2f3f4d7a10)",
                                       ("TRCERROR", "TRCINFO", "TRCREQUEST", "TRCCONN", "TRCFS"))


# Relay (socket to socket), Redirect (307), Queue (kernel request queue), Accept (afd moves the
# connection, its request unread, into the user-mode server's accept queue: handover.py)
HAND_OVER_METHODS = ("Relay", "Redirect", "Queue", "Accept")


@dataclass(slots=True)
class KhttpdConfig:
    Port: int = 80
    CopyMode: bool = False
    MaxConnections: int = 64
    BackendPort: int = 8080
    BackendAddress: str | None = None  # None: the address the client connected to (winsrv itself)
    ReceiveBufferSize: int = 4096
    Transport: str = "WSK"  # or "TDI"
    ConditionalAccept: bool = False  # WSK: decide at the SYN (syn_inspect.py): reject per-client excess, pend when full
    HeaderTimeoutMs: int = 10_000  # a request head must be complete this long after we start waiting (0: none)
    MaxConnectionsPerClient: int = 16  # per remote address; more are answered 503
    ResponseCache: int = 0  # bytes of locked file pages to keep for hits served at DISPATCH_LEVEL (receive events)
    SendAndDisconnect: bool = True  # the last response: WskDisconnect with data / TDI_SEND_AND_DISCONNECT
    HandOver: str = "Relay"  # dynamic requests: one of HAND_OVER_METHODS
    OpenFileCache: int = 64  # static files kept open between requests (filecache.py); 0: open and close each time
    OpenFileCacheTtlMs: int = 30_000  # an open file nobody asked for this long is closed (IIS's ObjectCacheTTL)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> "KhttpdConfig":
        config = cls()
        aliases = {"copy_mode": "CopyMode", "port": "Port", "max_connections": "MaxConnections",
                   "backend_port": "BackendPort", "backend_address": "BackendAddress",
                   "receive_buffer_size": "ReceiveBufferSize", "transport": "Transport",
                   "header_timeout_ms": "HeaderTimeoutMs", "max_connections_per_client": "MaxConnectionsPerClient",
                   "response_cache": "ResponseCache", "send_and_disconnect": "SendAndDisconnect",
                   "hand_over": "HandOver", "conditional_accept": "ConditionalAccept",
                   "open_file_cache": "OpenFileCache", "open_file_cache_ttl_ms": "OpenFileCacheTtlMs"}
        for name, value in values.items():
            attr = aliases.get(name, name)
            if not hasattr(config, attr):
                raise ValueError(f"khttpd has no parameter {name!r}")
            setattr(config, attr, value)
        config.CopyMode = bool(config.CopyMode)
        config.Transport = str(config.Transport).upper()
        if config.Transport not in ("WSK", "TDI"):
            raise ValueError(f"Transport must be WSK or TDI, not {config.Transport!r}")
        config.HandOver = str(config.HandOver).capitalize()
        if config.HandOver not in HAND_OVER_METHODS:
            raise ValueError(f"HandOver must be one of {', '.join(HAND_OVER_METHODS)}, not {config.HandOver!r}")
        config.ConditionalAccept = bool(int(config.ConditionalAccept))
        if config.ConditionalAccept and config.Transport != "WSK":
            raise ValueError("ConditionalAccept needs Transport=WSK (SO_CONDITIONAL_ACCEPT, WskInspectEvent)")
        return config

    @property
    def event_driven(self) -> bool:
        """Connections live on receive events, with no worker thread: the response cache answers hits
        inside them, and the accept hand-over reads requests there without taking them."""
        return int(self.ResponseCache) > 0 or self.HandOver == "Accept"


@dataclass(slots=True)
class KhttpdStats:
    connections_accepted: int = 0
    connections_active: int = 0
    connections_refused: int = 0  # answered 503
    requests: int = 0
    static_zero_copy: int = 0
    static_copied: int = 0
    head_requests: int = 0
    dynamic_relayed: int = 0
    dynamic_redirected: int = 0
    dynamic_handed_over: int = 0  # HandOver=Accept: connections given to the user-mode server's accept queue
    hand_over_fallbacks: int = 0  # HandOver=Accept: dynamic requests relayed instead (see handover.py)
    errors: int = 0
    bytes_sent: int = 0
    header_timeouts: int = 0  # connections reset because a request head did not arrive in time
    refused_per_client: int = 0  # of connections_refused: over MaxConnectionsPerClient
    inspect_rejected: int = 0  # ConditionalAccept: SYNs answered with a RST (client over its limit)
    inspect_pended: int = 0  # ConditionalAccept: SYNs held unanswered until a slot freed


class KhttpdConnections:
    """The driver's live connections, in the order they arrived, with a count per client.

    A list would make every close a scan (`remove`) and every accept a scan (how many does this
    client have?): O(n) per connection, which 10,000 connections turn into a crawl.  Here both
    are O(1); iteration still gives arrival order."""

    __slots__ = ("_by_id", "_per_client")

    def __init__(self) -> None:
        self._by_id: dict[int, KhttpdConnection] = {}
        self._per_client: dict[str, int] = {}  # remote -> connections within the limits

    def append(self, connection: "KhttpdConnection") -> None:
        self._by_id[id(connection)] = connection
        if not connection.over_limit:
            self._per_client[connection.remote] = self._per_client.get(connection.remote, 0) + 1

    def remove(self, connection: "KhttpdConnection") -> None:
        del self._by_id[id(connection)]
        if not connection.over_limit:
            left = self._per_client[connection.remote] - 1
            if left:
                self._per_client[connection.remote] = left
            else:
                del self._per_client[connection.remote]

    def from_client(self, remote: str) -> int:
        """Connections from `remote` that were let in (not answered 503 for being over a limit)."""
        return self._per_client.get(remote, 0)

    def __contains__(self, connection: object) -> bool:
        return id(connection) in self._by_id and self._by_id[id(connection)] is connection

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __bool__(self) -> bool:
        return bool(self._by_id)


@dataclass(slots=True, eq=False)
class KhttpdGlobals:
    """What the C driver keeps in static variables (reachable for the debugger)."""

    address: int
    driver: DriverObject
    config: KhttpdConfig
    device: DeviceObject | None = None
    registration: Any = None
    provider_npi: Any = None
    listen_socket: Any = None
    access_log: AccessLog = field(default_factory=AccessLog)
    stats: KhttpdStats = field(default_factory=KhttpdStats)
    connections: KhttpdConnections = field(default_factory=KhttpdConnections)
    tdi_listen: list[int] = field(default_factory=list)  # Transport=TDI: the listening socket handles
    cache: Any = None  # KhttpdResponseCache when ResponseCache > 0
    open_files: Any = None  # KhttpdOpenFileCache when OpenFileCache > 0
    request_queue: Any = None  # HandOver=Queue: the kernel request queue (queue.py)
    inspect_waiting: deque = field(default_factory=deque)  # ConditionalAccept: pended SYNs' WSK_INSPECT_ID keys
    inspect_admitting: int = 0  # ConditionalAccept: accepted at the SYN, not yet at KhttpdAcceptEvent
    stopping: bool = False
    drained: KEVENT = field(default_factory=lambda: KEVENT(NotificationEvent, True))
    connection_lookaside: LOOKASIDE_LIST_EX = field(default_factory=LOOKASIDE_LIST_EX)  # Khtc blocks
    receive_lookaside: LOOKASIDE_LIST_EX = field(default_factory=LOOKASIDE_LIST_EX)  # Khtb receive buffers
    header_lookaside: LOOKASIDE_LIST_EX = field(default_factory=LOOKASIDE_LIST_EX)  # Khth header buffers
    send_lookaside: LOOKASIDE_LIST_EX = field(default_factory=LOOKASIDE_LIST_EX)  # Khts send contexts


@dataclass(slots=True)
class KhttpdAsyncContext:
    """KSOCKET's pattern: one IRP reused for every call, and an event its completion sets."""

    Irp: Any
    CompletionEvent: KEVENT


@dataclass(slots=True, eq=False)
class KhttpdConnection:
    address: int
    globals: KhttpdGlobals
    Socket: Any
    remote: str
    local: str  # the address the client connected to (winsrv's own): where the user-mode server is
    http: HttpServerConnection
    over_limit: bool
    recv: KhttpdAsyncContext | None = None
    send: KhttpdAsyncContext | None = None
    recv_buffer: int = 0
    recv_mdl: Mdl | None = None
    header_buffer: int = 0
    work_item: Any = None
    requests: int = 0
    tdi_fd: int = 0  # Transport=TDI: the connection's socket handle in the TDI sockets library
    header_deadline_ns: int = 0  # when the request head being read must be complete (0: not waiting)
    # ResponseCache (cached.py): an event-driven connection, no worker thread
    event_driven: bool = False
    busy: bool = False  # a response is being produced
    closing: bool = False
    peer_closed: bool = False
    send_irp: Any = None
    cached_send: Any = None  # (header MDL, cache entry, length) of the cached send in flight
    disconnected: bool = False  # the last response went out with send-and-disconnect (FIN already queued)
    handing_over: bool = False  # HandOver=Accept: a request was left unread for the user-mode server
    hand_over_failed: bool = False  # ... and afd could not move it: relay from now on
    hand_over_deferred: Any = None  # the dynamic Request left unread until the response in flight is done


@dataclass(slots=True, eq=False)
class KhttpdSendContext:
    """Everything one response's WskSend must give back when it completes."""

    address: int
    connection: KhttpdConnection
    event: KEVENT
    header_mdl: Mdl | None = None
    cache_mdl: Mdl | None = None  # IRP_MN_MDL chain, returned with IRP_MN_COMPLETE_MDL
    body_mdl: Mdl | None = None  # copy mode / relay: our own nonpaged body buffer
    body_buffer: int = 0
    file_object: Any = None


def khttpd_globals(kernel: Any) -> KhttpdGlobals | None:
    """The loaded driver's state on `kernel` (access log, stats, connections), for the debugger."""
    drv = kernel.drivers.get("khttpd")
    return drv.extension.get("khttpd") if drv is not None else None


def _now_s() -> float:
    return current_kernel().now_ns / 1e9


REALTIME_EPOCH_KEY = "realtime.epoch_unix"  # set by the bridge when the lab runs in real time


def _date_epoch() -> int:
    """Date: the real date when the lab is bridged to real time (the bridge records the epoch, so a
    replay prints the same), virtual time from the lab's fixed epoch otherwise."""
    return int(current_kernel().extensions.get(REALTIME_EPOCH_KEY, LAB_EPOCH_UNIX))


def _http_now() -> str:
    """The Date header's value now."""
    return http_date(_now_s(), _date_epoch())


def _nonpaged_mdl(size: int, tag: str) -> tuple[int, Mdl | None]:
    buffer = ExAllocatePoolWithTag(NonPagedPoolNx, size, tag)
    if not buffer:
        return 0, None
    mdl = IoAllocateMdl(buffer, size)
    if mdl is None:
        ExFreePoolWithTag(buffer, tag)
        return 0, None
    MmBuildMdlForNonPagedPool(mdl)
    return buffer, mdl


def KhttpdInitializeLookasideLists(g: KhttpdGlobals) -> None:
    """ExInitializeLookasideListEx for each kind of per-connection block, in the globals block."""
    sizes = {"connection_lookaside": (CONNECTION_BLOCK_SIZE, CONNECTION_TAG),
             "receive_lookaside": (g.config.ReceiveBufferSize, BUFFER_TAG),
             "header_lookaside": (HEADER_BUFFER_SIZE, HEADER_TAG), "send_lookaside": (SEND_CONTEXT_SIZE, SEND_TAG)}
    for name, offset in LOOKASIDE_OFFSETS.items():
        size, tag = sizes[name]
        lookaside: LOOKASIDE_LIST_EX = getattr(g, name)
        lookaside.address = g.address + offset  # the LOOKASIDE_LIST_EX field of the globals block
        ExInitializeLookasideListEx(lookaside, None, None, NonPagedPoolNx, 0, size, tag, 0)


def KhttpdDeleteLookasideLists(g: KhttpdGlobals) -> None:
    for name in LOOKASIDE_OFFSETS:
        ExDeleteLookasideListEx(getattr(g, name))


def _lookaside_mdl(lookaside: LOOKASIDE_LIST_EX) -> tuple[int, Mdl | None]:
    """An entry of `lookaside` described by a fresh MDL (as `_nonpaged_mdl`)."""
    buffer = ExAllocateFromLookasideListEx(lookaside)
    if not buffer:
        return 0, None
    mdl = IoAllocateMdl(buffer, lookaside.size)
    if mdl is None:
        ExFreeToLookasideListEx(lookaside, buffer)
        return 0, None
    MmBuildMdlForNonPagedPool(mdl)
    return buffer, mdl


def free_send_context(send: KhttpdSendContext) -> None:
    """The send context's block back to the send lookaside list."""
    ExFreeToLookasideListEx(send.connection.globals.send_lookaside, send.address)


def _fs_name(fs_path: str) -> str:
    return "\\" + fs_path.replace("/", "\\")


def _docroot_lookup(fs_path: str) -> bool:
    """Does the volume have this file?  Asked by the HTTP core (404 before any IRP)."""
    device = IoGetDeviceObjectPointer(VOLUME_DEVICE_NAME)
    if device is None:
        return False
    sizes = getattr(device.extension, "sizes", {})
    return fs_path in sizes


def _log(connection: KhttpdConnection, method: str, target: bytes, version: str, status: int,
         body_bytes: int) -> None:
    connection.globals.access_log.log(AccessLogEntry(connection.remote, _now_s(), method, target, version, status,
                                                     body_bytes))
