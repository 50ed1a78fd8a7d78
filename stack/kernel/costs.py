"""Cost profiles: what each operation costs a processor, in nanoseconds (see stack.kernel.cpu).

Each operation is calibrated on its own from a published figure, named next to
it; none is fitted to a benchmark's result (DESIGN.md rule 8).  Two machines:

    x64    a current x64 server core, ~3 GHz, DDR4
    2003   the thesis's machine: a 1.1 GHz single-core Pentium III-class
           processor with PC133 SDRAM (per-operation cycle counts from the
           sources, at 1.1 GHz)

and "zero", which turns the model off.  Per-byte costs are per byte; the rest
are per call (per page, per segment, per request where the name says so).
Where a source gives a range we take its middle; where a figure is derived
(an operation nobody measured alone) its source text says "derived" and from
what - `DERIVED` lists them.  The figures
are quoted from the cited publications as remembered when this table was
written — check a figure at its source before leaning on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# op -> (2003 ns, x64 ns, source)
COST_TABLE: dict[str, tuple[float, float, str]] = {
    "interrupt": (2000, 1000,
                  "interrupt entry+exit with the ISR's uncached device-register read: Tsafrir, 'The "
                  "context-switch overhead inflicted by hardware interrupts', ExpCS 2007 (direct cost ~1-2 us); "
                  "Intel AP-450 'Interrupt Moderation using Intel Gigabit Ethernet Controllers' (why ~8000 int/s)"),
    "dpc": (500, 200,
            "DPC dispatch (DISPATCH_LEVEL software interrupt, KiRetireDpcList): derived, a quarter of an "
            "interrupt's direct cost (same source); no lookup of the DPC object in memory"),
    "context_switch": (6900, 1500,
                       "direct cost of a context switch: Li, Ding & Shen, 'Quantifying the cost of context "
                       "switch', ExpCS 2007: 3.8 us on a 2.0 GHz Xeon (~7600 cycles, at 1.1 GHz); current "
                       "cores ~1.2-1.5 us (E. Bendersky, 'Measuring context switching and memory overheads "
                       "for Linux threads', 2018)"),
    "syscall": (600, 150,
                "system call entry+exit (user<->kernel): lmbench null system call, McVoy & Staelin, USENIX "
                "1996 (~0.5-1 us on late-1990s x86); Soares & Stumm, 'FlexSC', OSDI 2010 (~100-150 cycles "
                "mode switch, plus kernel entry and mitigations today)"),
    "irp_alloc": (300, 60,
                  "IoAllocateIrp from a per-processor lookaside list plus IRP and stack-location init: "
                  "Russinovich & Solomon, Windows Internals 6th ed., ch. 8 (lookaside IRPs); cost derived as "
                  "one lookaside pop (pool_alloc) + ~100 stores"),
    "irp_dispatch": (150, 30,
                     "IoCallDriver: next stack location + indirect call through MajorFunction (~150 "
                     "instructions; derived from the path Windows Internals ch. 8 describes)"),
    "irp_complete": (1500, 400,
                     "IoCompleteRequest: completion routines up the stack, then the I/O-completion APC to the "
                     "requester (Windows Internals ch. 8): derived, about one interrupt's direct cost"),
    "pool_alloc": (250, 50,
                   "ExAllocatePoolWithTag served from a lookaside list: derived, ~150-300 cycles (an interlocked "
                   "SList pop plus the pool header and tag); Windows Internals 6th ed., ch. 10 'Look-Aside Lists' "
                   "describes the path, not its cost"),
    "pool_free": (250, 50, "ExFreePoolWithTag to a lookaside list: derived, as pool_alloc (an SList push)"),
    "mdl_build": (200, 50,
                  "IoAllocateMdl + MmBuildMdlForNonPagedPool (a lookaside MDL and a PFN fill): derived from "
                  "pool_alloc"),
    "probe_lock_page": (400, 100,
                        "MmProbeAndLockPages per page (PTE walk, PFN reference under the PFN lock): derived; "
                        "Microsoft's Registered I/O (Winsock RIO, 2012) exists to pay this once per buffer"),
    "cache_lookup": (1000, 250,
                     "cache manager lookup (CcCopyRead/CcMdlRead: shared cache map, VACB, page lookup): "
                     "derived, ~1000 cycles at 1.1 GHz"),
    "fs_read_page": (800, 200,
                     "file system read per 4 KiB page from the cache, excluding the copy: FastIo path "
                     "bookkeeping, derived (~900 cycles)"),
    "copy_byte": (2.5, 0.1,
                  "memcpy per byte: STREAM 'Copy' (McCalpin, cs.virginia.edu/stream): ~400 MB/s for a "
                  "PC133 Pentium III system; ~10 GB/s single-core on a current desktop"),
    "checksum_byte": (1.0, 0.05,
                      "Internet checksum per byte when not offloaded: derived from copy_byte - it reads "
                      "each byte once and writes nothing (RFC 1071); Kay & Pasquale, SIGCOMM 1993: checksum "
                      "and copy are the data-touching costs, of the same order; taken as ~40 % of a copy"),
    "tcp_rx_segment": (3000, 800,
                       "TCP/IP receive per segment excluding copy and checksum: derived, ~3300 cycles.  Clark, "
                       "Jacobson, Romkey & Salwen, IEEE Comm. 1989, count ~200 instructions for TCP's common "
                       "path alone; Kay & Pasquale 1993 find the non-data-touching overheads of the whole "
                       "stack (buffers, IP, demultiplexing, timers) many times that - the figure is a judgment "
                       "between the two, not a measurement"),
    "tcp_tx_segment": (2500, 700, "TCP/IP send per segment excluding copy and checksum: derived as "
                                  "tcp_rx_segment (same sources), a little less (no demultiplexing)"),
    "wsk_dispatch": (300, 80,
                     "a WSK call into afd (WskSend, WskReceive, WskAccept ... through the provider's "
                     "WSK_PROVIDER_*_DISPATCH table: an indirect call, socket-state checks, the transport "
                     "request set up; no system call and no IRP of its own - the client's IRP goes down): "
                     "derived, two irp_dispatch-sized calls.  MS Learn 'Winsock Kernel Architecture' "
                     "describes the path; nobody published a per-call figure"),
    "ndis_indicate": (500, 150,
                      "NDIS receive indication per NET_BUFFER_LIST (filter/protocol dispatch): derived, "
                      "~500 cycles"),
    "http_parse": (10000, 1000,
                   "HTTP request parse per request (request line, headers, path mapping): picohttpparser "
                   "benchmarks (~0.3-1 us per request on current cores); the 2003 figure is derived "
                   "(~11000 cycles: a parser of that era several times slower, on a slower core)"),
    "user_work": (1, 1, "a user program's own work, in nanoseconds (n = ns)"),
    "spin_ns": (1, 1, "a busy loop, in nanoseconds (n = ns): for tests and the watchdog"),
}

# Rows whose figure nobody measured alone (their source says from what it was derived).
DERIVED = frozenset(op for op, (_, _, source) in COST_TABLE.items() if "derived" in source)

# Operations a user-mode program performs itself (UserTime); everything else is KernelTime.
USER_OPS = frozenset({"http_parse", "user_work"})


@dataclass(frozen=True)
class CostProfile:
    name: str
    description: str
    column: int  # 0 = the 2003 figures, 1 = the x64 figures, -1 = zero
    overrides: dict[str, float] = field(default_factory=dict)

    @property
    def zero(self) -> bool:
        return self.column < 0

    def ns_table(self) -> dict[str, float]:
        if self.zero:
            return {op: 0.0 for op in COST_TABLE}
        table = {op: float(row[self.column]) for op, row in COST_TABLE.items()}
        table.update(self.overrides)
        return table


PROFILES: dict[str, CostProfile] = {
    "zero": CostProfile("zero", "no processor model: code takes no time (the machine of before)", -1),
    "x64": CostProfile("x64", "a current x64 server core (~3 GHz, DDR4)", 1),
    "2003": CostProfile("2003", "the thesis's machine: 1.1 GHz single-core, PC133 SDRAM", 0),
}

__all__ = ["COST_TABLE", "DERIVED", "USER_OPS", "CostProfile", "PROFILES"]
