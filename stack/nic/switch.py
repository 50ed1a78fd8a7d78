"""A learning Ethernet switch joining NICs through links.

Frames reach a port at their arrival time (a hostless scheduler event), the
switch learns the source MAC on that port, then forwards to the port that
learned the destination, or floods every other port for broadcast,
multicast and unknown destinations.  Table entries age out.  The switch is
not a host: its drops are published on the bus directly with its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from stack.kernel.events import EventBus
from stack.kernel.scheduler import NS_PER_S, Scheduler

from .events import FrameDropped
from .link import FrameSink
from .passthrough import BLOCK_CAPTURE, BLOCK_FLOOD, BLOCK_SINK

Tap = Callable[[bytes, int], None]


@dataclass(slots=True)
class SwitchPortCounters:
    rx_frames: int = 0
    rx_bytes: int = 0
    tx_frames: int = 0
    tx_bytes: int = 0
    flooded: int = 0  # frames this port sent because the switch flooded them
    filtered: int = 0  # frames received whose destination sits on this same port
    runts: int = 0
    unplugged: int = 0  # frames to send while nothing is attached


@dataclass(slots=True)
class MacEntry:
    port: "SwitchPort"
    last_seen_ns: int


class SwitchPort:
    """One switch port: a FrameSink for frames coming in, and a transmitter into `sink`."""

    def __init__(self, switch: "Switch", name: str, index: int) -> None:
        self.switch = switch
        self.name = name
        self.index = index
        self.sink: FrameSink | None = None
        self.counters = SwitchPortCounters()
        self.taps: list[Tap] = []

    def attach(self, sink: FrameSink | None) -> None:
        self.sink = sink

    def deliver(self, frame: bytes, time_ns: int) -> None:
        switch = self.switch
        switch.scheduler.call_at(time_ns, None, switch.receive, self, frame, label="switch")

    def send(self, frame: bytes, now_ns: int, flooded: bool) -> None:
        c = self.counters
        if self.sink is None:
            c.unplugged += 1
            return
        c.tx_frames += 1
        c.tx_bytes += len(frame)
        if flooded:
            c.flooded += 1
        if self.taps:
            for tap in self.taps:
                tap(frame, now_ns)
        self.sink.deliver(frame, now_ns)

    # -- paravirtual pass-through (passthrough.py) ------------------------------------
    def passthrough_blocker(self, unit) -> str | None:
        """Ingress side: may a large send arriving on this port cross the switch uncut?"""
        if self.taps:
            return BLOCK_CAPTURE
        out = self.switch.peek(unit.dst)
        if out is None or out is self:
            return BLOCK_FLOOD
        if out.taps:
            return BLOCK_CAPTURE
        check = getattr(out.sink, "passthrough_blocker", None)
        if check is None:
            return BLOCK_SINK
        return check(unit)

    def deliver_large(self, unit, lengths: list[int], times: list[int]) -> None:
        """The unit's first segment reaches the port at times[0]: the switch takes the unit in one event."""
        switch = self.switch
        switch.scheduler.call_at(times[0], None, switch.receive_large, self, unit, lengths, times, label="switch")

    def send_large(self, unit, lengths: list[int], times: list[int]) -> None:
        c = self.counters
        sink = self.sink
        if sink is None:
            c.unplugged += len(lengths)
            return
        if self.taps or not hasattr(sink, "deliver_large"):  # someone looks here now: real frames
            for i, t in enumerate(times):
                self.send(unit.frame(i, True), t, False)
            return
        c.tx_frames += len(lengths)
        c.tx_bytes += sum(lengths)
        sink.deliver_large(unit, lengths, times)

    def __repr__(self) -> str:
        return f"<SwitchPort {self.switch.name}/{self.name}>"


