"""Registers, expressions, stacks, modules, IRQL, DPCs, threads and processes."""

from __future__ import annotations

import fnmatch
import re
import time
from typing import TYPE_CHECKING, Any

from stack.kernel.irql import irql_name

from wskdbg.commands.processors import dpcs_waiting_for_a_processor, thread_times_text
from wskdbg.commands.registry import CommandResult, Invocation, command, tokenize
from wskdbg.engine import GP_REGISTERS, register_values, system_process_address
from wskdbg.expr import UserRegisters, format_evaluate, to_signed64
from wskdbg.render.fmt import addr64, addr64_nobt
from wskdbg.render.stack import format_k, format_registers
from wskdbg.render.stop import event_text

if TYPE_CHECKING:
    from wskdbg.engine import Engine


@command("?", area="inspection", syntax="? Expression",
         summary="Evaluate a MASM expression",
         help="""
MASM syntax, radix 16 unless `n` changed it: `? 10 + 0n10`, `? poi(@rsp)`, `? echosrv!WskSampleAcceptEvent`,
`? @$irql`, `? dwo(ffffc10a`3b2e1a30)`.  Prints `Evaluate expression: <decimal> = <hex>`.""")
def cmd_evaluate(dbg: "Engine", inv: Invocation) -> CommandResult:
    if not inv.args:
        from wskdbg.commands.session import cmd_help
        return cmd_help(dbg, inv)  # `?` alone lists the commands, as in WinDbg
    value = dbg.evaluate(inv.args, inv.args_offset)
    return CommandResult(format_evaluate(value), {"value": value, "signed": to_signed64(value)})


@command("n", area="inspection", syntax="n [Radix]",
         summary="Set (or show) the default number base of MASM expressions",
         help="""
`n 10` makes numbers without a prefix decimal in every MASM expression the debugger reads (`?`, addresses,
ranges, counts, `!nic itr` rates, breakpoint conditions); `n 8` octal, `n 16` hexadecimal, the default
when the debugger starts.  `n` alone shows the base.  Prints `base is 10`.  The prefixes 0x, 0n, 0t and 0y
always say their own base.  Radix itself is read in decimal.""")
def cmd_radix(dbg: "Engine", inv: Invocation) -> CommandResult:
    text = inv.args.strip()
    if text:
        if text not in ("8", "10", "16"):
            raise inv.error(f"Bad radix '{text}' (8, 10 or 16)", len(inv.args) - len(inv.args.lstrip()))
        dbg.state["radix"] = int(text)
    return CommandResult(f"base is {dbg.radix}", {"radix": dbg.radix})


_ASSIGN = re.compile(r"^\s*(@?\$?[A-Za-z0-9_]+)\s*=\s*(.+)$")


def location_lines(dbg: "Engine") -> tuple[str, str]:
    """The symbol line and address line of the current location (as a stop prints them)."""
    frames = dbg.stack()
    top = frames[0]
    ev = dbg.live_event()
    if ev is not None and ev.host == dbg.current_host:
        return top.call_site, f"{addr64(top.location)} [{ev.host}] {event_text(ev)}"
    crash = dbg.scheduler.halted
    if crash is not None and crash.host == dbg.current_host:
        return top.call_site, f"{addr64(top.location)} cc              int     3"
    return top.call_site, f"{addr64(top.location)} [{dbg.current_host}] idle: between events"


