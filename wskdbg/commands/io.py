"""IRPs, MDLs, drivers and devices: !irp, !irpfind, !mdl, !drvobj, !devobj."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stack.kernel.irp import IRP_MJ_NAMES, live_irps
from stack.kernel.layouts import LAYOUTS
from stack.kernel.mdl import MDL_HEADER_SIZE, mdl_flag_names
from stack.kernel.memory import ADDRESS_AND_SIZE_TO_SPAN_PAGES, PAGE_SIZE

from wskdbg.commands.registry import CommandResult, Invocation, command, tokenize
from wskdbg.render.dump import format_dump
from wskdbg.render.fmt import addr64, addr64_nobt
from wskdbg.render.irp import decode_irp, irp_lines, irpfind_header, irpfind_row

if TYPE_CHECKING:
    from wskdbg.engine import Engine

MDL_DUMP_LIMIT = 0x200  # bytes of each MDL's data shown by !mdl (use db for more)


def _reader(dbg: "Engine", k: Any = None):
    mem = (k or dbg.kernel).mem

    def read(address: int, length: int) -> bytes | None:
        cells = mem.read_partial(address, length)
        if any(c is None for c in cells):
            return None
        return bytes(cells)  # type: ignore[arg-type]

    return read


def _driver_of(dbg: "Engine", k: Any = None):
    k = k or dbg.kernel

    def driver_of(device: int) -> str:
        obj = k.object_at(device)
        drv = getattr(obj, "driver_object", None)
        return drv.name if drv is not None else ""

    return driver_of


def _symbolize(dbg: "Engine", k: Any = None):
    k = k or dbg.kernel

    def symbolize(address: int) -> str:
        return k.symbol_for_address(address) or f"{address:x}"

    return symbolize


@command("!irp", area="io", syntax="!irp Address [Detail]", summary="Display an I/O request packet",
         help="""
Reads the IRP and its stack locations from memory:
  Irp is active with N stacks C is current (= 0x<current location>)
   Mdl=<mdl>: No System Buffer: Thread <thread>:  Irp stack trace.
       cmd  flg cl Device   File     Completion-Context
  >[IRP_MJ_INTERNAL_DEVICE_CONTROL(f), N/A(0)]     (> marks the current location)
              0 e1 <device> <file> <routine>-<context> Success Error Cancel pending
             \\Driver\\X  module!CompletionRoutine
              Args: <Argument1..4>
`cl` is the Control byte (0x40 Success, 0x80 Error, 0x20 Cancel, 0x01 pending returned).
Any Detail value adds the status, flags, thread and the other header fields.""")
def cmd_irp(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if not words:
        raise inv.error("an IRP address is required", 0)
    if len(words) > 2:
        raise inv.syntax_error(words[2][1])
    address = dbg.evaluate(words[0][0], inv.args_offset + words[0][1])
    detail = len(words) == 2
    if detail:
        dbg.evaluate(words[1][0], inv.args_offset + words[1][1])
    result = irp_result(dbg, address, detail)
    if result is None:
        raise inv.error(f"Unable to read IRP at {addr64_nobt(address)} (memory not mapped)")
    return result


def irp_result(dbg: "Engine", address: int, detail: bool = False, host: str | None = None,
               note: bool = True) -> CommandResult | None:
    """What `!irp Address [Detail]` prints for the IRP at `address` on `host` (the current host
    by default); None when its memory is not mapped.  The TUI's IRP view shows this too."""
    k = dbg.kernel_of(host) if host else dbg.kernel
    view = decode_irp(_reader(dbg, k), address, _driver_of(dbg, k), _symbolize(dbg, k))
    if view is None:
        return None
    lines = irp_lines(view, detail)
    block = k.pool.block_containing(address)
    if block is not None and not block.allocated:
        lines.insert(0, f"Note: the pool block at {addr64_nobt(block.address)} is free: this IRP was freed.")
    if note:  # addresses for completion (the command's own output only)
        for loc in view.locations:
            if loc.device:
                dbg.note_address(addr64_nobt(loc.device))
        if view.mdl:
            dbg.note_address(addr64_nobt(view.mdl))
    return CommandResult("\n".join(lines), view.as_dict())


