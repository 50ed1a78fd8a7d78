"""`!verifier`: Driver Verifier's status, statistics and fault injection history.

The statistics block follows the shape Microsoft's Driver Verifier documentation shows
("Monitoring global counters" / low resources simulation):

    Verify Level 5 ... enabled options are:
            Special pool
            Inject random low-resource API failures

    Summary of All Verifier Statistics

    Pool Allocations Attempted             0x862e0e
    Pool Allocations Succeeded             0x8626e3
    Pool Allocations Failed                0x34f
    Resource Allocations Failed Deliberately   0x3f5

and `!verifier 4` opens with "Resource fault injection history:" and gives, per failed
allocation, the thread and the call stack that asked (here: the allocating routine and
its caller).  The settings are listed as `verifier /querysettings` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

from stack.kernel.verifier import CLASS_ROUTINES, FAULT_CLASSES, FaultRecord

from wskdbg.render.fmt import addr64

LOW_RESOURCES_FLAG = 0x4  # `verifier /flags` bit 2: (randomized) low resources simulation


@dataclass(slots=True)
class VerifierSummary:
    """What `!verifier` shows, taken from one kernel."""

    active: bool
    probability: int
    tags: list[str]
    images: list[str]
    classes: list[str]
    start_ns: int
    pool_succeeded: int
    pool_failed: int
    deliberate: int
    by_class: list[tuple[str, int, int, int]]  # class, attempts while active, injected, out of memory


def _stat(name: str, value: int) -> str:
    return f"{name:<38} {value:#x}" if len(name) < 39 else f"{name}   {value:#x}"


def summary_lines(s: VerifierSummary) -> list[str]:
    lines = [f"Verify Level {LOW_RESOURCES_FLAG if s.active else 0:x} ... enabled options are:"]
    if s.active:
        lines.append("        Inject random low-resource API failures")
    lines += ["", "Summary of All Verifier Statistics", "",
              _stat("Pool Allocations Attempted", s.pool_succeeded + s.pool_failed),
              _stat("Pool Allocations Succeeded", s.pool_succeeded),
              _stat("Pool Allocations Failed", s.pool_failed),
              _stat("Resource Allocations Failed Deliberately", s.deliberate), ""]
    lines += ["Low Resources Simulation options:", ""]
    if s.active:
        lines.append(f"- Fault injection probability: {s.probability}/10000.")
        if s.tags:
            lines.append(f"- Fail only allocations using pool tags: {' '.join(s.tags)}.")
        if s.images:
            lines.append(f"- Simulate low resources conditions only in: {' '.join(s.images)}.")
        lines.append(f"- Allocation classes: {' '.join(s.classes)}.")
        if s.start_ns:
            lines.append(f"- Starts at: {s.start_ns / 1e9:.6f}s.")
    else:
        lines.append("- Low resources simulation: Disabled.")
    lines += ["", "Allocations that returned NULL, by class:", "",
              "Class     Tried while on  Failed deliberately  Out of memory  Routine"]
    for cls, attempts, injected, exhausted in s.by_class:
        lines.append(f"{cls:<9} {attempts:>#14x}  {injected:>#19x}  {exhausted:>#13x}  {CLASS_ROUTINES[cls]}")
    return lines


def history_lines(records: list[FaultRecord], total: int, symbol_address: dict[str, int]) -> list[str]:
    """`!verifier 4`: the newest failed allocations first."""
    lines = ["Resource fault injection history:",
             f"(# entries: {total}, shown: {len(records)}, newest first)"]
    if not records:
        lines += ["", "No allocation has failed."]
    for r in records:
        kind = "deliberate" if r.injected else "out of memory"
        tag = f" tag '{r.tag}'" if r.tag else ""
        lines += ["", f"Entry (index {r.index:x})  {r.time_ns / 1e9:.6f}s  {r.cls}{tag}  ({kind})", "",
                  f"    Thread: {addr64(r.thread)}", ""]
        for symbol in (CLASS_ROUTINES[r.cls], r.caller):
            lines.append(f"    {addr64(symbol_address.get(symbol, 0))} {symbol}")
    return lines


__all__ = ["VerifierSummary", "summary_lines", "history_lines", "FAULT_CLASSES"]
