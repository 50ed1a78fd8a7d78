"""`!irp` and `!irpfind`, read from the IRP's bytes in emulated memory.

The header and stack locations are decoded from memory with the `_IRP` and
`_IO_STACK_LOCATION` layouts; only names (drivers, routine symbols) are looked
up through callbacks, so the display is exactly what memory says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from stack.kernel.irp import (IO_STACK_LOCATION_SIZE, IO_TYPE_IRP, IRP_HEADER_SIZE, IRP_MJ_INTERNAL_DEVICE_CONTROL,
                              major_name, minor_name)
from stack.tdi.constants import tdi_minor_name
from stack.kernel.layouts import LAYOUTS

from wskdbg.render.fmt import addr64_nobt

CONTROL_WORDS = ((0x40, "Success"), (0x80, "Error"), (0x20, "Cancel"), (0x01, "pending"))
STACK_HEADER = "     cmd  flg cl Device   File     Completion-Context"


@dataclass(slots=True)
class IrpLocation:
    index: int
    address: int
    major: int
    minor: int
    flags: int
    control: int
    args: tuple[int, int, int, int]
    device: int
    file: int
    routine: int
    context: int
    driver: str = ""  # \Driver\X of the device
    routine_name: str = ""  # module!Routine of the completion routine
    current: bool = False

    @property
    def unused(self) -> bool:
        return not (self.major or self.minor or self.device or self.file or self.routine or self.context
                    or self.control or any(self.args))


@dataclass(slots=True)
class IrpView:
    address: int
    type: int
    size: int
    stack_count: int
    current_location: int
    mdl: int
    flags: int
    system_buffer: int
    status: int
    information: int
    requestor_mode: int
    pending_returned: int
    cancel: int
    cancel_irql: int
    user_iosb: int
    user_event: int
    cancel_routine: int
    user_buffer: int
    thread: int
    current_stack_location: int
    original_file_object: int
    locations: list[IrpLocation] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__slots__ if k != "locations"}
        d["locations"] = [{k: getattr(loc, k) for k in loc.__slots__} for loc in self.locations]
        return d


def _ptr(v: int) -> str:
    return "00000000" if v == 0 else addr64_nobt(v)


def _arg(v: int) -> str:
    return f"{v:08x}" if v <= 0xFFFFFFFF else addr64_nobt(v)


def decode_irp(read: Callable[[int, int], bytes | None], address: int, driver_of: Callable[[int], str],
               symbolize: Callable[[int], str]) -> IrpView | None:
    """Decode the IRP at `address`; None when memory cannot be read."""
    header = read(address, IRP_HEADER_SIZE)
    if header is None:
        return None
    irp_layout = LAYOUTS["_IRP"]
    f = irp_layout.by_name

    def field_of(name: str) -> int:
        v = irp_layout.unpack_field(f[name], header)
        return v if isinstance(v, int) else 0

    iosb = header[0x30:0x40]
    tail = header[0x78:0x78 + 0x58]
    tail_layout = LAYOUTS["_IRP_TAIL"]
    stack_count = field_of("StackCount")
    view = IrpView(
        address=address, type=field_of("Type"), size=field_of("Size"), stack_count=stack_count,
        current_location=field_of("CurrentLocation"), mdl=field_of("MdlAddress"), flags=field_of("Flags"),
        system_buffer=field_of("AssociatedIrp"), status=int.from_bytes(iosb[:4], "little"),
        information=int.from_bytes(iosb[8:16], "little"), requestor_mode=field_of("RequestorMode"),
        pending_returned=field_of("PendingReturned"), cancel=field_of("Cancel"), cancel_irql=field_of("CancelIrql"),
        user_iosb=field_of("UserIosb"), user_event=field_of("UserEvent"), cancel_routine=field_of("CancelRoutine"),
        user_buffer=field_of("UserBuffer"),
        thread=int(tail_layout.unpack_field(tail_layout.by_name["Thread"], tail)),
        current_stack_location=int(tail_layout.unpack_field(tail_layout.by_name["CurrentStackLocation"], tail)),
        original_file_object=int(tail_layout.unpack_field(tail_layout.by_name["OriginalFileObject"], tail)),
    )
    if view.type != IO_TYPE_IRP or not 1 <= stack_count <= 0x7F:
        return view
    loc_layout = LAYOUTS["_IO_STACK_LOCATION"]
    data = read(address + IRP_HEADER_SIZE, stack_count * IO_STACK_LOCATION_SIZE)
    if data is None:
        return view
    for i in range(stack_count):
        raw = data[i * IO_STACK_LOCATION_SIZE:(i + 1) * IO_STACK_LOCATION_SIZE]
        lf = loc_layout.by_name

        def lv(name: str, raw: bytes = raw) -> int:
            v = loc_layout.unpack_field(lf[name], raw)
            return v if isinstance(v, int) else 0

        params = raw[0x08:0x28]
        args = tuple(int.from_bytes(params[j * 8:(j + 1) * 8], "little") for j in range(4))
        loc = IrpLocation(index=i + 1, address=address + IRP_HEADER_SIZE + i * IO_STACK_LOCATION_SIZE,
                          major=lv("MajorFunction"), minor=lv("MinorFunction"), flags=lv("Flags"),
                          control=lv("Control"), args=args, device=lv("DeviceObject"), file=lv("FileObject"),
                          routine=lv("CompletionRoutine"), context=lv("Context"),
                          current=(i + 1 == view.current_location))
        loc.driver = driver_of(loc.device) if loc.device else ""
        loc.routine_name = symbolize(loc.routine) if loc.routine else ""
        view.locations.append(loc)
    return view


def kernel_irp_view(k, address: int) -> IrpView | None:
    """Decode the IRP at `address` from kernel `k`'s memory (the callbacks `decode_irp` needs)."""
    def read(at: int, length: int) -> bytes | None:
        cells = k.mem.read_partial(at, length)
        return None if any(c is None for c in cells) else bytes(cells)  # type: ignore[arg-type]

    def driver_of(device: int) -> str:
        drv = getattr(k.object_at(device), "driver_object", None)
        return drv.name if drv is not None else ""

    return decode_irp(read, address, driver_of, lambda a: k.symbol_for_address(a) or f"{a:x}")


