"""Frames, registers and the expression context: what the debugger shows of a stopped machine.

The engine (wskdbg/engine.py) owns run control: the machine thread, run requests, stops.  This
module owns what a command reads once the machine has stopped: the logical call stack written
into the thread's kernel stack (`k`, `kb`, `dps @rsp`), the registers derived from it (`r`),
the selected frame (`.frame`), and the ExprContext that MASM expressions evaluate against.
`FrameContext` is a mixin of Engine; it needs `kernels`, `kernel_of`, `scheduler`,
`current_host`, `state`, `last_stop`, `user_registers` and `live_event()` from it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stack.kernel.events import Event, RoutineEntered, RoutineReturned
from stack.kernel.kernel import Kernel
from stack.kernel.kstack import child_sps, outside_address, return_offset, write_frames

from wskdbg.commands.registry import CommandError
from wskdbg.expr import ExprError, MemoryAccessError, evaluate

if TYPE_CHECKING:
    from wskdbg.engine import Engine

# Kernel routines that are frames without being cataloged @kroutines (the kernel pushes them by hand).
KERNEL_FRAMES = ("ExpWorkerThread", "IopProcessWorkItem", "IoCancelIrp", "IofCallDriver", "IofCompleteRequest", "IopfCompleteRequest", "IopLoadDriver",
                 "IopUnloadDriver", "KiIdleLoop", "KiRetireDpcList", "KiStartSystemThread",
                 "PspSystemThreadStartup", "KeBugCheckEx", "DbgBreakPointWithStatus", "KiBugCheckDebugBreak",
                 "KeBugCheck2")

# A live kernel debugger stops a bug check in the break KeBugCheck2 raises for it, so `k` shows
# these three frames above nt!KeBugCheckEx (as every published live-KD bug check stack does).
BUGCHECK_BREAK_FRAMES = (("nt!DbgBreakPointWithStatus", ()), ("nt!KiBugCheckDebugBreak", ()), ("nt!KeBugCheck2", ()))


@dataclass(slots=True)
class StackFrame:
    """One row of `k`: frame `symbol` executing at `address + offset`."""

    symbol: str
    address: int  # routine address (0 when its module is not loaded)
    offset: int  # where in the routine (the return site for outer frames)
    args: tuple = ()
    child_sp: int = 0
    ret_addr: int = 0

    @property
    def location(self) -> int:
        return self.address + self.offset if self.address else 0

    @property
    def call_site(self) -> str:
        return self.symbol if self.offset == 0 else f"{self.symbol}+{self.offset:#x}"


def handoff_offset(ev: Event | None) -> int:
    """A stable "instruction offset" for a hand-off inside a routine (rip = routine + this)."""
    if ev is None or isinstance(ev, RoutineEntered):
        return 0
    if isinstance(ev, RoutineReturned):
        return 0x40 + (zlib.crc32(ev.symbol.encode()) % 0x180) & ~0x3
    return 0x10 + (zlib.crc32(ev.kind.encode()) % 0x1f0) & ~0x3


class FrameContext:
    """Engine's half that reads a stopped machine (see the module docstring)."""

    # -- expressions ------------------------------------------------------------------------
    @property
    def radix(self) -> int:
        """The default number base of MASM expressions: 16 until the `n` command changes it."""
        return self.state.get("radix", 16)  # type: ignore[attr-defined]

    def expr_context(self, host: str | None = None) -> "DebuggerExprContext":
        return DebuggerExprContext(self, host or self.current_host)

    def evaluate(self, text: str, base: int = 0, host: str | None = None) -> int:
        """Evaluate a MASM expression; errors point `base` characters into the command."""
        try:
            return evaluate(text, self.expr_context(host), self.radix)
        except ExprError as exc:
            raise CommandError(exc.message, base + exc.position) from None

    def resolve_routine(self, name: str, host: str | None = None) -> tuple[str, int] | None:
        """`module!Routine` (any case) -> (canonical name, address); None when unknown.

        Looks at the host's loaded modules, then at the routine catalog (for
        modules not loaded yet: address 0).
        """
        from stack.kernel.symbols import CATALOG
        module, bang, routine = name.partition("!")
        if not bang or not module or not routine:
            return None
        k = self.kernels.get(host or self.current_host)
        mod = k.module(module) if k is not None else None
        candidates: list[str] = []
        mod_name = module
        if mod is not None:
            mod_name = mod.name
            candidates = list(mod.symbols) + list(CATALOG.get(mod.name, ()))
            if mod.name == "nt":
                candidates += KERNEL_FRAMES
        else:
            for cat_module, names in CATALOG.items():
                if cat_module.lower() == module.lower():
                    mod_name = cat_module
                    candidates = list(names)
                    break
        for cand in candidates:
            if cand.lower() == routine.lower():
                symbol = f"{mod_name}!{cand}"
                return symbol, (k.symbol_address(symbol) if mod is not None and k is not None else 0)
        return None

    # -- the stack of the current context ----------------------------------------------------
    def stack(self, host: str | None = None) -> list[StackFrame]:
        """The logical call stack of `host` as `k` shows it, innermost first."""
        host = host or self.current_host
        k = self.kernel_of(host)
        crash = self.scheduler.halted
        live = self.live_event()
        if crash is not None and crash.host == host:
            raw = list(BUGCHECK_BREAK_FRAMES) + [("nt!KeBugCheckEx", (crash.code,) + tuple(crash.params[:3]))]
            args_by_symbol = {f.symbol: f.args for f in crash.extra.get("current_frames", [])}
            raw += [(sym, args_by_symbol.get(sym, ())) for sym in crash.frames]
            top_offset = 0
            at_entry = False
        elif live is not None and live.host == host and k.frames:
            raw = [(f.symbol, f.args) for f in reversed(k.frames)]
            top_offset = handoff_offset(live)
            at_entry = isinstance(live, RoutineEntered)
            stop = self.last_stop
            if stop is not None and stop.returned and stop.event is live and len(raw) > 1:
                top_offset = return_offset(raw[0][0])  # in the caller, after the call
                raw = raw[1:]
        else:
            raw = [("nt!KiIdleLoop", ())]
            top_offset = 0
            at_entry = False
        thread = k.current_thread if (live is not None and live.host == host) else None
        if crash is not None and crash.host == host:
            thread = next((t for t in k.threads if t.address == crash.thread), None)
        owner = thread or k.idle_thread
        return self._on_stack(k, owner, raw, top_offset, at_entry)

    @staticmethod
    def _on_stack(k: Kernel, owner: Any, raw: list, top_offset: int, at_entry: bool) -> list[StackFrame]:
        """Rows of `k` for `raw` (symbol, args) frames on `owner`'s kernel stack, written into
        that stack's memory (stack.kernel.kstack) so `dps @rsp` and `kb` read what `k` prints."""
        sps = child_sps(owner.stack_base, len(raw), at_entry)
        frames: list[StackFrame] = []
        for i, (symbol, args) in enumerate(raw):
            address = k.symbol_address(symbol) if k.module(symbol.partition("!")[0]) else outside_address(symbol)
            offset = top_offset if i == 0 else return_offset(raw[i - 1][0])
            frames.append(StackFrame(symbol, address, offset, tuple(args), child_sp=sps[i]))
        for i in range(len(raw) - 1):
            frames[i].ret_addr = frames[i + 1].address + return_offset(frames[i].symbol) if frames[i + 1].address else 0
        write_frames(k, owner.stack_base, owner.stack_limit, ((f.child_sp, f.ret_addr, f.args) for f in frames))
        return frames

    def thread_stack(self, thread: Any) -> list[StackFrame]:
        """The stack of a thread that is not running (waiting threads show the wait path)."""
        k = thread.kernel
        raw = [(f.symbol, f.args) for f in reversed(thread.frames)]
        if thread.state == "Waiting":
            wait = thread.wait  # KeWaitForSingleObject(Object, ...): its object in rcx's home slot
            args = (wait.objects[0],) if wait is not None and wait.objects else ()
            raw = [("nt!KiSwapContext", ()), ("nt!KiSwapThread", ()), ("nt!KeWaitForSingleObject", args)] + raw
        if not raw:
            raw = [(thread.start_symbol, ())]
        return self._on_stack(k, thread, raw, 0x1f0 if thread.state == "Waiting" else 0, False)

    def current_thread(self, host: str | None = None) -> Any:
        host = host or self.current_host
        k = self.kernel_of(host)
        crash = self.scheduler.halted
        if crash is not None and crash.host == host:
            return next((t for t in k.threads if t.address == crash.thread), k.idle_thread)
        live = self.live_event()
        if live is not None and live.host == host and k.current_thread:
            return k.current_thread
        return k.idle_thread

    def current_irql(self, host: str | None = None) -> int:
        host = host or self.current_host
        crash = self.scheduler.halted
        if crash is not None and crash.host == host:
            return crash.irql
        live = self.live_event()
        if live is not None and live.host == host:
            return self.kernel_of(host).irql
        return 0

    def selected_frame(self) -> int:
        """The frame `.frame N` selected (0 after every stop: a new stop resets it)."""
        chosen = self.state.get("frame")
        return chosen[1] if chosen is not None and chosen[0] is self.last_stop else 0

    def select_frame(self, index: int) -> None:
        self.state["frame"] = (self.last_stop, index)