@command("r", area="inspection", syntax="r [Register[=Value]] | r $tN = Expression",
         summary="Display registers, or set a user pseudo-register",
         help="""
The emulated CPU has no instruction-level registers; `r` shows a faithful x64 layout in which
rip is the current routine (plus the hand-off's offset), rsp the thread's stack pointer derived
from the call depth, and rcx, rdx, r8, r9 the routine's first four arguments (the x64 calling
convention); the others read zero.  The block is KD's, line for line; the IRQL, thread,
host and position are on the status line (`!irql`, `!thread` and `.position` show them too).
`r rip`, `r @$irql`, `r $thread` show one register; `r $t0 = 5` sets a user pseudo-register
($t0..$t19), usable in expressions as @$t0.""")
def cmd_r(dbg: "Engine", inv: Invocation) -> CommandResult:
    args = inv.args
    m = _ASSIGN.match(args)
    if m:
        name = m.group(1).lstrip("@").lower()
        if UserRegisters.index_of(name) is None:
            if name in GP_REGISTERS or name.startswith("$"):
                raise inv.error(f"cannot set {name}: only the user pseudo-registers $t0..$t19 can be set "
                                "(the emulated CPU's registers are derived from its state)", 0)
            raise inv.error(f"Bad register error at '{m.group(1)}'", 0)
        value = dbg.evaluate(m.group(2), inv.args_offset + m.start(2))
        dbg.user_registers.set(name, value)
        return CommandResult("", {name: value})
    regs = register_values(dbg)
    if args:
        out = []
        data = {}
        for word, at in tokenize(args.replace(",", " ")):
            name = word.lstrip("@").lower()
            value = dbg.user_registers.get(name)
            if value is None:
                value = regs.get(name)
            if value is None:
                raise inv.error(f"Bad register error at '{word}'", at)
            data[name] = value
            out.append(f"{name}={value:x}" if name in ("$irql",) else f"{name}={value:016x}")
        return CommandResult("\n".join(out), data)
    symbol_line, location_line = location_lines(dbg)
    thread = dbg.current_thread()
    irql = dbg.current_irql()
    lines = format_registers(regs, symbol_line, location_line)
    dbg.note_address(addr64(regs["rip"]))
    return CommandResult("\n".join(lines), {"registers": regs, "irql": irql, "thread": thread.address,
                                             "host": dbg.current_host})


_K_PATTERN = r"k[bcnpvfL]*"


MAX_FRAME_COUNT = 0xFFFF  # WinDbg's limit for k's FrameCount


@command("k", area="inspection", syntax="k[b|c|n|p|v|L] [FrameCount]", pattern=_K_PATTERN,
         summary="Display the call stack (kn numbers frames, kb shows args, kc symbols only, kp params)",
         help="""
x64 shape: ` # Child-SP          RetAddr               Call Site`, frames numbered as current
WinDbg numbers them by default (`kn` is the same as `k`).  The stack is the emulated code's
logical call stack at the stop: e.g. tcpip routine <- ndis indicate <- miniport DPC <-
nt!KiRetireDpcList.  Child-SP comes from the thread's stack base and the depth; RetAddr is the
caller's routine address plus a stable offset.  After a bug check `k` shows the crash stack
(nt!KeBugCheckEx first).  Options combine: kbn, kcn.  FrameCount is hex.""")
def cmd_k(dbg: "Engine", inv: Invocation) -> CommandResult:
    options = inv.name[1:]
    count = None
    if inv.args:
        words = tokenize(inv.args)
        if len(words) > 1:
            raise inv.syntax_error(words[1][1])
        word = words[0][0]
        if word.lower().startswith("l"):
            word = word[1:]
        count = dbg.evaluate(word, inv.args_offset + words[0][1] + (len(words[0][0]) - len(word)))
        # `-5` evaluates to 0xffff...fffb: say so instead of printing "all" of a huge count.
        if to_signed64(count) < 0:
            raise inv.error(f"the frame count cannot be negative ({to_signed64(count)})", words[0][1])
        if not 1 <= count <= MAX_FRAME_COUNT:
            raise inv.error(f"the frame count must be 1..{MAX_FRAME_COUNT:#x}", words[0][1])
    frames = dbg.stack()
    for f in frames:
        dbg.note_address(addr64(f.child_sp))
    lines = format_k(frames, options, count)
    if "L" not in options:  # .lines on: [file @ line] after each frame with source (kL hides them)
        from wskdbg.commands.sourcemode import k_source_suffixes
        lines[1:] = [row + sfx for row, sfx in zip(lines[1:], k_source_suffixes(dbg, frames))]
    return CommandResult("\n".join(lines), {"frames": [
        {"symbol": f.symbol, "call_site": f.call_site, "child_sp": f.child_sp, "ret_addr": f.ret_addr,
         "address": f.location} for f in frames[:count]]})


