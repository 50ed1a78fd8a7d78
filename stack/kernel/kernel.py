"""One host's kernel executive: memory, pools, modules, objects, threads, IRQL.

The scheduler is shared by the whole world; a `Kernel` runs the events that
belong to its host.  While an event runs, `current_kernel()` is this kernel
and `self.frames` is the logical call stack of whatever is executing (the
running thread's own list, or the processor's list for a DPC or interrupt).
"""

from __future__ import annotations

import random
import sys
import traceback
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from . import bugcheck as bc
from .bugcheck import BugCheckInfo, KernelBugCheck
from .events import BugChecked, DebugPrint, EventBus, RoutineEntered, RoutineReturned
from .irql import DISPATCH_LEVEL, PASSIVE_LEVEL
from .memory import PAGE_SIZE, AddressSpace, MemoryAccessError, PhysicalMemory, VaRegion
from .pool import PoolManager, is_paged
from .scheduler import ScheduledEvent, Scheduler
from .symbols import CATALOG, Frame, _new_frame
from .verifier import LowResourcesSimulation

if TYPE_CHECKING:
    from .ke import KThread
    from .wpp import WppRegistry

SYSTEM_PID = 4
BOOT_EPOCH_S = 1_767_225_600  # 2026-01-01T00:00:00Z: the emulated machines' boot time


ROUTINE_SLOT = 0x400  # bytes of image per routine: see Kernel._assign_symbol


@dataclass(slots=True)
class Module:
    """A loaded image, as `lm` lists it."""

    name: str
    image: str
    base: int
    size: int
    timestamp: int
    symbols: dict[str, int] = field(default_factory=dict)  # routine name -> address

    def contains(self, address: int) -> bool:
        return self.base <= address < self.base + self.size


class CopyCounter:
    """Every payload copy in the machine is counted here: reason -> (copies, bytes)."""

    __slots__ = ("copies", "bytes", "on_copy")

    def __init__(self) -> None:
        self.copies: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.on_copy: Callable[[int], None] | None = None  # the CPU model charges the copy's time

    def count(self, nbytes: int, reason: str) -> None:
        self.copies[reason] += 1
        self.bytes[reason] += nbytes
        if self.on_copy is not None:
            self.on_copy(nbytes)

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())

    def snapshot(self) -> dict[str, tuple[int, int]]:
        return {k: (self.copies[k], self.bytes[k]) for k in sorted(self.bytes)}


# PML4 slots the kernel's fixed regions use (pools, system PTEs, stacks, images, user space).
_RESERVED_PML4 = {0xFFFFC1 >> 7 & 0x1FF, 0xFFFFA3 >> 7 & 0x1FF, 0xFFFFD0 >> 7 & 0x1FF, 0xFFFFD5 >> 7 & 0x1FF,
                  0x1F0}


def _self_map_index(seed: int, name: str) -> int:
    """The page-table self-map's PML4 index, randomised per boot as on Windows 10 1607+ (its own
    random stream, so the other boot-time choices stay as they were)."""
    rng = random.Random(f"{seed}:{name}:selfmap")
    return rng.choice([i for i in range(0x100, 0x1F0) if i not in _RESERVED_PML4])


class ThreadList:
    """The kernel's threads in creation order, with O(1) removal when one exits."""

    __slots__ = ("_threads",)

    def __init__(self) -> None:
        self._threads: dict[int, "KThread"] = {}  # id(thread) -> thread: insertion ordered

    def append(self, t: "KThread") -> None:
        self._threads[id(t)] = t

    def remove(self, t: "KThread") -> None:
        del self._threads[id(t)]

    def __iter__(self):
        return iter(list(self._threads.values()))

    def __len__(self) -> int:
        return len(self._threads)

    def __contains__(self, t: object) -> bool:
        return id(t) in self._threads

    def __getitem__(self, index: int) -> "KThread":
        if index == -1 and self._threads:
            return next(reversed(self._threads.values()))
        return list(self._threads.values())[index]