class Switch:
    def __init__(self, scheduler: Scheduler, bus: EventBus | None = None, *, name: str = "sw0",
                 aging_ns: int = 300 * NS_PER_S, forwarding_delay_ns: int = 0) -> None:
        self.scheduler = scheduler
        self.bus = bus
        self.name = name
        self.aging_ns = aging_ns
        self.forwarding_delay_ns = forwarding_delay_ns
        self.ports: list[SwitchPort] = []
        self.mac_table: dict[bytes, MacEntry] = {}
        self.flooded_frames = 0
        self.forwarded_frames = 0

    def add_port(self, name: str | None = None) -> SwitchPort:
        port = SwitchPort(self, name or f"port{len(self.ports)}", len(self.ports))
        self.ports.append(port)
        return port

    def lookup(self, mac: bytes) -> SwitchPort | None:
        """The port a MAC was learned on, if the entry has not aged out."""
        entry = self.mac_table.get(mac)
        if entry is None:
            return None
        if self.scheduler.now_ns - entry.last_seen_ns > self.aging_ns:
            del self.mac_table[mac]
            return None
        return entry.port

    def peek(self, mac: bytes) -> SwitchPort | None:
        """lookup() without ageing the entry out (the sender asks ahead of the frame's arrival)."""
        entry = self.mac_table.get(mac)
        if entry is None or self.scheduler.now_ns - entry.last_seen_ns > self.aging_ns:
            return None
        return entry.port

    def receive_large(self, port: SwitchPort, unit, lengths: list[int], times: list[int]) -> None:
        """A passed-through large send enters on `port` (one event for all its segments).

        Learning and forwarding are what its frames would have done; if the
        path changed since the sender looked (a tap, an unknown destination),
        the segments become real frames, each received at its own time."""
        out = self.lookup(unit.dst)
        delay = self.forwarding_delay_ns
        fits = getattr(out.sink, "fits", None) if out is not None else None
        if (port.taps or out is None or out is port or out.taps
                or (fits is not None and not fits(lengths, [t + delay for t in times]))):
            for i, t in enumerate(times):
                frame = unit.frame(i, True)
                if i == 0:
                    self.receive(port, frame)
                else:
                    port.deliver(frame, t)
            return
        c = port.counters
        count = len(lengths)
        c.rx_frames += count
        c.rx_bytes += sum(lengths)
        src = unit.data[6:12]
        if not src[0] & 1:
            entry = self.mac_table.get(src)
            if entry is None:
                self.mac_table[src] = MacEntry(port, times[-1])
            else:
                entry.port = port
                entry.last_seen_ns = times[-1]  # where the last segment's frame leaves it
        self.forwarded_frames += count
        out.send_large(unit, lengths, [t + delay for t in times] if delay else times)

    def receive(self, port: SwitchPort, frame: bytes) -> None:
        """A frame fully arrived on `port` (runs as its own event, at arrival time)."""
        now = self.scheduler.now_ns
        c = port.counters
        n = len(frame)
        c.rx_frames += 1
        c.rx_bytes += n
        if port.taps:
            for tap in port.taps:
                tap(frame, now)
        if n < 14:
            c.runts += 1
            self._dropped(port, "runt", n)
            return
        table = self.mac_table
        src = frame[6:12]
        if not src[0] & 1:  # never learn a group address
            entry = table.get(src)
            if entry is None:
                table[src] = MacEntry(port, now)
            else:
                entry.port = port
                entry.last_seen_ns = now
        out = None
        if not frame[0] & 1:
            # lookup(), inlined: this runs for every frame
            dst = frame[:6]
            entry = table.get(dst)
            if entry is not None:
                if now - entry.last_seen_ns > self.aging_ns:
                    del table[dst]
                else:
                    out = entry.port
        when = now + self.forwarding_delay_ns
        if out is None:
            self.flooded_frames += 1
            for p in self.ports:
                if p is not port:
                    p.send(frame, when, True)
            return
        if out is port:
            c.filtered += 1
            return
        self.forwarded_frames += 1
        out.send(frame, when, False)

    def _dropped(self, port: SwitchPort, reason: str, length: int) -> None:
        bus = self.bus
        if bus is not None and bus.subscribers:
            bus.publish(FrameDropped(host=self.name, layer="switch", reason=reason, where=port.name, length=length))

    def __repr__(self) -> str:
        return f"<Switch {self.name} {len(self.ports)} ports>"