# --- modules ---------------------------------------------------------------------------------

def _timestamp_text(ts: int) -> str:
    t = time.gmtime(ts)
    return f"{time.strftime('%a %b', t)} {t.tm_mday:>2} {time.strftime('%H:%M:%S %Y', t)} ({ts:08X})"


# Modules Microsoft ships: their symbols are public ("pdb symbols"); the lab's own drivers are
# built with their private PDBs.  The kernel's PDB (and loaded symbol image) is the
# multiprocessor kernel's, ntkrnlmp, whatever file name the loader gave it.
PUBLIC_SYMBOL_MODULES = frozenset({"nt", "hal", "ndis", "tcpip", "afd", "netio", "tdx", "tdi", "http", "kdcom"})
SYMBOL_IMAGES = {"nt": "ntkrnlmp.exe"}


def symbol_image_of(name: str, image: str) -> str:
    return SYMBOL_IMAGES.get(name, image)


def lm_row(name: str, start: int, end: int, image: str) -> str:
    """One `lm` row, as the debugger aligns it (a published capture)::

        fffff801`0da00000 fffff801`0ea46000   nt         (pdb symbols)          C:\\ProgramData\\Dbg\\sym\\ntkrnlmp.pdb\\...
        fffff801`0d390000 fffff801`0d3a1000   WppRecorder   (deferred)

    The lab has no symbol store, so the PDB is named without a cache path.
    """
    kind = "(pdb symbols)" if name in PUBLIC_SYMBOL_MODULES else "(private pdb symbols)"
    pdb = symbol_image_of(name, image).rsplit(".", 1)[0] + ".pdb"
    column = f"{name:<10} " if len(name) <= 10 else f"{name}   "
    return f"{addr64(start)} {addr64(end)}   {column}{kind:<23}{pdb}"


@command("lm", area="inspection", syntax="lm [v] [1m] [m Pattern]", pattern=r"lm[a-zA-Z0-9]*",
         summary="List loaded modules",
         help="""
`lm` lists every module of the current host with its range; `lm m echo*` filters by name
(wildcards); `lmv` / `lm v` adds image details; `lm 1m` prints just the names (for .foreach).""")
def cmd_lm(dbg: "Engine", inv: Invocation) -> CommandResult:
    flags = inv.name[2:].lower()
    one_per_line = False
    pattern = None
    need_pattern = flags.endswith("m")
    if need_pattern:
        flags = flags[:-1]
    if "1" in flags:
        raise inv.error("write lm 1m with a space", 0)
    for word, at in tokenize(inv.args):
        lw = word.lower()
        if need_pattern:
            pattern, need_pattern = word, False
        elif lw == "1m":
            one_per_line = True
        elif re.fullmatch(r"[volkuesnft]*m?", lw) and lw:
            need_pattern = lw.endswith("m")
            flags += lw.rstrip("m")
        else:
            raise inv.syntax_error(at)
    if need_pattern:
        raise inv.error("m needs a pattern, e.g. lm m echo*", len(inv.args))
    k = dbg.kernel
    mods = [m for m in sorted(k.modules, key=lambda m: m.base)
            if pattern is None or fnmatch.fnmatchcase(m.name.lower(), pattern.lower())]
    data = [{"name": m.name, "image": m.image, "start": m.base, "end": m.base + m.size} for m in mods]
    if one_per_line:
        return CommandResult("\n".join(m.name for m in mods), data)
    lines = ["start             end                 module name"]
    for m in mods:
        lines.append(lm_row(m.name, m.base, m.base + m.size, m.image))
        if "v" in flags:
            symbol_image = symbol_image_of(m.name, m.image)
            path = m.image if m.name == "nt" else f"\\SystemRoot\\system32\\drivers\\{m.image}"
            lines += [f"    Loaded symbol image file: {symbol_image}",
                      f"    Image path: {path}",
                      f"    Image name: {symbol_image}",
                      f"    Timestamp:        {_timestamp_text(m.timestamp)}",
                      f"    CheckSum:         {(m.timestamp ^ m.size) & 0xFFFFFFFF:08X}",
                      f"    ImageSize:        {m.size:08X}",
                      f"    Routines:         {len(m.symbols)}"]
        dbg.note_address(addr64(m.base))
    return CommandResult("\n".join(lines), data)


