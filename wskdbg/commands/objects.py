"""The object namespace and device stacks: !object, !devstack, !stacks.

The kernel keeps its named objects in `Kernel.objects` (`\\Driver\\tcpip`, `\\Device\\Tcp`);
directories (`\\`, `\\Device`, `\\Driver`) follow from the names.  Directory and object-type
objects have no memory of their own in the lab, so their addresses are stable labels computed
from their names (they do not move between runs, and nothing is allocated to show them).
"""

from __future__ import annotations

import fnmatch
import zlib
from typing import TYPE_CHECKING, Any

from stack.kernel.io import DeviceObject, DriverObject

from wskdbg.commands.registry import CommandResult, Invocation, command, tokenize
from wskdbg.render.fmt import addr64_nobt

if TYPE_CHECKING:
    from stack.kernel.kernel import Kernel

    from wskdbg.engine import Engine

HASH_BUCKETS = 37  # OBJECT_DIRECTORY's hash table
_WAIT_FRAMES = ("nt!KiSwapContext", "nt!KiSwapThread", "nt!KeWaitForSingleObject", "nt!KeWaitForMultipleObjects")


def _label(k: "Kernel", name: str) -> int:
    """A stable address for an object without memory of its own (a directory, an object type)."""
    return k.system_ptes.base - 0x80000 + (zlib.crc32(name.lower().encode()) % 0x7000) * 0x10


def type_name(obj: Any) -> str:
    if isinstance(obj, DriverObject):
        return "Driver"
    if isinstance(obj, DeviceObject):
        return "Device"
    return type(obj).__name__


def namespace(k: "Kernel") -> dict[str, Any]:
    """Full name -> object, directories included (as the string "Directory")."""
    out: dict[str, Any] = {"\\": "Directory"}
    for name, obj in k.objects.items():
        parts = name.strip("\\").split("\\")
        for i in range(1, len(parts)):
            out.setdefault("\\" + "\\".join(parts[:i]), "Directory")
        out[name] = obj
    return out


def _lookup(ns: dict[str, Any], path: str) -> tuple[str, Any] | None:
    for name, obj in ns.items():
        if name.lower() == path.lower():
            return name, obj
    return None


def _children(ns: dict[str, Any], directory: str) -> list[tuple[str, Any]]:
    prefix = directory.rstrip("\\") + "\\"
    return sorted(((name[len(prefix):], obj) for name, obj in ns.items()
                   if name != directory and name.startswith(prefix) and "\\" not in name[len(prefix):]),
                  key=lambda item: item[0].lower())


def _bucket(name: str) -> int:
    return zlib.crc32(name.upper().encode()) % HASH_BUCKETS


def _address(k: "Kernel", name: str, obj: Any) -> int:
    return _label(k, name) if obj == "Directory" else obj.address