# Every stack location prints the same way, used or not; an unused one is all zeros, as on
# Windows (MS Learn, Bug Check 0x9F example):
#    [N/A(0), N/A(0)]
#               0  0 00000000 00000000 00000000-00000000
#
#               Args: 00000000 00000000 00000000 00000000
def irp_lines(view: IrpView, detail: bool = False) -> list[str]:
    """The `!irp` display."""
    if view.type != IO_TYPE_IRP:
        return [f"IRP signature does not match, probably not an IRP (Type {view.type:#x} at {addr64_nobt(view.address)})"]
    cur_addr = view.address + IRP_HEADER_SIZE + (view.current_location - 1) * IO_STACK_LOCATION_SIZE
    lines = [f"Irp is active with {view.stack_count} stacks {view.current_location} is current "
             f"(= 0x{cur_addr & 0xFFFFFFFFFFFFFFFF:016x})"]
    mdl = f"Mdl={addr64_nobt(view.mdl)}: " if view.mdl else "No Mdl: "
    sysbuf = f"System buffer={addr64_nobt(view.system_buffer)}: " if view.system_buffer else "No System Buffer: "
    lines.append(f" {mdl}{sysbuf}Thread {_ptr(view.thread)}:  Irp stack trace.")
    if detail:
        lines += [
            f"Flags = {view.flags:08x}",
            f"IoStatus.Status = {view.status:08x}",
            f"IoStatus.Information = {_ptr(view.information)}",
            f"RequestorMode = {view.requestor_mode:08x}",
            f"PendingReturned = {view.pending_returned:02x}",
            f"Cancel = {view.cancel:02x}",
            f"CancelIrql = {view.cancel_irql:x}",
            f"UserIosb = {_ptr(view.user_iosb)}",
            f"UserEvent = {_ptr(view.user_event)}",
            f"CancelRoutine = {_ptr(view.cancel_routine)}",
            f"UserBuffer = {_ptr(view.user_buffer)}",
            f"Tail.Overlay.Thread = {_ptr(view.thread)}",
            f"Tail.Overlay.CurrentStackLocation = {_ptr(view.current_stack_location)}",
            f"Tail.Overlay.OriginalFileObject = {_ptr(view.original_file_object)}",
        ]
    lines.append(STACK_HEADER)
    for loc in view.locations:
        mark = ">" if loc.current else " "
        if loc.unused:
            lines.append(f"{mark}[N/A(0), N/A(0)]")
        else:
            mj = f"{major_name(loc.major)}({loc.major:x})"
            mn = f"{_minor_name(loc)}({loc.minor:x})"
            lines.append(f"{mark}[{mj}, {mn}]")
        words = " ".join(w for bit, w in CONTROL_WORDS if loc.control & bit)
        lines.append(f"            {loc.flags:x} {loc.control:2x} {_ptr(loc.device)} {_ptr(loc.file)} "
                     f"{_ptr(loc.routine)}-{_ptr(loc.context)} {words}".rstrip())
        owner = f"           {loc.driver}  {loc.routine_name}".rstrip()
        lines.append(owner if loc.driver or loc.routine_name else "")
        lines.append("            Args: " + " ".join(_arg(a) for a in loc.args))
    return lines


