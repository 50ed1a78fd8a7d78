"""Leak check for workload tests: what `!poolused` counts per tag, plus the kernel's object counts,
taken before and after a workload; any growth fails the test.

Take the baseline after a warm-up of the same shape as the workload (look-aside lists - tcpip's
header slots and MDLs, NDIS's NBL free lists - grow to the peak concurrency once and are then
reused), and let the lab go quiet before each snapshot (TIME_WAIT expired, workers exited).
"""

from __future__ import annotations

from dataclasses import dataclass


from stack.drivers.khttpd.state import khttpd_globals
from stack.fs.kfs import CCB_TAG, FCB_TAG, FILE_OBJECT_TAG, VOLUME_DEVICE_NAME, Volume
from stack.kernel.ke import EXP_IDLE_WORKERS_MAX, THREAD_TAG
from stack.kernel.kernel import Kernel
from stack.kernel.memory import NEVER_USED_FRAME
from stack.kernel.scheduler import HEAP_COMPACT_MIN
from stack.kernel.mdl import MDL_TAG
from stack.kernel.lookaside import lookaside_lists
from stack.kernel.pool import tag_to_str
from stack.tcpip.ip import SLOT_TAG
from stack.world import World


@dataclass(frozen=True)
class ResourceCounts:
    host: str
    pool: dict[str, tuple[int, int]]  # tag -> (allocations outstanding, bytes), as !poolused shows them
    objects: dict[str, int]  # threads, IRPs, TCBs, WSK sockets, NBLs and header slots in use


def _cached(kernel: Kernel) -> dict[str, int]:
    """Blocks that look-aside lists hold free for reuse, by tag: NDIS's NBL and NB free lists,
    tcpip's header slots (one MDL each) and its pool of partial MDLs, the file system's FCBs
    of cached files, the files khttpd's open-file cache keeps open and idle, the entries on drivers' lookaside lists (khttpd's).  They grow to the peak
    concurrency and stay; they are not leaks."""
    cached: dict[str, int] = {}
    ndis = kernel.extensions.get("ndis")
    for p in ndis.nbl_pools if ndis is not None else ():
        with_data = bool(p.params.fAllocateNetBuffer and p.params.DataSize)
        cached[p.tag] = cached.get(p.tag, 0) + len(p.free) * (2 if with_data else 1)
        if with_data:
            cached[MDL_TAG] = cached.get(MDL_TAG, 0) + len(p.free)
    for p in ndis.nb_pools if ndis is not None else ():
        cached[p.tag] = cached.get(p.tag, 0) + len(p.free)
    volume = kernel.objects.get(VOLUME_DEVICE_NAME)  # the file system keeps an FCB per cached file
    if volume is not None and isinstance(volume.extension, Volume):
        cached[FCB_TAG] = len(volume.extension.fcbs)
    open_files = getattr(khttpd_globals(kernel), "open_files", None)
    if open_files is not None:  # khttpd's open-file cache: a FILE_OBJECT and a CCB per idle open file
        # ... at most as many as it may keep: a cache past its OpenFileCache limit is growth
        idle = min(sum(1 for e in open_files.entries.values() if e.refs == 0), open_files.max_entries)
        cached[FILE_OBJECT_TAG] = cached.get(FILE_OBJECT_TAG, 0) + idle
        cached[CCB_TAG] = cached.get(CCB_TAG, 0) + idle
    for lookaside in lookaside_lists(kernel).values():
        cached[lookaside.tag_text] = cached.get(lookaside.tag_text, 0) + lookaside.current_depth
    tcpip = kernel.extensions.get("tcpip")
    if tcpip is not None:
        slots = tcpip.slot_pool
        cached[SLOT_TAG] = slots.total // 2  # pages of two slots each, in use or not
        cached[MDL_TAG] = cached.get(MDL_TAG, 0) + slots.total + len(tcpip.mdl_pool.free)
    return cached