class DebuggerExprContext:
    """The ExprContext of MASM expressions: symbols, registers and memory of one host."""

    def __init__(self, engine: Engine, host: str) -> None:
        self.engine = engine
        self.host = host

    @property
    def kernel(self) -> Kernel:
        return self.engine.kernel_of(self.host)

    def symbol(self, name: str) -> int | None:
        k = self.kernel
        if "!" in name and not name.startswith("!"):
            found = self.engine.resolve_routine(name, self.host)
            if found is not None and found[1]:
                return found[1]
            return None
        bare = name.lstrip("!")
        mod = k.module(bare)
        if mod is not None:
            return mod.base
        for m in k.modules:
            for routine, address in m.symbols.items():
                if routine.lower() == bare.lower():
                    return address
        return None

    def register(self, name: str) -> int | None:
        value = self.engine.user_registers.get(name)
        if value is not None:
            return value
        regs = register_values(self.engine, self.host)
        return regs.get(name.lower())

    def read_memory(self, address: int, size: int) -> bytes:
        cells = self.kernel.mem.read_partial(address, size)
        if any(c is None for c in cells):
            raise MemoryAccessError(address, size)
        return bytes(cells)  # type: ignore[arg-type]


GP_REGISTERS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rip", "rsp", "rbp",
                "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