# --- IRQL, DPCs, threads, processes --------------------------------------------------------------

@command("!irql", area="inspection", syntax="!irql [Processor]",
         summary="Show the IRQL saved when the debugger stopped the machine",
         help="Prints `Debugger saved IRQL for processor 0x0 -- 2 (DISPATCH_LEVEL)`: the IRQL of the code "
              "the machine\nwas running at the stop (PASSIVE_LEVEL between events).")
def cmd_irql(dbg: "Engine", inv: Invocation) -> CommandResult:
    if inv.args:
        p = dbg.evaluate(inv.args, inv.args_offset)
        if p != 0:
            raise inv.error(f"processor {p:#x} does not exist (each host has one processor, 0)", 0)
    irql = dbg.current_irql()
    return CommandResult(f"Debugger saved IRQL for processor 0x0 -- {irql} ({irql_name(irql)})",
                         {"irql": irql, "name": irql_name(irql)})


@command("!dpcs", area="inspection", syntax="!dpcs [Processor]", summary="Show the queued DPCs",
         help="Rows `CPU Type      KDPC       Function` for each DPC queued on the host's processor, in the "
              "order they will run.")
def cmd_dpcs(dbg: "Engine", inv: Invocation) -> CommandResult:
    k = dbg.kernel
    count = len(k.cpu_model.processors) if k.cpu_model is not None else 1
    only = None
    if inv.args:
        only = dbg.evaluate(inv.args, inv.args_offset)
        if not 0 <= only < count:
            raise inv.error(f"processor {only:#x} does not exist ({k.name} has {count})", 0)
    rows = []
    waiting = dpcs_waiting_for_a_processor(k)
    for ev in waiting + dbg.scheduler.pending():
        if ev.kernel is not k or getattr(ev.fn, "__name__", "") != "_run_dpc" or len(ev.args) < 2:
            continue
        dpc = ev.args[1]
        from stack.kernel.symbols import symbol_of
        sym = symbol_of(dpc.routine)
        rows.append({"kdpc": dpc.address, "routine": sym, "address": k.symbol_address(sym),
                     "due_ns": ev.time_ns, "cpu": dpc.target})
    rows = [r for r in rows if only is None or r["cpu"] == only]
    lines = ["CPU Type      KDPC       Function"]
    for r in rows:
        lines.append(f"{r['cpu']:2d}: Normal  : 0x{addr64_nobt(r['kdpc'])} 0x{addr64_nobt(r['address'])} {r['routine']}")
    if not rows:
        lines.append(" 0: (the DPC queue is empty)")
    return CommandResult("\n".join(lines), {"dpcs": rows})


def _find_thread(dbg: "Engine", address: int) -> Any:
    for k in dbg.kernels.values():
        for t in k.threads:
            if t.address == address:
                return t
    return None


_WAIT_REASONS = {0: "Executive", 6: "UserRequest", 15: "WrQueue"}  # KWAIT_REASON, as !thread names them


