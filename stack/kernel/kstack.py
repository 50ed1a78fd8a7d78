"""Kernel stacks: each thread's stack in emulated memory, and the x64 frames on it.

Every KTHREAD owns KERNEL_STACK_PAGES mapped pages (StackLimit .. StackBase, as
Windows 10's 24 KiB kernel stack); DPCs and ISRs, which the lab runs outside any
system thread, run on the idle thread's stack, under `nt!KiIdleLoop` and
`nt!KiRetireDpcList` as on an idle processor.

The machine keeps its call stack as a list of `Frame(symbol, args)` (pushed by
`kroutine` on every call: the hot path, which must stay one list append).  The
bytes of the stack are written only when somebody looks: the debugger calls
`write_frames` with the rows `k` prints, so `dps @rsp`, `k`'s Child-SP/RetAddr
and `kb`'s "Args to Child" all read the same memory.  The shape is the x64 one:

    Child-SP(n+1)            +0x20 home of frame n's r9   \\  "Args to Child" of
                             ...                            > row n (the caller's
    Child-SP(n+1)            +0x00 home of frame n's rcx  /   home space)
    Child-SP(n+1) - 8        return address of frame n (RetAddr of row n)
    Child-SP(n) .. -0x10     frame n's locals (FRAME_SIZE in all)

A routine stopped on its first instruction has not run its prologue yet: its
rsp points at its return address (Child-SP = caller's Child-SP - 8).
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .memory import PAGE_SIZE, MemoryAccessError
from .symbols import _current

if TYPE_CHECKING:
    from .kernel import Kernel

KERNEL_STACK_PAGES = 6  # KERNEL_STACK_SIZE 0x6000 on x64
FRAME_SIZE = 0x80  # every emulated routine's frame: locals, saved registers, return address
INITIAL_FRAME = 0x28  # InitialStack - the first frame (the thread start's home space and alignment)


def return_offset(callee: str) -> int:
    """Where a caller resumes after calling `callee` (RetAddr = caller + this): one stable call site."""
    return 0x20 + (zlib.crc32(callee.encode()) % 0x3c0) & ~0x1


USER_IMAGE_BASE = 0x00007FF6_00000000  # where x64 user-mode images load


def outside_address(symbol: str) -> int:
    """A stable address for a frame of code the kernel has no image for (a lab user-mode
    program's `user!echo`): in the user half, so no frame's RetAddr is ever 0 mid-stack."""
    module, _, routine = symbol.partition("!")
    return (USER_IMAGE_BASE | (zlib.crc32(module.encode()) & 0xFFF) << 20
            | (zlib.crc32(routine.encode()) & 0xFFFF) << 4)


def child_sps(base: int, count: int, at_entry: bool) -> list[int]:
    """Child-SP of `count` frames, innermost first, on the stack whose StackBase is `base`."""
    sps = [base - INITIAL_FRAME - FRAME_SIZE * depth for depth in range(count, 0, -1)]
    if at_entry and count > 1:
        sps[0] = sps[1] - 8  # no prologue yet: rsp is at the return address
    return sps


LOCAL_OFFSET = 0x30  # where in its frame a routine keeps a structure C declares as a local


def stack_local() -> int:
    """The address of a structure local to the routine running now (its frame's locals).

    The bytes are written with the frames (`write_frames`) when an argument that points
    at the local has a `local_bytes()`; nothing is written while the machine runs."""
    if not _current:
        return 0
    k = _current[-1]
    owner = k.current_thread or k.idle_thread
    return owner.stack_base - INITIAL_FRAME - FRAME_SIZE * len(k.frames) + LOCAL_OFFSET


def allocate_stack(k: "Kernel", owner: str) -> tuple[int, int, list[int]] | None:
    """Reserve and map a kernel stack: (StackBase, StackLimit, its PFNs); None when physical
    memory is exhausted (thread creation then fails with STATUS_INSUFFICIENT_RESOURCES)."""
    limit = k.stack_region.reserve(KERNEL_STACK_PAGES)
    try:
        pfns = k.phys.allocate_top(KERNEL_STACK_PAGES, owner)  # all the pages or none
    except MemoryError:
        k.stack_region.release(limit, KERNEL_STACK_PAGES)
        return None
    k.mem.map_pages(limit, pfns)
    return limit + KERNEL_STACK_PAGES * PAGE_SIZE, limit, pfns


def free_stack(k: "Kernel", limit: int, pfns: Sequence[int]) -> None:
    mem = k.mem
    try:
        mem.unmap_pages(limit, len(pfns))
    except MemoryAccessError:  # a page somebody unmapped already: the rest, one by one
        for i in range(len(pfns)):
            mem.unmap_page(limit + i * PAGE_SIZE)
    k.phys.free_top_run(list(pfns))


def _qword(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFFFFFFFFFFFFFFFF
    address = getattr(value, "address", 0)  # an object stands for its address in memory
    return address & 0xFFFFFFFFFFFFFFFF if isinstance(address, int) else 0


def write_frames(k: "Kernel", base: int, limit: int, rows: Iterable[tuple[int, int, tuple]]) -> None:
    """Write (Child-SP, RetAddr, args) rows, innermost first, into the stack [limit, base).

    The region from below the innermost frame to StackBase is rewritten whole, so what a
    reader sees depends only on the rows (never on what was shown before)."""
    rows = list(rows)
    if not rows or not k.mem.is_mapped(limit):
        return
    low = max(limit, rows[0][0] - FRAME_SIZE)
    image = bytearray(base - low)
    for i, (sp, ret, args) in enumerate(rows):
        caller_sp = rows[i + 1][0] if i + 1 < len(rows) else base - INITIAL_FRAME
        slot = caller_sp - 8 - low
        if 0 <= slot and slot + 8 <= len(image):
            image[slot:slot + 8] = ret.to_bytes(8, "little")
        for j, arg in enumerate(tuple(args)[:4]):
            home = caller_sp + 8 * j - low
            if 0 <= home and home + 8 <= len(image):
                image[home:home + 8] = _qword(arg).to_bytes(8, "little")
        for arg in args:  # structures the caller keeps in its frame (a WSK_BUF)
            local = getattr(arg, "local_bytes", None)
            at = (getattr(arg, "address", 0) or 0) - low
            if local is not None and 0 <= at < len(image):
                data = local()
                image[at:at + len(data)] = data
    k.mem.write(low, bytes(image))
