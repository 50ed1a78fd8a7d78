"""What a front end (the TUI) may ask of the debugger engine: a typed interface.

`wskdbg.engine.Engine` satisfies it; a front end depends on this Protocol rather than
probing attributes.  Threads: `execute` blocks while the machine runs (call it from a
worker thread); `break_in` is safe from any thread at any time (the engine keeps the
request until a run consumes it).  Everything else reads the machine and may be called
only while the machine is stopped (no command in flight), or on the machine's own thread
at a hand-off (a bus subscriber) — never from another thread while it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from stack.kernel.kernel import Kernel
    from wskdbg.commands.registry import CommandResult


@runtime_checkable
class DebuggerEngine(Protocol):
    @property
    def world(self) -> Any:
        """The machine: `.scheduler`, `.bus` and hosts (see `kernels`)."""

    @property
    def kernels(self) -> "dict[str, Kernel]":
        """Host name -> its kernel, in the lab's order."""

    @property
    def current_host(self) -> str:
        """The host the debugger is looking at (where commands apply)."""

    def execute(self, line: str) -> "CommandResult":
        """Run a command line; returns when the machine has stopped again."""

    def break_in(self) -> None:
        """Stop the machine at its next hand-off (kept until a run consumes it)."""

    def prompt(self) -> str:
        """The prompt text (`0: kd> `)."""

    def command_names(self) -> list[str]:
        """Every command's name, for completion."""

    def current_thread(self, host: str | None = None) -> Any:
        """The thread the debugger shows as current on `host` (the idle thread when none runs)."""

    def current_irql(self, host: str | None = None) -> int:
        """The IRQL the debugger shows for `host`."""

    def stack(self, host: str | None = None) -> list[Any]:
        """The rows of `k` on `host` (StackFrame), innermost first."""

    def selected_frame(self) -> int:
        """The frame `.frame N` selected (0 after every stop)."""


@runtime_checkable
class RemoteViews(Protocol):
    """What the TUI also asks of an engine in a machine server (wskdbg.machine_server.MachineProxy
    with views=True): the views are built there (wskdbg.tui.machine_side), the TUI draws the data."""

    def view_request(self, request: tuple) -> Any:
        """Stopped: ("view", irp, mdl) -> (generation, MachineView, trace record fields);
        ("kind", address) -> (host, "irp" | "mdl" | "object") or None."""

    def want_view(self) -> None:
        """Running: the machine's thread builds a view at its next hand-off and pushes it to
        `view_output(generation, view, records)` (called on the thread waiting in `execute`)."""

    @property
    def halted_info(self) -> Any:
        """The bug check that halted the machine (BugCheckInfo without live frames), or None."""