def resource_counts(kernel: Kernel) -> ResourceCounts:
    pool: dict[str, list[int]] = {}
    for (tag, _paged), usage in kernel.pool.usage.items():
        row = pool.setdefault(tag_to_str(tag), [0, 0])
        row[0] += usage.allocs - usage.frees
        row[1] += usage.bytes_in_use
    for tag, count in _cached(kernel).items():  # count what is in use; bytes would include the cache
        row = pool.setdefault(tag, [0, 0])
        row[0] -= count
        row[1] = 0
    ext = kernel.extensions
    workers = ext.get("exp_workers")
    # system worker threads waiting for work, at most as many as ExpWorkerThread keeps idle
    idle_workers = min(len(workers.idle), EXP_IDLE_WORKERS_MAX) if workers is not None else 0
    if idle_workers:
        row = pool.setdefault(THREAD_TAG, [0, 0])
        row[0] -= idle_workers
        row[1] = 0
    ndis = ext.get("ndis")
    tcpip = ext.get("tcpip")
    wsk = ext.get("wsk")
    objects = {
        "time-wait tcbs": len(tcpip.tcp.time_wait) if tcpip is not None else 0,
        "threads": len(kernel.threads) - idle_workers,
        "irps": len(ext.get("irps", {})),
        "nbls in use": sum(p.in_use for p in ndis.nbl_pools) if ndis is not None else 0,
        "header slots in use": tcpip.slot_pool.total - len(tcpip.slot_pool.free) if tcpip is not None else 0,
        "tcbs": len(tcpip.tcp.tcbs) if tcpip is not None else 0,
        "wsk sockets": len(wsk.sockets) if wsk is not None else 0,
    }
    return ResourceCounts(kernel.name, {t: (a, b) for t, (a, b) in pool.items() if a or b}, objects)


def snapshot(world: World, hosts: tuple[str, ...] = ("winsrv", "client")) -> dict[str, ResourceCounts]:
    return {h: resource_counts(world.host(h).kernel) for h in hosts}


def structure_sizes(world: World, hosts: tuple[str, ...] = ("winsrv", "client")) -> dict[str, ResourceCounts]:
    """Python-side structures that once grew with every request (issue 14), for a test that runs
    the same workload twice and compares after the first and after the second run (they grow to
    the workload's peak once, like look-aside lists, then stay): the PFN rows made so far (freed
    frames are reused before fresh ones), pool block records (a VA is reused, so is its record),
    time-wait TCBs (bounded by max_time_wait_tcbs), and the scheduler's heap with its cancelled
    entries (compacted: within 2*HEAP_COMPACT_MIN or four times the live events)."""
    out = {}
    for h in hosts:
        k = world.host(h).kernel
        tcpip = k.extensions.get("tcpip")
        out[h] = ResourceCounts(h, {}, {
            "pfn rows": sum(1 for e in k.phys.pfns if e is not NEVER_USED_FRAME),
            "pool block records": len(k.pool.blocks) + len(k.pool._small),
            "time-wait tcbs": len(tcpip.tcp.time_wait) if tcpip is not None else 0})
    heap = world.scheduler.heap_size()
    live = len(world.scheduler.pending())
    out["world"] = ResourceCounts("world", {}, {"scheduler heap entries past its bound":
                                                max(0, heap - max(2 * HEAP_COMPACT_MIN, 4 * live))})
    return out


def growth(before: ResourceCounts, after: ResourceCounts) -> list[str]:
    """What grew, one line each (empty when nothing did)."""
    out = []
    for tag in sorted(set(before.pool) | set(after.pool)):
        b = before.pool.get(tag, (0, 0))
        a = after.pool.get(tag, (0, 0))
        if a[0] > b[0] or a[1] > b[1]:
            out.append(f"{after.host}: pool tag '{tag}' {b[0]} -> {a[0]} allocations, {b[1]:#x} -> {a[1]:#x} bytes")
    for name, value in after.objects.items():
        if value > before.objects.get(name, 0):
            out.append(f"{after.host}: {name} {before.objects.get(name, 0)} -> {value}")
    return out


def assert_no_growth(before: dict[str, ResourceCounts], after: dict[str, ResourceCounts]) -> None:
    problems = [line for host in before for line in growth(before[host], after[host])]
    assert not problems, "resources grew across the workload:\n" + "\n".join(problems)


def settle(world: World, seconds: float = 10.0) -> None:
    """Let connections finish closing and TIME_WAIT run out (the lab's is short), then check health."""
    world.run_for(int(seconds * 1e9))
    world.check()