def _arg_value(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value & 0xFFFFFFFFFFFFFFFF
    address = getattr(value, "address", 0)  # an object stands for its address in memory
    return address & 0xFFFFFFFFFFFFFFFF if isinstance(address, int) else 0


def register_values(engine: Engine, host: str | None = None) -> dict[str, int]:
    """The emulated CPU's registers: rip is the current routine (+ hand-off offset), rsp the
    thread's stack pointer from the call depth, rcx/rdx/r8/r9 the routine's first four arguments
    (the x64 calling convention); the rest read zero.  Plus $ip, $irql, $thread, $proc."""
    host = host or engine.current_host
    frames = engine.stack(host)
    top = frames[0]
    args = [_arg_value(a) for a in top.args[:4]] + [0] * 4
    k = engine.kernel_of(host)
    thread = engine.current_thread(host)
    regs = {name: 0 for name in GP_REGISTERS}
    regs.update(rip=top.location, rsp=top.child_sp, rbp=0, rcx=args[0], rdx=args[1], r8=args[2], r9=args[3])
    regs["$ip"] = regs["rip"]
    regs["$irql"] = engine.current_irql(host)
    regs["$thread"] = thread.address
    regs["$proc"] = system_process_address(k)
    regs["$csp"] = regs["rsp"]
    regs["$ra"] = frames[0].ret_addr
    regs["$curthread"] = thread.address
    regs["$curprocess"] = regs["$proc"]
    regs["$ptrsize"] = 8
    regs["$pagesize"] = 0x1000
    regs["$retreg"] = regs["rax"]
    regs["efl"] = 0x202
    return regs


def system_process_address(k: Kernel) -> int:
    """A stable (synthetic) EPROCESS address for the System process of a host."""
    return k.system_ptes.base - 0x10000 + 0x40