def thread_lines(dbg: "Engine", t: Any, running: bool) -> list[str]:
    k = t.kernel
    if running:
        state = "RUNNING on processor 0"
    elif t.state == "Waiting":
        reason = _WAIT_REASONS.get(t.wait_reason, "UserRequest")
        state = f"WAIT: ({reason}) KernelMode Non-Alertable"
    else:
        state = t.state.upper()
    lines = [f"THREAD {addr64_nobt(t.address)}  Cid {t.pid:04x}.{t.tid:04x}  Teb: 0000000000000000 "
             f"Win32Thread: 0000000000000000 {state}"]
    if t.wait is not None:
        for obj in t.wait.objects:
            kind = type(obj).__name__.lstrip("K").capitalize()
            lines.append(f"    {addr64_nobt(getattr(obj, 'address', 0))}  {kind}")
    if t.irps:
        lines.append("IRP List:")
        for irp in t.irps:
            mdl = getattr(irp.mdl_address, "address", 0) or 0
            lines.append(f"    {addr64_nobt(irp.address)}: (0006,{irp.struct_size:04x}) Flags: {irp.flags:08x}  "
                         f"Mdl: {mdl:08x}" if not mdl else
                         f"    {addr64_nobt(irp.address)}: (0006,{irp.struct_size:04x}) Flags: {irp.flags:08x}  "
                         f"Mdl: {addr64_nobt(mdl)}")
    else:
        lines.append("Not impersonating")
    proc = system_process_address(k)
    ticks = k.now_ns // 15_625_000
    wait_start = t.wait_started_ns // 15_625_000
    start = t.win32_start_symbol
    start_addr = k.symbol_address(start) if k.module(start.partition("!")[0]) else 0
    frames = dbg.stack() if running else dbg.thread_stack(t)
    current_sp = frames[0].child_sp if frames else t.kernel_stack  # rsp, or the KernelStack saved at the switch
    lines += [
        f"Owning Process            {addr64_nobt(proc)}       Image:         System",
        "Attached Process          N/A            Image:         N/A",
        f"Wait Start TickCount      {wait_start}              Ticks: {ticks - wait_start}",
        f"Context Switch Count      {t.context_switches}              IdealProcessor: 0",
        "UserTime                  %s" % thread_times_text(k, t)[0],
        "KernelTime                %s" % thread_times_text(k, t)[1],
        f"Win32 Start Address {start} (0x{addr64_nobt(start_addr)})",
        f"Stack Init {addr64_nobt(t.stack_base)} Current {addr64_nobt(current_sp)}",
        f"Base {addr64_nobt(t.stack_base)} Limit {addr64_nobt(t.stack_limit)} Call 0000000000000000",
        f"Priority {t.priority}  BasePriority {t.priority}  IoPriority 2  PagePriority 5",
        "",
    ]
    lines += format_k(frames, "b", numbered=False)
    return lines


@command("!thread", area="inspection", syntax="!thread [Address]",
         summary="Display a thread: state, IRP list, stack",
         help="Without an address, the current thread of the current host (the idle thread between events).")
def cmd_thread(dbg: "Engine", inv: Invocation) -> CommandResult:
    current = dbg.current_thread()
    if inv.args:
        words = tokenize(inv.args)
        address = dbg.evaluate(words[0][0], inv.args_offset + words[0][1])
        t = _find_thread(dbg, address)
        if t is None:
            raise inv.error(f"{addr64(address)} is not a thread", 0)
    else:
        t = current
    running = t is current
    lines = thread_lines(dbg, t, running)
    return CommandResult("\n".join(lines), {"thread": t.address, "name": t.name, "state": t.state,
                                             "irps": [i.address for i in t.irps]})


@command("!process", area="inspection", syntax="!process [0 0]",
         summary="List processes (the System process of each host)",
         help="Kernel-only machines run one process, System (PID 4); its threads are the system threads.")
def cmd_process(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if len(words) > 2:
        raise inv.syntax_error(words[2][1])
    values = [dbg.evaluate(w, inv.args_offset + at) for w, at in words]
    k = dbg.kernel
    proc = system_process_address(k)
    if values and values[0] not in (0, proc):
        raise inv.error(f"{addr64(values[0])} is not a process (only System runs here)", 0)
    flags = values[1] if len(values) > 1 else 0x1F
    lines = ["**** NT ACTIVE PROCESS DUMP ****",
             f"PROCESS {addr64_nobt(proc)}",
             "    SessionId: none  Cid: 0004    Peb: 00000000  ParentCid: 0000",
             f"    DirBase: {k.phys.base_pfn << 12:08x}  ObjectTable: 0000000000000000  HandleCount: 0.",
             "    Image: System"]
    live = [t for t in k.threads if t.tid != 0 and t.state != "Terminated"]
    if flags & 0x6:
        lines.append("")
        for t in live:
            lines.append(f"        THREAD {addr64_nobt(t.address)}  Cid 0004.{t.tid:04x}  {t.state.upper()}  {t.name}")
    return CommandResult("\n".join(lines), {"process": proc, "threads": [t.address for t in live]})
