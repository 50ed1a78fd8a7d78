"""The IRP view: outstanding and recent IRPs, and the selected IRP exactly as `!irp` prints it.

Top: a fixed-height table (outstanding IRPs from every host's I/O manager,
then recently freed ones the event tap remembers).  Bottom: the selected IRP's
`!irp` text, from the command's own renderer (`wskdbg.commands.io.irp_result`).
The rows and the text come in a `MachineView` (see `link.py`): built on the
machine's thread at a hand-off while it runs, directly while it is stopped.
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

from stack.kernel.irp import Irp, live_irps, major_name
from wskdbg.render.fmt import addr64_nobt

from .link import EngineLink, IrpNote
from .textlinks import linkify

NO_SELECTION = "Select an IRP (Enter) to see it as !irp shows it."


@dataclass(frozen=True, slots=True)
class IrpRow:
    host: str
    address: int
    state: str  # "active", "pending", "completed", "freed"
    major: str
    location: str  # "2 of 3": the current stack location of how many
    last: str


def irp_state(irp: Irp) -> str:
    if irp.freed:
        return "freed"
    if irp.completed:
        return "completed"
    if irp.pending_returned or any(loc.control & 0x01 for loc in irp.stack):
        return "pending"
    return "active"


def location_text(current: int, count: int) -> str:
    """CurrentLocation of StackCount, read plainly: an IRP not yet sent down (or completed back
    up past its first location) has CurrentLocation = StackCount + 1, which is no location."""
    if 1 <= current <= count:
        return f"{current} of {count}"
    return f"none of {count}"


def irp_rows(kernels: dict[str, Any], notes: list[IrpNote]) -> list[IrpRow]:
    """Rows for every live IRP of every host, then the freed ones the tap remembers.
    Reads the machine: call it while it is stopped or on its thread."""
    rows: list[IrpRow] = []
    by_address = {n.address: n for n in notes}
    seen: set[int] = set()
    for host, kernel in kernels.items():
        for irp in live_irps(kernel):
            loc = irp.current_stack_location
            major = major_name(loc.major) if loc is not None else "-"
            note = by_address.get(irp.address)
            rows.append(IrpRow(host, irp.address, irp_state(irp), major.removeprefix("IRP_MJ_"),
                               location_text(irp.current_location, irp.stack_count), note.last if note else ""))
            seen.add(irp.address)
    for note in reversed(notes):
        if note.address not in seen and note.freed:
            rows.append(IrpRow(note.host, note.address, "freed", "-", "-", note.last))
    return rows


def irp_text(engine: Any, host: str, address: int) -> str:
    """The selected IRP as `!irp` prints it (the same renderer).  Reads the machine."""
    from wskdbg.commands.io import irp_result
    kernel = engine.kernels.get(host)
    if kernel is None or not isinstance(kernel.addr_objects.get(address), Irp):
        return f"Irp {addr64_nobt(address)} on {host} has been freed"
    result = irp_result(engine, address, host=host, note=False)
    return result.text if result is not None else f"Unable to read IRP at {addr64_nobt(address)}"


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
        table.add_columns("host", "IRP", "state", "major", "stack loc", "last hand-off")
        yield table
        with ScrollableContainer(id="irp-detail-scroll"):
            yield Static(NO_SELECTION, id="irp-detail")

    def show(self, rows: tuple[IrpRow, ...] | list[IrpRow], detail: str) -> None:
        """Repaint from a MachineView's rows and the selected IRP's `!irp` text."""
        rows = list(rows)
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
        self._show_detail(detail)

    def select(self, host: str, address: int) -> None:
        self.selected = (host, address)
        self.link.selected_irp = self.selected  # the machine-side view renders this one's !irp
        if not self.link.running:
            self._show_detail(self.link.view().irp_detail)
        self.post_message(self.Selected(host, address))

    @property
    def detail_text(self) -> str:
        return self._detail_text

    def _show_detail(self, text: str) -> None:
        if self.selected is None or not text:
            return
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
