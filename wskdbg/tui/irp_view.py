"""The IRP view: outstanding and recent IRPs, and the selected IRP as `!irp` shows it.

Top: a fixed-height table (outstanding IRPs from every host's I/O manager,
then recently freed ones the event tap remembers).  Bottom: the selected IRP's
stack locations, completion routines and status, plus its recent history.
Selecting a row posts `IrpView.Selected`; the app then points the MDL view at
the IRP's MdlAddress chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import ScrollableContainer, Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from stack.kernel.irp import Irp, major_name
from stack.kernel.ntstatus import status_name
from wskdbg.render.fmt import addr64_nobt
from wskdbg.render.irp import irp_lines, kernel_irp_view

from .link import EngineLink, IrpNote
from .textlinks import linkify


@dataclass(frozen=True, slots=True)
class IrpRow:
    host: str
    address: int
    state: str  # "active", "pending", "completed", "freed"
    major: str
    location: str  # "2/3" current/count
    last: str


def irp_state(irp: Irp) -> str:
    if irp.freed:
        return "freed"
    if irp.completed:
        return "completed"
    if irp.pending_returned or any(loc.control & 0x01 for loc in irp.stack):
        return "pending"
    return "active"


def irp_rows(link: EngineLink) -> list[IrpRow]:
    rows: list[IrpRow] = []
    notes = {n.address: n for n in link.tap.irp_notes()}
    seen: set[int] = set()
    for host, irp in link.live_irps():
        loc = irp.current_stack_location
        major = major_name(loc.major) if loc is not None else "-"
        note = notes.get(irp.address)
        rows.append(IrpRow(host, irp.address, irp_state(irp), major.removeprefix("IRP_MJ_"),
                           f"{irp.current_location}/{irp.stack_count}", note.last if note else ""))
        seen.add(irp.address)
    for note in reversed(list(notes.values())):
        if note.address not in seen and note.freed:
            rows.append(IrpRow(note.host, note.address, "freed", "-", "-", note.last))
    return rows


def render_irp(irp: Irp) -> str:
    """`!irp`'s shape: header, then one block per stack location, '>' at the current one."""
    k = irp.kernel
    lines = []
    if irp.freed:
        lines.append(f"Irp {addr64_nobt(irp.address)} has been freed")
        return "\n".join(lines)
    state = "is active" if irp.active else "has been completed"
    mdl = irp.mdl_address
    mdl_text = f"Mdl={addr64_nobt(getattr(mdl, 'address', 0))}" if mdl is not None else "No Mdl"
    buffer = irp.system_buffer
    buffer_text = f"System buffer={addr64_nobt(getattr(buffer, 'address', buffer) or 0)}" if buffer else "No System Buffer"
    thread = irp.thread
    thread_text = f"Thread {addr64_nobt(getattr(thread, 'address', 0))}" if thread else "Thread 00000000"
    # The header and stack locations come from the one !irp renderer (read from memory).
    view = kernel_irp_view(k, irp.address)
    lines = irp_lines(view) if view is not None else [
        f"Irp {state} with {irp.stack_count} stacks {irp.current_location} is current "
        f"(= {addr64_nobt(_location_address(irp))})", f" {mdl_text}: {buffer_text}: {thread_text}"]
    status = irp.IoStatus.Status
    lines.append(f" IoStatus.Status = {status_name(status)} ({status & 0xFFFFFFFF:08x})  "
                 f"Information = {_addr(irp.IoStatus.Information):#x}  PendingReturned = {int(irp.pending_returned)}")
    if irp.owner:
        lines.append(f" Allocated by {irp.owner}")
    del k
    return "\n".join(lines)


def _location_address(irp: Irp) -> int:
    loc = irp.current_stack_location
    if loc is not None:
        return loc.address
    return irp.address + 0xD0 + (irp.current_location - 1) * 0x48


def _addr(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFFFFFFFFFFFFFFFF
    return getattr(value, "address", 0) or 0


def render_irp_detail(link: EngineLink, host: str, address: int) -> str:
    found = link.object_at(address)
    note: IrpNote | None = next((n for n in link.tap.irp_notes() if n.address == address), None)
    parts: list[str] = []
    if found is not None and isinstance(found[1], Irp):
        parts.append(render_irp(found[1]))
    else:
        parts.append(f"Irp {addr64_nobt(address)} on {host} has been freed")
    if note is not None and note.history:
        parts.append("")
        parts.append("History (event seq, what happened):")
        parts.extend("  " + line for line in note.history)
    return "\n".join(parts)


class IrpView(Vertical):
    """Table of IRPs + the selected one's `!irp`."""

    DEFAULT_CSS = """
    IrpView { height: 1fr; }
    IrpView > DataTable { height: 9; }
    IrpView > #irp-detail-scroll { height: 1fr; border-top: solid $primary 50%; }
    IrpView #irp-detail { width: auto; }
    """

    class Selected(Message):
        def __init__(self, host: str, address: int) -> None:
            super().__init__()
            self.host = host
            self.address = address

    def __init__(self, link: EngineLink, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.link = link
        self.rows: list[IrpRow] = []
        self.selected: tuple[str, int] | None = None
        self._detail_text = ""

    def compose(self) -> ComposeResult:
        table: DataTable = DataTable(id="irp-table", cursor_type="row", zebra_stripes=True)
        table.add_columns("host", "IRP", "state", "major", "loc", "last hand-off")
        yield table
        with ScrollableContainer(id="irp-detail-scroll"):
            yield Static("Select an IRP (Enter) to see its stack locations.", id="irp-detail")

    def refresh_from_link(self) -> None:
        rows = irp_rows(self.link)
        if rows != self.rows:
            self.rows = rows
            table = self.query_one(DataTable)
            cursor = table.cursor_row
            table.clear()
            for row in rows:
                style = "dim" if row.state == "freed" else ("bold" if row.state == "pending" else "")
                table.add_row(row.host, Text(addr64_nobt(row.address), style=style), row.state, row.major,
                              row.location, row.last[:60], key=f"{row.host}:{row.address:x}")
            if rows:
                table.move_cursor(row=min(cursor, len(rows) - 1), animate=False)
        self._show_detail()

    def select(self, host: str, address: int) -> None:
        self.selected = (host, address)
        self._show_detail()
        self.post_message(self.Selected(host, address))

    def _show_detail(self) -> None:
        if self.selected is None:
            return
        text = render_irp_detail(self.link, *self.selected)
        if text != self._detail_text:
            self._detail_text = text
            detail = linkify(text)
            detail.no_wrap = True  # long rows scroll sideways instead of folding
            self.query_one("#irp-detail", Static).update(detail)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        key = event.row_key.value or ""
        host, _, address = key.partition(":")
        if address:
            self.select(host, int(address, 16))