class Kernel:
    """The executive of one emulated host."""

    def __init__(self, name: str, scheduler: Scheduler, bus: EventBus, seed: int,
                 memory_mb: int = 96, cpu: int = 0) -> None:
        self.name = name
        self.scheduler = scheduler
        self.bus = bus
        self.cpu = cpu  # the processor running the current event (stack.kernel.cpu sets it)
        self.cpu_model: Any = None  # stack.kernel.cpu.CpuModel when the host's processors spend time
        self.seed = seed
        self.rng = random.Random(f"{seed}:{name}")
        self.verifier = LowResourcesSimulation(seed, name)  # `!verifier`: fault injection and failure counts
        self.irql = PASSIVE_LEVEL
        self.frames: list[Frame] = []
        self.current_thread: "KThread | None" = None
        self.held_locks: list[Any] = []
        self.copies = CopyCounter()
        self.debug_output: list[str] = []
        self.extensions: dict[str, Any] = {}  # per-layer state (ndis, tcpip, wsk...) by name
        self.objects: dict[str, Any] = {}  # the object namespace: \Driver\x, \Device\y
        self.addr_objects: dict[int, Any] = {}  # address -> live emulated object (for the debugger)
        # IRPs (stack.kernel.irp): the live ones by address (`!irpfind`), and freed IRP objects by
        # the pool block they sat in, rebuilt in place when IoAllocateIrp gets that block back
        self.irps: dict[int, Any] = {}
        self.irp_lookaside: dict[int, Any] = {}
        self.extensions["irps"] = self.irps
        self.modules: list[Module] = []
        self._symbol_cache: dict[str, int] = {}  # `module!Routine` -> address, reset when modules change
        self.threads = ThreadList()
        self.drivers: dict[str, Any] = {}
        self._next_tid = 0x78

        # Address space: randomised (from the seed) region bases, like KASLR.
        r = self.rng
        pages = memory_mb * 256
        self.phys = PhysicalMemory(pages, base_pfn=0x1000 + r.randrange(0x100) * 0x100)
        self.mem = AddressSpace(self.phys, self_map_index=_self_map_index(seed, name))
        self.nonpaged_region = VaRegion("NonPagedPool", 0xFFFFC1_0000000000 | (r.randrange(0x10, 0xF0) << 32), 1 << 36)
        self.paged_region = VaRegion("PagedPool", 0xFFFFA3_0000000000 | (r.randrange(0x10, 0xF0) << 32), 1 << 36)
        self.system_ptes = VaRegion("SystemPtes", 0xFFFFD0_0000000000 | (r.randrange(0x10, 0xF0) << 32), 1 << 36)
        self.stack_region = VaRegion("KernelStacks", 0xFFFFD5_0000000000 | (r.randrange(0x10, 0xF0) << 32), 1 << 32)
        self.image_base = 0xFFFFF801_00000000 | (r.randrange(0x10, 0x7F) << 24)
        self._next_image = self.image_base
        self.pool = PoolManager(self.mem, self.phys, self.nonpaged_region, self.paged_region, self.bugcheck)

        from .ke import create_idle_thread
        self.load_module("nt", "ntoskrnl.exe", size=0x1046000)
        self.load_module("hal", "hal.dll", size=0x70000)
        self.idle_thread = create_idle_thread(self)
        from .wpp import WppRegistry
        self.wpp: "WppRegistry" = WppRegistry(self)

    # -- time -------------------------------------------------------------------
    @property
    def now_ns(self) -> int:
        return self.scheduler.now_ns

    def system_time_s(self) -> float:
        return BOOT_EPOCH_S + self.scheduler.now_ns / 1e9

    # -- modules and symbols -------------------------------------------------
    def load_module(self, name: str, image: str, size: int = 0x40000) -> Module:
        existing = self.module(name)
        if existing is not None:
            return existing
        size = (size + 0xFFFF) & ~0xFFFF
        mod = Module(name, image, self._next_image, size, 0x5F000000 + self.rng.randrange(1 << 24))
        self._next_image += size + 0x10000
        self.modules.append(mod)
        self._symbol_cache.clear()
        for routine in sorted(CATALOG.get(name, ())):  # name order: the same whatever was imported first
            self._assign_symbol(mod, routine)
        return mod

    def image_global(self, module: str, name: str, size: int) -> int:
        """The address of a driver's global variable `module!name` (its image's data), with the
        page(s) under it mapped, so kernel objects a C driver declares as globals (echosrv's
        WskSampleWorkQueue) live in memory.  0 when the module is not loaded."""
        mod = self.module(module)
        if mod is None:
            return 0
        address = self._assign_symbol(mod, name)
        self._symbol_cache.pop(f"{module}!{name}", None)
        for va in range(address & ~0xFFF, address + size, 0x1000):
            if not self.mem.is_mapped(va):
                self.mem.map_page(va, self.phys.allocate_top(1, f"Image {module}")[0])
        return address

    def unload_module(self, name: str) -> None:
        self.modules = [m for m in self.modules if m.name != name]
        self._symbol_cache.clear()

    def module(self, name: str) -> Module | None:
        lname = name.lower()
        for m in self.modules:
            if m.name.lower() == lname:
                return m
        return None

    def _assign_symbol(self, mod: Module, routine: str) -> int:
        """A routine's address depends only on its image and its name: never on the order
        Python imported the routines in (a process-global fact), nor on which was asked for first.

        The image's layout is computed from its own routine names: each sits at a slot chosen
        by a hash of its name.  Two names on one slot probe on in name order, the order
        `load_module` lays them out in.  A slot is ROUTINE_SLOT bytes, more than any return
        address or hand-off offset inside a routine reaches (kstack.return_offset, the engine's
        handoff_offset), so `ln` of any rip or RetAddr names the routine it belongs to.
        """
        addr = mod.symbols.get(routine)
        if addr is not None:
            return addr
        slots = (mod.size - 0x1000) // ROUTINE_SLOT
        used = set(mod.symbols.values())
        if len(used) >= slots:
            raise ValueError(f"image {mod.name} has no room for {routine}: raise its size")
        slot = zlib.crc32(routine.encode()) % slots
        while mod.base + 0x1000 + slot * ROUTINE_SLOT in used:  # a collision: probe deterministically
            slot = (slot + 1) % slots
        addr = mod.base + 0x1000 + slot * ROUTINE_SLOT
        mod.symbols[routine] = addr
        return addr

    def symbol_address(self, symbol: str) -> int:
        """Address of `module!Routine` (0 when the module is not loaded)."""
        addr = self._symbol_cache.get(symbol)
        if addr is not None:
            return addr
        module, _, routine = symbol.partition("!")
        mod = self.module(module)
        if mod is None or not routine:
            return 0
        addr = self._symbol_cache[symbol] = self._assign_symbol(mod, routine)
        return addr

    def symbol_for_address(self, address: int) -> str | None:
        """`module!Routine+0xNN` for an address inside a loaded image."""
        best: tuple[int, str] | None = None
        for mod in self.modules:
            if not mod.contains(address):
                continue
            for routine, a in mod.symbols.items():
                if a <= address and (best is None or a > best[0]):
                    best = (a, f"{mod.name}!{routine}")
            if best is None:
                return f"{mod.name}+{address - mod.base:#x}"
        if best is None:
            return None
        delta = address - best[0]
        return best[1] if delta == 0 else f"{best[1]}+{delta:#x}"

    # -- object registry ---------------------------------------------------------
    def register_object(self, obj: Any) -> None:
        self.addr_objects[obj.address] = obj
        try:
            obj.struct_size  # a structure that lives in memory (no hasattr call on the per-request path)
        except AttributeError:
            return
        self.mem.register_struct(obj)

    def unregister_object(self, obj: Any) -> None:
        address = obj.address
        addr_objects = self.addr_objects
        if address in addr_objects:
            del addr_objects[address]
        try:
            obj.struct_size
        except AttributeError:
            return
        self.mem.unregister_struct(obj)

    def object_at(self, address: int) -> Any:
        return self.addr_objects.get(address)

    # -- frames (the logical call stack) --------------------------------------
    def enter(self, symbol: str, args: tuple = ()) -> None:
        self.frames.append(_new_frame(Frame, (symbol, args)))  # Frame(symbol, args) without its Python __new__
        bus = self.bus
        if bus.subscribers:
            bus.publish(RoutineEntered(host=self.name, depth=len(self.frames), symbol=symbol,
                                       address=self.symbol_address(symbol)))

    def leave(self, symbol: str, result: Any = None) -> None:
        bus = self.bus
        if bus.subscribers:
            bus.publish(RoutineReturned(host=self.name, depth=len(self.frames), symbol=symbol, result=result))
        self.leave_silently(symbol)

    def leave_silently(self, symbol: str) -> None:
        frames = self.frames
        if frames and frames[-1].symbol == symbol:
            frames.pop()
            return
        # Frames left above ours by an exception a caller caught: drop them with ours.
        for i in range(len(frames) - 1, -1, -1):
            if frames[i].symbol == symbol:
                del frames[i:]
                return

    def publish(self, event_type: type, **fields: Any) -> None:
        """Publish a kernel event if anybody listens (cheap when nobody does)."""
        if self.bus.subscribers:
            self.bus.publish(event_type(host=self.name, depth=len(self.frames), **fields))

    def caller_symbol(self) -> str:
        return self.frames[-1].symbol if self.frames else "nt!KiIdleLoop"

    # -- allocations that may fail ---------------------------------------------------
    def allocate_pool(self, cls: str, pool_type: int, size: int, tag: str | int, owner: str = "") -> int:
        """Pool for an allocation of class `cls` (pool, irp, mdl, nbl, thread...); 0 when the
        verifier's low resources simulation fails it or the emulated memory is used up."""
        verifier = self.verifier
        if verifier.active and verifier.fail(self, cls, tag):
            return 0
        try:
            return self.pool.allocate(pool_type, size, tag, owner=owner)
        except MemoryError:
            verifier.failed(self, cls, tag)
            return 0

    # -- running events ------------------------------------------------------------
    def charge(self, op: str, n: int = 1) -> None:
        """Spend `n` x the cost of `op` on the processor running this code (stack.kernel.costs)."""
        model = self.cpu_model
        if model is not None:
            model.charge(op, n)

    def run_event(self, ev: ScheduledEvent) -> None:
        """Run one scheduler event in a fresh processor context (threads swap in their own).

        A CPU model (stack.kernel.cpu.install) shadows this method on the instance with its
        own `run`, which places the event on a processor and then calls `run_event_now`."""
        saved = (self.irql, self.frames, self.current_thread, self.held_locks)
        self.irql = PASSIVE_LEVEL
        self.frames = []
        self.current_thread = None
        self.held_locks = []
        try:
            ev.fn(*ev.args)
        except Exception as exc:  # becomes 0x1E while the crashing context is still current
            raise KernelBugCheck(self.bugcheck_from_exception(exc, traceback.format_exc())) from None
        finally:
            self.irql, self.frames, self.current_thread, self.held_locks = saved

    run_event_now = run_event

    def call_soon(self, fn: Callable[..., Any], *args: Any, label: str = "") -> ScheduledEvent:
        return self.scheduler.call_soon(self, fn, *args, label=label)

    def call_later(self, delay_ns: int, fn: Callable[..., Any], *args: Any, label: str = "") -> ScheduledEvent:
        return self.scheduler.call_later(delay_ns, self, fn, *args, label=label)

    # -- checked memory access (what driver code uses) ---------------------------
    def check_access(self, va: int, length: int, write: bool) -> None:
        """Enforce the IRQL rule for pageable memory, then require a mapping."""
        ptype = self.pool.pool_type_of(va)
        if ptype is not None and is_paged(ptype) and self.irql >= DISPATCH_LEVEL:
            self.bugcheck(bc.DRIVER_IRQL_NOT_LESS_OR_EQUAL, va, self.irql, int(write),
                          self.symbol_address(self.caller_symbol()))
        is_mapped = self.mem.is_mapped
        page = va & ~(PAGE_SIZE - 1)
        last = va + max(length, 1) - 1
        while page <= last:  # usually one or two pages
            if not is_mapped(page):
                # P2 is 0 for a read, 2 for a write (Windows 10 and later)
                self.bugcheck(bc.PAGE_FAULT_IN_NONPAGED_AREA, max(page, va), 2 if write else 0,
                              self.symbol_address(self.caller_symbol()), 0)
            page += PAGE_SIZE

    def read(self, va: int, length: int) -> bytes:
        self.check_access(va, length, False)
        return self.mem.read(va, length)

    def write(self, va: int, data: bytes | bytearray | memoryview) -> None:
        self.check_access(va, len(data), True)
        self.mem.write(va, data)

    # -- bug checks ------------------------------------------------------------------
    def bugcheck(self, code: int, p1: int = 0, p2: int = 0, p3: int = 0, p4: int = 0, detail: str = "",
                 frames: list[str] | None = None, python_frames: list | None = None) -> None:
        """KeBugCheckEx: record the crash and unwind to the scheduler.

        `frames` (innermost first) overrides the current stack, for a crash
        whose stack was already unwound (an exception inside a driver).
        """
        if frames is None:
            frames = [f.symbol for f in reversed(self.frames)]
        faulting = frames[0] if frames else "nt!KiIdleLoop"
        thread = self.current_thread
        info = BugCheckInfo(
            code=code, params=(p1 & (2**64 - 1), p2 & (2**64 - 1), p3 & (2**64 - 1), p4 & (2**64 - 1)),
            host=self.name, time_ns=self.now_ns, irql=self.irql,
            thread=thread.address if thread else self.idle_thread.address,
            thread_name=thread.name if thread else "Idle",
            process="System", frames=frames or ["nt!KiIdleLoop"], faulting_symbol=self._blame(frames),
            detail=detail, seq=self.bus.seq,
        )
        info.extra["current_frames"] = list(self.frames)
        # The crashing Python frames, innermost first (the debugger's source mode reads their lines).
        info.extra["python_frames"] = python_frames if python_frames is not None else _python_frames()
        try:
            self.publish(BugChecked, code=code, params=info.params)
        except Exception as exc:  # a failing observer must not replace the crash being reported
            info.extra["publish_error"] = f"{type(exc).__name__}: {exc}"
        raise KernelBugCheck(info)

    @staticmethod
    def _blame(frames: list[str]) -> str:
        """The first non-kernel routine on the stack is the likely culprit (as !analyze says)."""
        for sym in frames:
            if not sym.startswith(("nt!", "hal!")):
                return sym
        return frames[0] if frames else "nt!KiIdleLoop"

    def bugcheck_from_exception(self, exc: BaseException, tb: str) -> BugCheckInfo:
        """A Python exception inside emulated code is an unhandled kernel-mode exception."""
        frames = getattr(exc, "kernel_frames", None)
        if frames is None:
            frames = [f.symbol for f in reversed(self.frames)]
        raised = []
        trace = exc.__traceback__
        while trace is not None:
            raised.append(trace.tb_frame)
            trace = trace.tb_next
        try:
            self.bugcheck(bc.KMODE_EXCEPTION_NOT_HANDLED, 0xC0000005,
                          self.symbol_address(frames[0]) if frames else 0, 0, 0,
                          detail=f"{type(exc).__name__}: {exc}\n{tb}", frames=list(frames),
                          python_frames=raised[::-1])
        except KernelBugCheck as crash:
            return crash.info
        raise AssertionError("unreachable")

    # -- DbgPrint ----------------------------------------------------------------------
    def dbg_print(self, text: str) -> None:
        self.debug_output.append(text)
        self.publish(DebugPrint, text=text)

    def __repr__(self) -> str:
        return f"<Kernel {self.name}>"


def _python_frames(limit: int = 200) -> list:
    """The Python frames of the code that called KeBugCheckEx, innermost first."""
    frame = sys._getframe(2)
    out = []
    while frame is not None and len(out) < limit:
        out.append(frame)
        frame = frame.f_back
    return out


def page_count(nbytes: int) -> int:
    return (nbytes + PAGE_SIZE - 1) // PAGE_SIZE


__all__ = ["Kernel", "Module", "CopyCounter", "MemoryAccessError", "SYSTEM_PID"]
