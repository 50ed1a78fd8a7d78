"""Neighbour caches: ARP for IPv4 and Neighbor Discovery for IPv6, one shared state machine.

States follow RFC 4861 (which Windows also uses for ARP): INCOMPLETE while a
solicitation is outstanding (packets wait in a queue bounded in bytes), REACHABLE for
`reachable_ns` after a confirmation, STALE after that (still used, but the next
use starts DELAY), then PROBE with unicast solicitations, and the entry is
deleted when probes go unanswered.  All timers are scheduler events of the
host's kernel, one per entry.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .events import NeighborStateChanged

if TYPE_CHECKING:
    from stack.kernel.kernel import Kernel
    from stack.kernel.scheduler import ScheduledEvent

INCOMPLETE = "INCOMPLETE"
REACHABLE = "REACHABLE"
STALE = "STALE"
DELAY = "DELAY"
PROBE = "PROBE"

MS = 1_000_000
SECOND = 1_000_000_000
# Packets held per INCOMPLETE entry, in bytes.  Windows does not document its bound; Linux holds
# unres_qlen_bytes (212,992 bytes by default since 2011, when 3 packets proved too few for
# connection bursts), and FreeBSD raised its count for the same reason (D28068).  Bytes, not
# packets, so a burst of small SYNs fits (a thousand of them) while big frames still hit the bound.
QUEUE_LIMIT_BYTES = 212_992


@dataclass(slots=True)
class PendingPacket:
    """A packet waiting for its next hop's MAC: `send(mac)` or `fail(status)`."""

    send: Callable[[bytes], None]
    fail: Callable[[int], None]
    size: int = 0  # frame bytes, what the queue limit counts


@dataclass(slots=True)
class NeighborEntry:
    ip: bytes
    mac: bytes | None = None
    state: str = INCOMPLETE
    queue: deque[PendingPacket] = field(default_factory=deque)
    queued_bytes: int = 0
    probes_sent: int = 0
    confirmed_ns: int = 0
    timer: "ScheduledEvent | None" = None
    is_router: bool = False