@command("!object", area="io", syntax="!object [Path | Address] [Flags] [Name]",
         summary="Show an object of the object namespace: a directory's entries, or a named object",
         help="""
`!object \\` lists the root directory, `!object \\Device` the device objects, `!object \\Driver`
the driver objects, `!object \\Device\\Tcp` one object; an address finds the named object there.
A directory lists its entries as Hash / Address / Type / Name.""")
def cmd_object(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if not words:
        raise inv.error("a path (\\Device) or an object address is required", 0)
    k = dbg.kernel
    ns = namespace(k)
    text, at = words[0]
    if text.startswith("\\"):
        found = _lookup(ns, text)
        if found is None:
            raise inv.error(f"{text} is not a valid object path", at)
    else:
        address = dbg.evaluate(text, inv.args_offset + at)
        found = next(((n, o) for n, o in ns.items() if _address(k, n, o) == address), None)
        if found is None:
            obj = k.object_at(address)
            if obj is None:
                raise inv.error(f"{addr64_nobt(address)}: not a valid object (no object of the lab lives there)", at)
            found = ("", obj)
    name, obj = found
    address = _address(k, name, obj)
    kind = "Directory" if obj == "Directory" else type_name(obj)
    parent = name.rsplit("\\", 1)[0] or "\\"
    short = name.rsplit("\\", 1)[-1] or "\\"
    lines = [f"Object: {addr64_nobt(address)}  Type: ({addr64_nobt(_label(k, 'ObjectType ' + kind))}) {kind}",
             f"    ObjectHeader: {addr64_nobt(address - 0x30)} (new version)"]
    entries = _children(ns, name) if kind == "Directory" else []
    lines.append(f"    HandleCount: 0  PointerCount: {len(entries) + 1 if kind == 'Directory' else 1}")
    if name and name != "\\":
        lines.append(f"    Directory Object: {addr64_nobt(_label(k, parent))}  Name: {short}")
    elif name == "\\":
        lines.append("    Directory Object: 0000000000000000  Name: \\")
    if kind == "Directory":
        lines += ["", "    Hash Address          Type                      Name",
                  "    ---- -------          ----                      ----"]
        by_bucket: dict[int, list[tuple[str, Any]]] = {}
        for child, cobj in entries:
            by_bucket.setdefault(_bucket(child), []).append((child, cobj))
        for bucket in sorted(by_bucket):
            for i, (child, cobj) in enumerate(by_bucket[bucket]):
                full = name.rstrip("\\") + "\\" + child
                ctype = "Directory" if cobj == "Directory" else type_name(cobj)
                hash_col = f"{bucket:02}" if i == 0 else "  "
                lines.append(f"     {hash_col}  {addr64_nobt(_address(k, full, cobj))} {ctype:<25} {child}")
    return CommandResult("\n".join(lines), {"name": name, "type": kind, "address": address,
                                             "entries": [c for c, _ in entries]})


def _device(dbg: "Engine", inv: Invocation, text: str, at: int) -> DeviceObject:
    k = dbg.kernel
    if not text.startswith(("\\", "0", "@", "$")) and not any(c in text for c in "+-*()`") \
            and not all(c in "0123456789abcdefABCDEF" for c in text):
        text = "\\Device\\" + text  # a bare name: the \Device\ prefix is implied
    if text.startswith("\\"):
        obj = next((o for n, o in k.objects.items() if n.lower() == text.lower()), None)
    else:
        obj = k.object_at(dbg.evaluate(text, inv.args_offset + at))
    if not isinstance(obj, DeviceObject):
        raise inv.error(f"{text} is not a device object", at)
    return obj


@command("!devstack", area="io", syntax="!devstack DeviceObject",
         summary="Show the device stack a device object belongs to, top first",
         help="""
DeviceObject is an address or a name (the \\Device\\ prefix is implied).  Rows
`!DevObj  !DrvObj  !DevExt  ObjectName` from the highest attached device down to the lowest;
> marks the device asked about.""")
def cmd_devstack(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if len(words) != 1:
        raise inv.error("a device object (address or name) is required", 0) if not words else \
            inv.syntax_error(words[1][1])
    dev = _device(dbg, inv, *words[0])
    top = dev
    while top.attached_device is not None:
        top = top.attached_device
    rows = []
    node: DeviceObject | None = top
    while node is not None:
        rows.append(node)
        node = node.lower_device
    lines = [" !DevObj           !DrvObj            !DevExt           ObjectName"]
    for d in rows:
        name = (d.name or "").rsplit("\\", 1)[-1]
        lines.append(f"{'>' if d is dev else ' '} {addr64_nobt(d.address)}  {d.driver_object.name:<18} "
                     f"{addr64_nobt(d.extension_address)}  {name}".rstrip())
    return CommandResult("\n".join(lines), {"stack": [d.address for d in rows], "device": dev.address})


@command("!stacks", area="inspection", syntax="!stacks [Detail [FilterString]]",
         summary="Summarize every thread's state and what it is blocked in",
         help="""
Detail 0 (default): one row per thread, `Proc.Thread  .Thread  Ticks  ThreadState  Blocker`,
where Blocker is the routine the thread is waiting in (or running).  Detail 1 or 2 adds each
thread's whole stack.  FilterString keeps the threads with a frame that matches it (wildcards,
e.g. !stacks 2 echosrv!*).""")
def cmd_stacks(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if len(words) > 2:
        raise inv.syntax_error(words[2][1])
    detail = dbg.evaluate(words[0][0], inv.args_offset + words[0][1]) if words else 0
    if detail > 2:
        raise inv.error("Detail is 0, 1 or 2", words[0][1])
    pattern = words[1][0] if len(words) > 1 else None
    if pattern is not None and not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"
    k = dbg.kernel
    current = dbg.current_thread()
    ticks_now = k.now_ns // 15_625_000
    lines = ["Proc.Thread  .Thread  Ticks   ThreadState Blocker"]
    data = []
    processed = 0
    groups = [("Idle", 0, [k.idle_thread]),
              ("System", 4, [t for t in k.threads if t.tid != 0 and t.state != "Terminated"])]
    from wskdbg.engine import system_process_address
    for image, pid, threads in groups:
        proc = 0 if pid == 0 else system_process_address(k)
        header = f"                            [{addr64_nobt(proc)} {image}]"
        rows: list[str] = []
        for t in threads:
            running = t is current
            frames = dbg.stack() if running else dbg.thread_stack(t)
            symbols = [f.call_site for f in frames]
            if pattern is not None and not any(fnmatch.fnmatchcase(s.lower(), pattern.lower()) for s in symbols):
                continue
            processed += 1
            state = "RUNNING" if running else {"Waiting": "Blocked", "Running": "Ready"}.get(t.state, t.state)
            blocker = next((f.call_site for f in frames if f.symbol not in _WAIT_FRAMES), frames[0].call_site)
            ticks = 0 if running else max(0, ticks_now - t.wait_started_ns // 15_625_000)
            rows.append(f"{t.pid:4x}.{t.tid:06x}  {addr64_nobt(t.address)} {ticks:07x} {state:<10} {blocker}")
            if detail:
                rows += [" " * 40 + s for s in symbols]
                rows.append("")
            data.append({"thread": t.address, "tid": t.tid, "state": state, "blocker": blocker, "stack": symbols})
        if rows:
            lines.append(header)
            lines += rows
    lines += ["", f"Threads Processed: {processed}"]
    return CommandResult("\n".join(lines), {"threads": data})
