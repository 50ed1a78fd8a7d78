"""Processors and their time: `!cpu` (turn a host's processor model on, show load), `!running`,
`!prcb`, `!runaway` (stack.kernel.cpu).

Without a processor model a host's code takes no time: these commands then say so.
Output shapes follow the Debugging Tools documentation:

    !running (MS Learn, "!running"):        System Processors 3 (affinity mask)
                                              Idle Processors 0
                                                   Prcb              Current           Next
                                                0  e0000000818f8000  e0000000818f9e50  e0000000866f12f0  ................
    !prcb (MS Learn, "!prcb"):              PRCB for Processor 0 at e0000000818ba000:
                                            Threads--  Current e0000000818bbe10 Next 0000000000000000 Idle e0000000818bbe10
                                            Number 0 SetMember 00000001
                                            Interrupt Count -- 0000b81f
                                            Times -- Dpc    00000028 Interrupt 000003ff
                                                     Kernel 00005ef4 User      00000385
    !runaway 7 (MS Learn, "!runaway"):       User Mode Time / Thread       Time / 0:55c        0:00:00.0093
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stack.kernel.costs import PROFILES
from stack.kernel.cpu import CLOCK_TICK_NS, DPC_LEVEL, ISR_LEVEL, install

from wskdbg.commands.lab import host_name, world_of
from wskdbg.commands.registry import CommandError, CommandResult, Invocation, command, tokenize
from wskdbg.render.fmt import addr64_nobt

if TYPE_CHECKING:
    from wskdbg.engine import Engine

PRCB_OFFSET = 0x180  # KPCR.Prcb on x64; a processor's KPCR sits one page after the previous one


def model_of(dbg: "Engine", host: str | None = None) -> Any:
    k = dbg.kernel if host is None else dbg.kernel_of(host)
    model = k.cpu_model
    if model is None:
        raise CommandError(f"{k.name} has no processor model: its code takes no time "
                           f"(turn it on with `!cpu {k.name} 2003`)")
    return model


def prcb_address(k: Any, number: int) -> int:
    return k.symbol_address("nt!KiProcessorBlock") + 0x1000 * number + PRCB_OFFSET


def running_thread(k: Any, p: Any) -> Any:
    """The thread a processor runs now (its idle thread when it is between bursts)."""
    return p.current_thread or k.idle_thread


def duration_text(ns: float, digits: int = 4) -> str:
    """h:mm:ss.ffff as !runaway prints times."""
    total = int(ns) // 1000  # microseconds
    seconds, micro = divmod(total, 1_000_000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    frac = f"{micro:06d}"[:digits]
    return f"{hours}:{minutes:02d}:{seconds:02d}.{frac}"


def thread_times_text(k: Any, t: Any) -> tuple[str, str]:
    """!thread's UserTime / KernelTime values (hh:mm:ss.mmm)."""
    model = k.cpu_model
    if model is None:
        return "00:00:00.000", "00:00:00.000"
    times = model.times(t)

    def fmt(ns: float) -> str:
        ms = int(ns) // 1_000_000
        s, ms = divmod(ms, 1000)
        m, s = divmod(s, 60)
        return f"{m // 60:02d}:{m % 60:02d}:{s:02d}.{ms:03d}"
    return fmt(times.user_ns), fmt(times.kernel_ns)


def dpcs_waiting_for_a_processor(k: Any) -> list:
    """DPC events in the processors' ready queues (queued, waiting for DISPATCH_LEVEL to free)."""
    model = k.cpu_model
    if model is None:
        return []
    return [ev for p in model.processors for lvl, ev in model.ready_events(p) if lvl == DPC_LEVEL]


# --- !cpu -------------------------------------------------------------------------------------------

