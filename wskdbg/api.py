"""A pykd-like Python API over the debugger.

    from wskdbg.api import Debugger
    dbg = Debugger(seed=1)                       # the standard lab (stack.world.default_world)
    dbg.execute("bp echosrv!WskSampleAcceptEvent")
    r = dbg.execute("g")
    print(r.text)                                # what the REPL would print
    irps = dbg.execute("!irpfind").data["irps"]  # the same result as data

`execute` returns when the machine has stopped again; it never raises for bad
input (the result has `.error` set and the text says what is wrong).
"""

from __future__ import annotations

from typing import Any, Callable

from stack.kernel.kernel import Kernel

from wskdbg.commands.registry import CommandResult
from wskdbg.engine import Engine, Position


class Debugger:
    def __init__(self, world: Any = None, seed: int = 1, *, factory: Callable[[int], Any] | None = None,
                 run_cap_ns: int | None = None) -> None:
        kwargs: dict[str, Any] = {"seed": seed}
        if run_cap_ns is not None:
            kwargs["run_cap_ns"] = run_cap_ns
        self.engine = Engine(world, factory=factory, **kwargs)

    def execute(self, command: str) -> CommandResult:
        return self.engine.execute(command)

    def __call__(self, command: str) -> CommandResult:
        return self.execute(command)

    @property
    def world(self) -> Any:
        return self.engine.world

    @property
    def kernel(self) -> Kernel:
        """The current host's kernel."""
        return self.engine.kernel

    @property
    def host(self) -> str:
        return self.engine.current_host

    @host.setter
    def host(self, name: str) -> None:
        self.engine.set_host(name)

    def position(self) -> Position:
        return self.engine.position()

    def evaluate(self, expression: str) -> int:
        """A MASM expression's value (raises wskdbg.commands.CommandError when it is bad)."""
        return self.engine.evaluate(expression)

    def read(self, address: int, length: int) -> bytes:
        """Bytes of the current host's memory (raises MemoryAccessError when unmapped)."""
        return self.engine.kernel.mem.read(address, length)

    def break_in(self) -> None:
        self.engine.break_in()

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> "Debugger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