class NeighborCache:
    """One cache per interface and family.  `solicit(ip, unicast_mac)` is supplied by the
    IP layer (ARP request or Neighbor Solicitation; `unicast_mac` None = broadcast/multicast)."""

    def __init__(self, kernel: "Kernel", family: int, solicit: Callable[[bytes, bytes | None], None],
                 on_unreachable: Callable[[int], None] | None = None, *,
                 reachable_ns: int = 30 * SECOND, retrans_ns: int = 1 * SECOND, max_multicast: int = 3,
                 max_unicast: int = 3, delay_ns: int = 5 * SECOND,
                 queue_limit_bytes: int = QUEUE_LIMIT_BYTES) -> None:
        self.kernel = kernel
        self.family = family
        self.solicit = solicit
        self.entries: dict[bytes, NeighborEntry] = {}
        self.reachable_ns = reachable_ns
        self.retrans_ns = retrans_ns
        self.max_multicast = max_multicast
        self.max_unicast = max_unicast
        self.delay_ns = delay_ns
        self.queue_limit_bytes = queue_limit_bytes
        self.on_unreachable = on_unreachable
        self.resolutions = 0
        self.failures = 0
        self.queue_drops = 0

    # -- sending ------------------------------------------------------------------------
    def resolve(self, ip: bytes, packet: PendingPacket) -> None:
        """Send `packet` to `ip` now if its MAC is known, else queue it and solicit."""
        entry = self.entries.get(ip)
        if entry is not None and entry.mac is not None:
            if entry.state == REACHABLE and self.kernel.now_ns - entry.confirmed_ns > self.reachable_ns:
                self._set(entry, STALE)
            if entry.state == STALE:
                self._set(entry, DELAY)
                self._arm(entry, self.delay_ns)
            packet.send(entry.mac)
            return
        if entry is None:
            entry = NeighborEntry(ip)
            self.entries[ip] = entry
            self.resolutions += 1
            self._publish(entry, "NONE", INCOMPLETE)
            entry.queue.append(packet)
            entry.queued_bytes = packet.size
            entry.probes_sent = 1
            self._arm(entry, self.retrans_ns)
            self.solicit(ip, None)
            return
        entry.queue.append(packet)
        entry.queued_bytes += packet.size
        while entry.queued_bytes > self.queue_limit_bytes and len(entry.queue) > 1:
            self.queue_drops += 1
            old = entry.queue.popleft()  # RFC 4861 7.2.2: the oldest packet goes
            entry.queued_bytes -= old.size
            old.fail(_STATUS_INSUFFICIENT_RESOURCES)

    def lookup(self, ip: bytes) -> bytes | None:
        entry = self.entries.get(ip)
        return entry.mac if entry is not None else None

    # -- receiving ----------------------------------------------------------------------
    def confirm(self, ip: bytes, mac: bytes, *, solicited: bool = True, override: bool = True,
                create: bool = True) -> None:
        """A reply/advertisement (or a request naming its sender) told us `ip` is at `mac`.

        `solicited` confirms reachability; an unsolicited update marks the entry STALE
        (RFC 4861 7.2.5)."""
        entry = self.entries.get(ip)
        if entry is None:
            if not create:
                return
            entry = NeighborEntry(ip)
            self.entries[ip] = entry
            self._publish(entry, "NONE", INCOMPLETE)
        if entry.mac is not None and entry.mac != mac and not override:
            if entry.state == REACHABLE:
                self._set(entry, STALE)
            return
        entry.mac = mac
        if solicited:
            entry.confirmed_ns = self.kernel.now_ns
            entry.probes_sent = 0
            self._set(entry, REACHABLE)
            self._cancel(entry)
        elif entry.state == INCOMPLETE or entry.mac != mac:
            self._set(entry, STALE)
            self._cancel(entry)
        if entry.queue:
            queue, entry.queue = entry.queue, deque()
            entry.queued_bytes = 0
            for packet in queue:
                packet.send(mac)

    def flush(self) -> None:
        for entry in list(self.entries.values()):
            self._delete(entry, _STATUS_HOST_UNREACHABLE)

    # -- timers -------------------------------------------------------------------------
    def _arm(self, entry: NeighborEntry, delay_ns: int) -> None:
        self._cancel(entry)
        entry.timer = self.kernel.call_later(delay_ns, self._timer, entry, label="neighbor timer")

    def _cancel(self, entry: NeighborEntry) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None

    def _timer(self, entry: NeighborEntry) -> None:
        entry.timer = None
        if self.entries.get(entry.ip) is not entry:
            return
        if entry.state == INCOMPLETE:
            if entry.probes_sent >= self.max_multicast:
                self.failures += 1
                self._delete(entry, _STATUS_HOST_UNREACHABLE)
                return
            entry.probes_sent += 1
            self._arm(entry, self.retrans_ns)
            self.solicit(entry.ip, None)
        elif entry.state == DELAY:
            self._set(entry, PROBE)
            entry.probes_sent = 1
            self._arm(entry, self.retrans_ns)
            self.solicit(entry.ip, entry.mac)
        elif entry.state == PROBE:
            if entry.probes_sent >= self.max_unicast:
                self.failures += 1
                self._delete(entry, _STATUS_HOST_UNREACHABLE)
                return
            entry.probes_sent += 1
            self._arm(entry, self.retrans_ns)
            self.solicit(entry.ip, entry.mac)

    def _delete(self, entry: NeighborEntry, status: int) -> None:
        self._cancel(entry)
        self.entries.pop(entry.ip, None)
        self._publish(entry, entry.state, "DELETED")
        queue, entry.queue = entry.queue, deque()
        entry.queued_bytes = 0
        for packet in queue:
            packet.fail(status)

    def _set(self, entry: NeighborEntry, state: str) -> None:
        old = entry.state
        if old == state:
            return
        entry.state = state
        self._publish(entry, old, state)

    def _publish(self, entry: NeighborEntry, old: str, new: str) -> None:
        k = self.kernel
        if k.bus.subscribers:
            k.bus.publish(NeighborStateChanged(host=k.name, depth=len(k.frames), address=_ip_text(entry.ip),
                                               mac=_mac_text(entry.mac), old=old, new=new))

    def table(self) -> list[dict[str, Any]]:
        """Rows for `arp -a` / `netsh interface ipv6 show neighbors`."""
        return [{"address": _ip_text(e.ip), "mac": _mac_text(e.mac), "state": e.state, "queued": len(e.queue)}
                for e in sorted(self.entries.values(), key=lambda e: e.ip)]


def _ip_text(ip: bytes) -> str:
    from ipaddress import ip_address
    return str(ip_address(ip))


def _mac_text(mac: bytes | None) -> str:
    return "-".join(f"{b:02x}" for b in mac) if mac else "00-00-00-00-00-00"


_STATUS_HOST_UNREACHABLE = 0xC000023D
_STATUS_INSUFFICIENT_RESOURCES = 0xC000009A
