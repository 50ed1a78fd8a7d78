"""A standalone machine (one scheduler, one bus, one or more kernels) for tests and tools.

`stack.world` builds the networked lab on top of the same pieces.
"""

from __future__ import annotations

from .events import EventBus
from .kernel import Kernel
from .scheduler import Scheduler


class Machine:
    def __init__(self, seed: int = 1, hosts: tuple[str, ...] = ("winsrv",), memory_mb: int = 64) -> None:
        self.seed = seed
        self.scheduler = Scheduler()
        self.bus = EventBus(clock=lambda: self.scheduler.now_ns)
        self.kernels = {name: Kernel(name, self.scheduler, self.bus, seed, memory_mb=memory_mb) for name in hosts}

    @property
    def kernel(self) -> Kernel:
        return next(iter(self.kernels.values()))

    def run_in(self, kernel: Kernel, fn, *args):
        """Run `fn(*args)` now as one event of `kernel` (at PASSIVE_LEVEL, no thread).

        Events already due at this time were queued first, so they run first
        (ties break by insertion order).  Returns fn's result, or None when the
        machine bug-checked.
        """
        box: list = []
        ran: list[bool] = []

        def event() -> None:
            ran.append(True)
            box.append(fn(*args))

        self.scheduler.call_soon(kernel, event, label="run_in")
        while not ran and self.scheduler.run_one():
            pass
        return box[0] if box else None