@command("!cpu", area="network", syntax="!cpu [Host [Profile [Processors]]] | !cpu /watchdog Host SingleMs CumulativeMs",
         mutates=True,
         summary="Show each host's processors and load, or give a host processors that spend time",
         help="""
Emulator command.  `!cpu` lists each host's cost profile, processors, and the time its processors
spent in ISRs, DPCs and threads (the load is that time over the time since boot).
`!cpu winsrv 2003 1` gives winsrv one processor of the 2003-era profile (1.1 GHz); profiles:
zero (off: code takes no time), x64, 2003 - each operation's cost and its source are in
stack/kernel/costs.py.  `!cpu /watchdog winsrv 20 100` sets the host's DPC watchdog limits in
milliseconds (one DPC or ISR, and back-to-back work at DISPATCH_LEVEL and above), as the registry
values DpcTimeout and DpcWatchdogPeriod do; Windows' defaults are 20 s and 120 s.""")
def cmd_cpu(dbg: "Engine", inv: Invocation) -> CommandResult:
    world = world_of(dbg)
    words = tokenize(inv.args)
    if words and words[0][0].lower() == "/watchdog":
        if len(words) != 4:
            raise inv.syntax_error(inv.args_offset + words[-1][1])
        host = host_name(dbg, inv, words[1][0], inv.args_offset + words[1][1])
        model = model_of(dbg, host)
        single = dbg.evaluate("0n" + words[2][0], inv.args_offset + words[2][1])
        cumulative = dbg.evaluate("0n" + words[3][0], inv.args_offset + words[3][1])
        if single <= 0 or cumulative <= 0:
            raise inv.error("the limits must be positive milliseconds", inv.args_offset + words[2][1])
        model.single_limit_ns = single * 1_000_000
        model.cumulative_limit_ns = cumulative * 1_000_000
        return CommandResult(f"{host}: DPC watchdog at {single} ms for one DPC or ISR, {cumulative} ms at "
                             f"DISPATCH_LEVEL and above", {"single_ms": single, "cumulative_ms": cumulative})
    if words:
        host = host_name(dbg, inv, words[0][0], inv.args_offset + words[0][1])
        profile = words[1][0] if len(words) > 1 else "2003"
        if profile not in PROFILES:
            raise inv.error(f"unknown profile '{profile}' (profiles: {', '.join(PROFILES)})",
                            inv.args_offset + words[1][1])
        count = dbg.evaluate(words[2][0], inv.args_offset + words[2][1]) if len(words) > 2 else 1
        if not 1 <= count <= 64:
            raise inv.error("processors must be 1..64", inv.args_offset + words[2][1])
        install(world.host(host).kernel, profile, count)
    now = dbg.scheduler.now_ns
    lines = ["Host       Profile  CPUs  Load    ISR time      DPC time      Thread time   Interrupts  DPCs    CSwitch"]
    rows = []
    for name, h in world.hosts.items():
        model = h.kernel.cpu_model
        if model is None:
            lines.append(f"{name:<10} zero     -     -       (code takes no time)")
            rows.append({"host": name, "profile": "zero"})
            continue
        procs = model.processors
        isr = sum(p.isr_ns for p in procs)
        dpc = sum(p.dpc_ns for p in procs)
        thr = sum(p.thread_ns for p in procs)
        load = min(1.0, (isr + dpc + thr) / (now * len(procs))) if now else 0.0  # work runs ahead of the clock
        lines.append(f"{name:<10} {model.profile.name:<8} {len(procs):<5} {load * 100:5.1f}%  "
                     f"{isr / 1000:10.1f}us  {dpc / 1000:10.1f}us  {thr / 1000:10.1f}us  "
                     f"{sum(p.interrupts for p in procs):<11} {sum(p.dpcs for p in procs):<7} "
                     f"{sum(p.context_switches for p in procs)}")
        rows.append({"host": name, "profile": model.profile.name, "processors": len(procs), "load": load,
                     "isr_ns": isr, "dpc_ns": dpc, "thread_ns": thr})
    return CommandResult("\n".join(lines), {"hosts": rows})


# --- !running ---------------------------------------------------------------------------------------

@command("!running", area="inspection", syntax="!running [-i] [-t]",
         summary="Show what each processor of the current host runs",
         help="""
One row per busy processor (with -i also the idle ones): its PRCB, the current thread and the next
thread (the most urgent work in its ready queue), and the 16 queued spin locks (all free here).
Emulator addition: after each row, the level the processor runs at and what waits for it.""")
def cmd_running(dbg: "Engine", inv: Invocation) -> CommandResult:
    flags = {w for w, _ in tokenize(inv.args)}
    bad = flags - {"-i", "-t", "-it", "-ti"}
    if bad:
        raise inv.error(f"unknown option {sorted(bad)[0]}", 0)
    show_idle = any("i" in f for f in flags)
    k = dbg.kernel
    model = model_of(dbg)
    procs = model.processors
    mask = (1 << len(procs)) - 1
    idle = 0
    for p in procs:
        if p.current is None and not p.ready:
            idle |= 1 << p.number
    lines = [f"System Processors {mask:x} (affinity mask)", f"  Idle Processors {idle:x}"]
    if idle == mask and not show_idle:
        lines.append("All processors idle.")
    lines += ["", "     Prcb              Current           Next"]
    rows = []
    for p in procs:
        if idle >> p.number & 1 and not show_idle:
            continue
        current = running_thread(k, p)
        waiting = model.ready_events(p)
        next_thread = next((ev.args[1] for lvl, ev in waiting if lvl < DPC_LEVEL and len(ev.args) > 1
                            and hasattr(ev.args[1], "priority")), None)
        nxt = addr64_nobt(next_thread.address) if next_thread is not None else " " * 16
        lines.append(f" {p.number:2d}  {addr64_nobt(prcb_address(k, p.number))}  {addr64_nobt(current.address)}  "
                     f"{nxt}  ................")
        level = p.current_level
        now = dbg.scheduler.now_ns
        if level < 0 and p.busy_until > now:  # between events, still inside the last burst's time
            level = p.last_level
            doing = (f"{_level_name(level)} ({p.last_label}) for another "
                     f"{(p.busy_until - now) / 1000:.1f} us")
        else:
            doing = ("ISR " if level == ISR_LEVEL else "DPC " if level == DPC_LEVEL else
                     f"thread {current.name} (priority {level})" if level >= 0 else "idle")
            if level >= DPC_LEVEL and p.current is not None:
                doing += p.current.label
        lines.append(f"      running: {doing}; waiting: {_waiting_text(waiting)}")
        rows.append({"processor": p.number, "current": current.address, "level": level,
                     "waiting": [(lvl, ev.label) for lvl, ev in waiting]})
    return CommandResult("\n".join(lines), {"processors": rows, "idle_mask": idle})