def _minor_name(loc: IrpLocation) -> str:
    """TDI requests (IRP_MJ_INTERNAL_DEVICE_CONTROL to \\Driver\\tdx) are named by their TDI minor."""
    if loc.major == IRP_MJ_INTERNAL_DEVICE_CONTROL and loc.driver.lower() == "\\driver\\tdx":
        return tdi_minor_name(loc.minor)
    return minor_name(loc.major, loc.minor)


# `!irpfind` on x64, as a published capture prints it (Windows 7 x64)::
#
#   Searching NonPaged pool (fffffa8018c04000 : fffffa8075c00000) for Tag 'Irp?'
#
#     Irp            [ Thread ]         irpStack: (Mj,Mn)   DevObj          [Driver]         MDL Process
#   fffffa8018d46d00 [fffffa801a9fa060] irpStack: ( 3, 0)  fffffa8019c02960 [ \Driver\kbdclass]
#   fffffa8019c22950 [fffffa801b27bb50] irpStack: ( e,20)  fffffa80198ae9a0 [ \Driver\AFD] 0xfffffa801aa034a0
#   fffffa8018df9ee0 [0000000000000000] Irp is complete (CurrentLocation 2 > StackCount 1)
#
# The trailing value is MdlAddress->Process, printed when the IRP has an MDL.
IRPFIND_COLUMNS = "  Irp            [ Thread ]         irpStack: (Mj,Mn)   DevObj          [Driver]         MDL Process"


def irpfind_header(pool: str, start: int, end: int) -> list[str]:
    return [f"Searching {pool} pool ({addr64_nobt(start)} : {addr64_nobt(end)}) for Tag 'Irp?'", "",
            IRPFIND_COLUMNS]


def irpfind_row(view: IrpView, mdl_process: int | None) -> str:
    """One IRP: its current stack location's (Mj,Mn), device and driver, or `Irp is complete`
    when CurrentLocation is past the last location (completed, or never sent)."""
    head = f"{view.address:016x} [{view.thread:016x}]"
    tail = f" 0x{mdl_process:016x}" if mdl_process is not None else ""
    current = next((loc for loc in view.locations if loc.current), None)
    if current is None:
        return (f"{head} Irp is complete (CurrentLocation {view.current_location} > StackCount "
                f"{view.stack_count}){tail}")
    return (f"{head} irpStack: ({current.major:2x},{current.minor:2x})  {current.device:016x} "
            f"[ {current.driver}]{tail}")
