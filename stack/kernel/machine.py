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
        """Run `fn(*args)` now as one event of `kernel` (at PASSIVE_LEVEL, no thread)."""
        box: list = []
        self.scheduler.call_soon(kernel, lambda: box.append(fn(*args)), label="run_in")
        self.scheduler.run_one()
        return box[0] if box else None
