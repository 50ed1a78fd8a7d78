"""A bridged lab in one object: world + hub + forwards + TAP + recording, or a replay of one.

    session = BridgeSession.live(world, forwards=["127.0.0.1:8080=winsrv:80"], tap=True,
                                 record="run.wbr")
    session.start()            # attach; the world now runs in real time when it runs
    session.hub.serve(...)     # headless; in the debugger the engine's `g` drives it
    session.close()            # detach, close host sockets, remove the namespace

    replay = BridgeSession.replay(read_recording("run.wbr"))   # builds the same lab
    replay.run()               # no host I/O; same events as the live run

The order in which the pieces join the world (gateway host first, then the TAP
port) is fixed, because it is part of the world's history that a replay repeats.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from stack.nic import FaultConfig

from .forward import DEFAULT_WINDOW, Forwarder, ForwardHost, attach_forwards
from .realtime import DEFAULT_TICK_NS, BridgeError, BridgeHub
from .record import Recording, RecordingHeader, RecordingWriter
from .spec import ForwardSpec
from .tap import TapBridge, TapSettings, attach_tap

if TYPE_CHECKING:
    from stack.world import World

LabFactory = Callable[[int], "World"]
_TOPOLOGIES: dict[str, LabFactory] = {}


def session_of(world: "World") -> "BridgeSession | None":
    """The bridge attached to a lab, if any."""
    return getattr(world, "bridge_session", None)


def register_topology(name: str, factory: LabFactory) -> None:
    """Name a way of building the lab so a recording can rebuild it (`wskdbg run rec.wbr`)."""
    _TOPOLOGIES[name] = factory


def build_topology(name: str, seed: int) -> "World":
    if name not in _TOPOLOGIES:
        from .lab import bridge_lab  # registers "default"
        _ = bridge_lab
    factory = _TOPOLOGIES.get(name)
    if factory is None:
        raise BridgeError(f"unknown lab topology {name!r} (known: {', '.join(sorted(_TOPOLOGIES))})")
    return factory(seed)


@dataclass(slots=True)
class TapOptions:
    loss: float = 0.0  # probability, each direction of the TAP's link
    latency_ns: int = 20_000
    settings: TapSettings = field(default_factory=TapSettings)

    def to_header(self) -> dict[str, Any]:
        return {"loss": self.loss, "latency_ns": self.latency_ns}

    @classmethod
    def from_header(cls, data: dict[str, Any]) -> "TapOptions":
        return cls(loss=float(data.get("loss", 0.0)), latency_ns=int(data.get("latency_ns", 20_000)))


WALL_EPOCH_KEY = "realtime.epoch_unix"


def set_wall_epoch(world: "World", epoch_unix: int) -> None:
    """Bridged to real time: servers that print dates (khttpd's Date:) use the real date."""
    for host in world.hosts.values():
        host.kernel.extensions[WALL_EPOCH_KEY] = epoch_unix


class BridgeSession:
    def __init__(self, world: "World", hub: BridgeHub, *, specs: list[ForwardSpec], tap: TapOptions | None,
                 live: bool, window: int = DEFAULT_WINDOW) -> None:
        self.world = world
        self.hub = hub
        self.specs = specs
        self.tap_options = tap
        self.live = live
        self.forwarder: Forwarder | None = None
        self.forward_host: ForwardHost | None = None
        self.tap: TapBridge | None = None
        self.started = False
        self.closed = False
        self.record_path: str | None = None
        world.bridge_session = self  # what the debugger's !bridge and !tapexec find (`session_of`)
        try:
            if specs:
                self.forwarder, self.forward_host = attach_forwards(world, hub, specs, live=live, window=window)
            if tap is not None:
                self.tap = attach_tap(world, hub, settings=tap.settings, live=live, latency_ns=tap.latency_ns)
                if tap.loss:
                    self.tap.port.link.set_faults(FaultConfig(loss=tap.loss))
        except BaseException:
            self.close()
            raise

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def live_session(cls, world: "World", *, forwards: list[str] | list[ForwardSpec] = (),  # type: ignore[assignment]
                     tap: TapOptions | bool | None = None, record: str | os.PathLike[str] | None = None,
                     topology: str = "default", tick_ns: int = DEFAULT_TICK_NS,
                     window: int = DEFAULT_WINDOW) -> "BridgeSession":
        specs = [f if isinstance(f, ForwardSpec) else ForwardSpec.parse(f) for f in forwards]
        tap_opts = TapOptions() if tap is True else (tap or None)
        if not specs and tap_opts is None:
            raise BridgeError("a bridge needs at least one --forward or --tap")
        hub = BridgeHub(world.scheduler, world.bus, tick_ns=tick_ns)
        session = cls(world, hub, specs=specs, tap=tap_opts, live=True, window=window)
        epoch = int(time.time() - world.scheduler.now_ns / 1e9)
        set_wall_epoch(world, epoch)
        if record is not None:
            header = RecordingHeader(seed=world.seed, topology=topology, forwards=[str(s) for s in specs],
                                     tap=tap_opts.to_header() if tap_opts else None, tick_ns=tick_ns,
                                     start_event=world.scheduler.events_run, start_ns=world.scheduler.now_ns,
                                     note=f"window={window}", wall_epoch_unix=epoch)
            session.record_path = os.fspath(record)
            try:
                hub.recorder = RecordingWriter(record, header)
            except OSError as exc:
                session.close()
                raise BridgeError(f"cannot write the recording {record}: {exc.strerror or exc}") from None
        return session

    @classmethod
    def replay_session(cls, recording: Recording, world: "World | None" = None) -> "BridgeSession":
        """Rebuild the recorded lab (or take `world`, built the same way) and arm the replay."""
        header = recording.header
        if world is None:
            world = build_topology(header.topology, header.seed)
        window = DEFAULT_WINDOW
        if header.note.startswith("window="):
            window = int(header.note.split("=", 1)[1])
        hub = BridgeHub(world.scheduler, world.bus, tick_ns=header.tick_ns, replay=recording)
        if header.wall_epoch_unix:
            set_wall_epoch(world, header.wall_epoch_unix)
        specs = [ForwardSpec.parse(s) for s in header.forwards]
        tap = TapOptions.from_header(header.tap) if header.tap else None
        session = cls(world, hub, specs=specs, tap=tap, live=False, window=window)
        sched = world.scheduler
        # Reach the recorded attach point (a lab that ran before attaching replays that too).
        sched.run_until_idle(max_events=max(0, header.start_event - sched.events_run))
        if (sched.events_run, sched.now_ns) != (header.start_event, header.start_ns):
            if sched.now_ns < header.start_ns and sched.events_run == header.start_event:
                sched.now_ns = header.start_ns
            else:
                hub.divergence = (f"lab reached event {sched.events_run} at {sched.now_ns} ns; the recording "
                                  f"attached at event {header.start_event} at {header.start_ns} ns")
        return session

    # -- life ------------------------------------------------------------------------------
    def start(self) -> None:
        if not self.started:
            self.started = True
            self.hub.attach()

    def run(self, *, max_wall_s: float | None = None, max_events: int | None = None,
            until: Callable[[], bool] | None = None) -> str:
        """Run attached: live until stopped (or `until`), a replay until its recorded end."""
        self.start()
        return self.hub.serve(max_wall_s=max_wall_s, max_events=max_events, until=until)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.hub.detach()
        finally:
            if self.forward_host is not None:
                self.forward_host.stop()
            if self.tap is not None:
                self.tap.close()

    def __enter__(self) -> "BridgeSession":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- what to tell the person -----------------------------------------------------------------
    def banner(self) -> list[str]:
        lines: list[str] = []
        if self.forward_host is not None and self.forwarder is not None:
            for spec, bound, target in zip(self.specs, self.forward_host.bound_addresses(), self.forwarder.targets):
                host, port = bound[0], bound[1]
                shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                lines.append(f"forward {shown} -> {spec.target_host} {target} (from gateway "
                             f"{self.forwarder.gateway.address4})")
        if self.tap is not None and self.tap.namespace is not None:
            ns = self.tap.namespace
            s = ns.settings
            lines.append(f"tap: namespace {ns.name}, {s.ifname} {s.ipv4} {s.ipv6}; "
                         f"run programs there with: wskdbg tap-exec -- curl http://winsrv/")
        if self.hub.recorder is not None:
            lines.append(f"recording inputs to {self.record_path} (replay: wskdbg run {self.record_path})")
        return lines