def _level_name(level: int) -> str:
    return "ISR" if level == ISR_LEVEL else "DPC" if level == DPC_LEVEL else f"a thread (priority {level})"


def _waiting_text(waiting: list) -> str:
    if not waiting:
        return "nothing"
    isr = sum(1 for lvl, _ in waiting if lvl == ISR_LEVEL)
    dpc = sum(1 for lvl, _ in waiting if lvl == DPC_LEVEL)
    thr = len(waiting) - isr - dpc
    return f"{isr} ISR, {dpc} DPC, {thr} thread"


# --- !prcb ------------------------------------------------------------------------------------------

@command("!prcb", area="inspection", syntax="!prcb [Processor]",
         summary="Show a processor's control block: current/next/idle thread, counts and times",
         help="""
`Times` are in clock ticks (15.625 ms) as Windows keeps them; the emulator adds the exact times
in microseconds on the line after.""")
def cmd_prcb(dbg: "Engine", inv: Invocation) -> CommandResult:
    k = dbg.kernel
    model = model_of(dbg)
    number = dbg.evaluate(inv.args, inv.args_offset) if inv.args else 0
    if not 0 <= number < len(model.processors):
        raise inv.error(f"processor {number:#x} does not exist ({k.name} has {len(model.processors)})", 0)
    p = model.processors[number]
    current = running_thread(k, p)
    waiting = model.ready_events(p)
    next_thread = next((ev.args[1] for lvl, ev in waiting if lvl < DPC_LEVEL and len(ev.args) > 1
                        and hasattr(ev.args[1], "priority")), None)
    kernel_ns = sum(t.kernel_ns for t in model.thread_times.values())
    user_ns = sum(t.user_ns for t in model.thread_times.values())

    def ticks(ns: float) -> str:
        return f"{int(ns) // CLOCK_TICK_NS:08x}"
    lines = [f"PRCB for Processor {number} at {addr64_nobt(prcb_address(k, number))}:",
             f"Threads--  Current {addr64_nobt(current.address)} Next "
             f"{addr64_nobt(next_thread.address if next_thread else 0)} Idle {addr64_nobt(k.idle_thread.address)}",
             f"Number {number} SetMember {1 << number:08x}",
             f"Interrupt Count -- {p.interrupts:08x}",
             f"Times -- Dpc    {ticks(p.dpc_ns)} Interrupt {ticks(p.isr_ns)} ",
             f"         Kernel {ticks(kernel_ns)} User      {ticks(user_ns)}",
             f"(exact: Dpc {p.dpc_ns / 1000:.1f} us  Interrupt {p.isr_ns / 1000:.1f} us  "
             f"Threads {p.thread_ns / 1000:.1f} us  DPCs run {p.dpcs}  context switches {p.context_switches})"]
    return CommandResult("\n".join(lines), {"processor": number, "interrupts": p.interrupts, "dpc_ns": p.dpc_ns,
                                             "isr_ns": p.isr_ns, "thread_ns": p.thread_ns})


# --- !runaway ---------------------------------------------------------------------------------------