@command("!irpfind", area="io", syntax="!irpfind [-v] [PoolType [Restart [Criteria Data]]]",
         summary="Find the IRPs in pool",
         help="""
Lists the live IRPs of the current host in the x64 table
`  Irp            [ Thread ]         irpStack: (Mj,Mn)   DevObj          [Driver]         MDL Process`:
the current stack location's major/minor codes, device and driver, and MdlAddress->Process when
the IRP has an MDL; `Irp is complete (CurrentLocation N > StackCount M)` when no location is current.
PoolType 0 = nonpaged (default; IRPs live there), 1 = paged.  Criteria: arg, device,
fileobject, mdlprocess, thread, userevent, each followed by the value to match.""")
def cmd_irpfind(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = [w for w in tokenize(inv.args)]
    verbose = bool(words) and words[0][0].lower() == "-v"
    if verbose:
        words = words[1:]
    pool_type = 0
    criteria = None
    value = 0
    if words:
        pool_type = dbg.evaluate(words[0][0], inv.args_offset + words[0][1])
        if pool_type not in (0, 1, 2, 4):
            raise inv.error("PoolType is 0 (nonpaged), 1 (paged), 2 (special) or 4 (session)", words[0][1])
    if len(words) >= 2:
        dbg.evaluate(words[1][0], inv.args_offset + words[1][1])
    if len(words) == 3:
        raise inv.error(f"criteria '{words[2][0]}' needs a value", words[2][1])
    if len(words) >= 4:
        criteria = words[2][0].lower()
        if criteria not in ("arg", "device", "fileobject", "mdlprocess", "thread", "userevent"):
            raise inv.error(f"unknown criteria '{words[2][0]}' (arg, device, fileobject, mdlprocess, thread, "
                            "userevent)", words[2][1])
        value = dbg.evaluate(words[3][0], inv.args_offset + words[3][1])
    if len(words) > 4:
        raise inv.syntax_error(words[4][1])
    k = dbg.kernel
    region = k.paged_region if pool_type == 1 else k.nonpaged_region
    lines = irpfind_header("Paged" if pool_type == 1 else "NonPaged", region.base, region.base + region.size)
    rows = []
    irps = sorted(live_irps(k), key=lambda i: i.address) if pool_type != 1 else []
    read, driver_of, symbolize = _reader(dbg), _driver_of(dbg), _symbolize(dbg)
    for irp in irps:
        view = decode_irp(read, irp.address, driver_of, symbolize)
        if view is None or not _irp_matches(view, criteria, value):
            continue
        mdl_process = None
        if view.mdl:
            raw = read(view.mdl + 0x10, 8)  # _MDL.Process
            mdl_process = int.from_bytes(raw, "little") if raw is not None else 0
        lines.append(irpfind_row(view, mdl_process))
        current = next((loc for loc in view.locations if loc.current), None)
        rows.append({"irp": irp.address, "thread": view.thread, "owner": current.driver if current else None,
                     "major": current.major if current else None, "minor": current.minor if current else None,
                     "device": current.device if current else None, "complete": current is None})
        dbg.note_address(addr64_nobt(irp.address))
        if verbose:
            lines.extend("    " + line for line in irp_lines(view))
    return CommandResult("\n".join(lines), {"irps": rows})


def _irp_matches(view: Any, criteria: str | None, value: int) -> bool:
    if criteria is None:
        return True
    if criteria == "arg":
        return any(value in loc.args for loc in view.locations)
    if criteria == "device":
        return any(loc.device == value for loc in view.locations)
    if criteria == "fileobject":
        return view.original_file_object == value
    if criteria == "thread":
        return view.thread == value
    if criteria == "userevent":
        return view.user_event == value
    return False  # mdlprocess: MDLs here have no process


# --- MDLs ----------------------------------------------------------------------------------------

def _phys_bytes(k: Any, pfns: list[int], byte_offset: int, length: int) -> list[int | None]:
    out: list[int | None] = []
    phys = k.phys
    pos = byte_offset
    remaining = length
    page = 0
    while remaining > 0 and page < len(pfns):
        within = pos % PAGE_SIZE
        take = min(PAGE_SIZE - within, remaining)
        index = pfns[page] - phys.base_pfn
        if 0 <= index < phys.page_count:
            start = index * PAGE_SIZE + within
            out.extend(phys.data[start:start + take])
        else:
            out.extend([None] * take)
        remaining -= take
        pos += take
        page += 1
    out.extend([None] * remaining)
    return out


@command("!mdl", area="io", syntax="!mdl Address [L Length]", summary="Display an MDL chain and the bytes it describes",
         help="""
For each MDL of the chain (following Next): its fields, its flags by name, its PFN array, then a
hex dump of the bytes it describes (read through the PFNs, shown at the MDL's system or virtual
address; the first 0x200 bytes unless L gives a length).""")
def cmd_mdl(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if not words:
        raise inv.error("an MDL address is required", 0)
    address = dbg.evaluate(words[0][0], inv.args_offset + words[0][1])
    limit = MDL_DUMP_LIMIT
    if len(words) >= 2:
        if words[1][0].lower() != "l" and not words[1][0].lower().startswith("l"):
            raise inv.syntax_error(words[1][1])
        text = words[1][0][1:] or (words[2][0] if len(words) > 2 else "")
        if not text:
            raise inv.error("L needs a length", words[1][1])
        limit = dbg.evaluate(text, inv.args_offset + words[1][1] + 1)
        if not 0 < limit <= 0x100000:
            raise inv.error("length must be 1..0x100000", words[1][1])
    if address == 0:  # an IRP's MdlAddress is NULL when it describes no buffer
        return CommandResult("MDL address 0 is NULL: there is no MDL to display", {"chain": []})
    k = dbg.kernel
    read = _reader(dbg)
    layout = LAYOUTS["_MDL"]
    lines: list[str] = []
    chain = []
    seen: set[int] = set()
    current = address
    while current and len(chain) < 64:
        if current in seen:
            lines.append(f"(the chain loops back to {addr64_nobt(current)})")
            break
        seen.add(current)
        header = read(current, MDL_HEADER_SIZE)
        if header is None:
            if not chain:
                return CommandResult(f"Unable to read MDL at {addr64_nobt(current)} (memory not mapped)",
                                     {"error": "unreadable"}, True)
            lines.append(f"Unable to read MDL at {addr64_nobt(current)}")
            break
        v = {f.name: layout.unpack_field(f, header) for f in layout.fields}
        va = v["StartVa"] + v["ByteOffset"]
        pages = ADDRESS_AND_SIZE_TO_SPAN_PAGES(va, v["ByteCount"])
        capacity = max(0, (v["Size"] - MDL_HEADER_SIZE) // 8)
        count = min(pages, capacity, 512)
        raw = read(current + MDL_HEADER_SIZE, count * 8) if count else b""
        pfns = [int.from_bytes(raw[i * 8:i * 8 + 8], "little") for i in range(count)] if raw else []
        flags = v["MdlFlags"] & 0xFFFF
        names = "|".join(mdl_flag_names(flags)) or "none"
        lines += [f"Mdl {addr64_nobt(current)}: Next {addr64_nobt(v['Next'])}  Size 0n{v['Size']}  "
                  f"MdlFlags {flags:#06x} ({names})",
                  f"    Process {addr64(v['Process'])}  MappedSystemVa {addr64(v['MappedSystemVa'])}  "
                  f"StartVa {addr64(v['StartVa'])}",
                  f"    ByteOffset {v['ByteOffset']:#x}  ByteCount {v['ByteCount']:#x}  "
                  f"(virtual address {addr64(va)}, {pages} page{'s' if pages != 1 else ''})",
                  "    Physical pages: " + (" ".join(f"{p:x}" for p in pfns) or "(none: not built or locked)")]
        shown = min(v["ByteCount"], limit)
        base = v["MappedSystemVa"] if v["MappedSystemVa"] else va
        if pfns and shown:
            cells = _phys_bytes(k, pfns, v["ByteOffset"], shown)
            lines += format_dump("db", base, cells)
            if shown < v["ByteCount"]:
                lines.append(f"    ... {v['ByteCount'] - shown:#x} more bytes (db {addr64(base + shown)} "
                             f"L{v['ByteCount'] - shown:x})")
        chain.append({"address": current, "next": v["Next"], "size": v["Size"], "flags": flags,
                      "flag_names": mdl_flag_names(flags), "mapped_system_va": v["MappedSystemVa"],
                      "start_va": v["StartVa"], "byte_offset": v["ByteOffset"], "byte_count": v["ByteCount"],
                      "pfns": pfns})
        dbg.note_address(addr64(base))
        current = v["Next"]
    return CommandResult("\n".join(lines), {"chain": chain})


# --- driver and device objects ---------------------------------------------------------------------

def _find_object(dbg: "Engine", inv: Invocation, prefix: str, cls_name: str) -> Any:
    text = inv.args.split()[0] if inv.args else ""
    if not text:
        raise inv.error(f"an address or {prefix[1:-1].lower()} name is required", 0)
    k = dbg.kernel
    names = [text] if text.startswith("\\") else [prefix + text, text]
    for name in names:
        for key, obj in k.objects.items():
            if key.lower() == name.lower() and type(obj).__name__ == cls_name:
                return obj
    try:
        address = dbg.evaluate(text, inv.args_offset)
    except Exception:
        raise inv.error(f"{prefix}{text} is not a {cls_name} name or address", 0) from None
    obj = k.object_at(address)
    if obj is None or type(obj).__name__ != cls_name:
        raise inv.error(f"{addr64_nobt(address)} is not a {cls_name}", 0)
    return obj


# `!drvobj` as a published capture prints it (Windows 10 x64, a WDK-built driver)::
#
#   0: kd> !drvobj \Driver\Nidhogg 2
#   Driver object (ffffe089821e4b90) is for:
#    \Driver\Nidhogg
#
#   DriverEntry:   fffff8012fac5000	Nidhogg!GsDriverEntry
#   DriverStartIo: 00000000	
#   DriverUnload:  fffff8012fac1590	Nidhogg!NidhoggUnload
#   AddDevice:     00000000	
#
#   Dispatch routines:
#   [00] IRP_MJ_CREATE                      fffff8012fac1300	Nidhogg!NidhoggCreateClose
#   [01] IRP_MJ_CREATE_NAMED_PIPE           fffff8012ab0be00	nt!IopInvalidDeviceRequest
#
# Flag 1 (the default) lists the device objects, 2 the entry points and dispatch routines,
# 4 (with 1) each device in detail.  A WDK-built driver's DriverInit is the /GS stub
# GsDriverEntry, which initialises the security cookie and calls the driver's DriverEntry.
DRVOBJ_FLAGS = 0x7


@command("!drvobj", area="io", syntax="!drvobj DriverObject|Name [Flags]", summary="Display a driver object",
         help="""
Name may omit \\Driver\\.  Flags (hex, combinable): 1 device objects (the default), 2 entry points
(DriverEntry is the image's GsDriverEntry, as for any WDK-built driver) and dispatch routines
(unset ones are nt!IopInvalidDeviceRequest), 4 with 1: each device object in detail (!devobj).
Other bits are refused.""")
def cmd_drvobj(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    drv = _find_object(dbg, inv, "\\Driver\\", "DriverObject")
    flags = 1
    if len(words) >= 2:
        flags = dbg.evaluate(words[1][0], inv.args_offset + words[1][1])
        if flags & ~DRVOBJ_FLAGS:
            raise inv.error(f"unsupported flag bits {flags & ~DRVOBJ_FLAGS:#x} (1 devices, 2 dispatch routines, "
                            "4 device details)", words[1][1])
    if len(words) > 2:
        raise inv.syntax_error(words[2][1])
    k = dbg.kernel
    from stack.kernel.symbols import symbol_of
    lines = [f"Driver object ({addr64_nobt(drv.address)}) is for:", f" {drv.name}", ""]
    if flags & 1:
        lines += ["Driver Extension List: (id , addr)", "", "Device Object list:",
                  "".join(f"{addr64_nobt(d.address)}  " for d in drv.devices), ""]
        if flags & 4:
            for d in drv.devices:
                lines += _devobj_lines(d) + [""]
    if flags & 2:
        def entry(symbol: str | None) -> str:
            return f"{addr64_nobt(k.symbol_address(symbol))}\t{symbol}" if symbol else "00000000\t"

        def routine(fn: Any) -> str:
            return entry(symbol_of(fn) if fn is not None else "nt!IopInvalidDeviceRequest")

        module = getattr(drv, "module", None) or ""
        init = f"{module}!GsDriverEntry" if module and k.module(module) else (
            symbol_of(drv.driver_init) if drv.driver_init is not None else None)
        lines += [f"DriverEntry:   {entry(init)}", "DriverStartIo: 00000000\t",
                  f"DriverUnload:  {entry(symbol_of(drv.driver_unload)) if drv.driver_unload else '00000000' + chr(9)}",
                  "AddDevice:     00000000\t", "", "Dispatch routines:"]
        for mj, fn in enumerate(drv.major_function):
            lines.append(f"[{mj:02x}] {IRP_MJ_NAMES.get(mj, f'IRP_MJ_{mj:02x}'):<35}{routine(fn)}")
    for d in drv.devices:
        dbg.note_address(addr64_nobt(d.address))
    return CommandResult("\n".join(lines).rstrip("\n"), {"address": drv.address, "name": drv.name,
                                                        "devices": [d.address for d in drv.devices]})


@command("!devobj", area="io", syntax="!devobj DeviceObject|Name", summary="Display a device object",
         help="Name may omit \\Device\\.  Shows the owning driver, flags, extension and the attached devices.")
def cmd_devobj(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if len(words) > 1:
        raise inv.syntax_error(words[1][1])
    dev = _find_object(dbg, inv, "\\Device\\", "DeviceObject")
    drv = dev.driver_object
    lines = _devobj_lines(dev)
    return CommandResult("\n".join(lines), {
        "address": dev.address, "name": dev.name, "driver": drv.name, "stack_size": dev.stack_size,
        "upper": dev.attached_device.address if dev.attached_device else None,
        "lower": dev.lower_device.address if dev.lower_device else None})


def _devobj_lines(dev: Any) -> list[str]:
    drv = dev.driver_object
    name = dev.name.rsplit("\\", 1)[-1] if dev.name else ""
    current_irp = getattr(dev.current_irp, "address", dev.current_irp) or 0
    lines = [f"Device object ({addr64_nobt(dev.address)}) is for:",
             f" {name + ' ' if name else ''}{drv.name} DriverObject {addr64_nobt(drv.address)}",
             f"Current Irp {current_irp:08x} RefCount {dev.reference_count} Type {dev.device_type:08x} "
             f"Flags {dev.flags:08x}",
             f"DevExt {addr64_nobt(dev.extension_address) if dev.extension_address else '00000000'} "
             f"DevObjExt {addr64_nobt(dev.address + 0x140)} ",
             "ExtensionFlags (0x00000800)  DOE_DEFAULT_SD_PRESENT",
             f"Characteristics ({dev.characteristics:#010x})"]
    if dev.attached_device is not None:
        up = dev.attached_device
        lines.append(f"AttachedDevice (Upper) {addr64_nobt(up.address)} {up.driver_object.name}")
    if dev.lower_device is not None:
        low = dev.lower_device
        lines.append(f"AttachedTo (Lower) {addr64_nobt(low.address)} {low.driver_object.name}")
    lines.append("Device queue is not busy.")
    return lines