@command("!runaway", area="inspection", syntax="!runaway [Flags]",
         summary="Time each thread of the current host spent: user (1), kernel (2), since created (4)",
         help="""
Flags as in WinDbg: 0x1 user time (the default), 0x2 kernel time, 0x4 elapsed time; threads are
listed by most time first as `index:tid`, then the thread's name.  Exited threads that used no
processor time are left out.""")
def cmd_runaway(dbg: "Engine", inv: Invocation) -> CommandResult:
    k = dbg.kernel
    model = model_of(dbg)
    flags = dbg.evaluate(inv.args, inv.args_offset) if inv.args else 1
    if not flags & 7:
        raise inv.error("flags must include 1 (user), 2 (kernel) or 4 (elapsed)", 0)
    # an exited thread's object is gone in Windows: list it only while it still has time to show
    threads = [t for t in k.threads if t is not k.idle_thread
               and (not t.terminated or model.times(t).kernel_ns + model.times(t).user_ns > 0)]
    index = {t.address: i for i, t in enumerate(threads)}
    now = dbg.scheduler.now_ns
    sections: list[tuple[int, str, Any]] = [(1, "User Mode Time", lambda t: model.times(t).user_ns),
                                            (2, "Kernel Mode Time", lambda t: model.times(t).kernel_ns),
                                            (4, "Elapsed Time", lambda t: now - t.created_ns)]
    lines: list[str] = []
    data: dict[str, list] = {}
    for bit, title, value in sections:
        if not flags & bit:
            continue
        if lines:
            lines.append("")
        lines += [f" {title}", " Thread       Time"]
        ranked = sorted(threads, key=lambda t: (-value(t), index[t.address]))
        data[title] = []
        for t in ranked:
            ident = f"{index[t.address]}:{t.tid:x}"
            lines.append(f" {ident:<12} {duration_text(value(t))}    {t.name}")
            data[title].append({"thread": t.address, "name": t.name, "ns": value(t)})
    return CommandResult("\n".join(lines), data)


# --- !udpload ---------------------------------------------------------------------------------------

@command("!udpload", area="services", syntax="!udpload [/nomod] [/quota N] Rate Milliseconds", mutates=True,
         summary="Flood winsrv with UDP datagrams from client (a receive-livelock experiment)",
         help="""
Emulator command.  Starts a sink program on winsrv (UDP port 9000: recvfrom, then 10 us of its own
work per datagram) and 8 blasters on client that together send Rate 64-byte datagrams per second
for Milliseconds.  /nomod turns winsrv's interrupt moderation off, its Interrupt Moderation Rate
with it (*InterruptModeration 0: an interrupt per packet, all protocol work at DPC level); /quota N
lets each receive DPC indicate at most N NBLs (NDIS's MaxNblsToIndicate).  `!udpload` alone prints what the sink has delivered.  Runs when the machine
runs (g).  Rate and Milliseconds are decimal whatever `n` says, like a load tool's arguments
(/quota N is C syntax: 0x for hex).""")
def cmd_udpload(dbg: "Engine", inv: Invocation) -> CommandResult:
    from stack.usermode.socket import run_program
    from stack.usermode.udpload import SinkStats, udp_blaster, udp_sink
    world = world_of(dbg)
    server, client = world.host("winsrv"), world.host("client")
    stats = server.extras.get("udpload_stats")
    words = tokenize(inv.args)
    if not words:
        if stats is None:
            raise CommandError("no UDP load has run (start one with !udpload Rate Milliseconds)")
        return CommandResult(f"udpload: the sink on winsrv has delivered {stats.delivered} datagrams",
                             {"delivered": stats.delivered})
    values: list[int] = []
    i = 0
    while i < len(words):
        word, at = words[i]
        if word.lower() == "/nomod":
            server.nic.interrupt_moderation_ns = 0
            server.nic.set_interrupt_moderation_rate("Off")  # *InterruptModeration 0: no throttle either
        elif word.lower() == "/quota" and i + 1 < len(words):
            i += 1
            server.adapter.interrupt.throttle.MaxNblsToIndicate = int(words[i][0], 0)
        elif word.isdigit():
            values.append(int(word))
        else:
            raise inv.error(f"unexpected '{word}'", inv.args_offset + at)
        i += 1
    if len(values) != 2 or values[0] < 8:
        raise inv.error("give the rate (datagrams per second, at least 8) and the duration in milliseconds", 0)
    rate, ms = values
    if stats is None:
        stats = server.extras["udpload_stats"] = SinkStats()
        run_program(server.kernel, udp_sink, stats, name="udp-sink")
    count = rate * ms // 1000
    for n in range(8):
        run_program(client.kernel, udp_blaster, str(server.address4), rate // 8, count // 8, name=f"blaster{n}")
    return CommandResult(f"udpload: {rate} datagrams/s for {ms} ms from client to winsrv:9000 "
                         f"(moderation {server.nic.interrupt_moderation_ns // 1000} us); runs when the machine runs (g).",
                         {"rate": rate, "ms": ms})
