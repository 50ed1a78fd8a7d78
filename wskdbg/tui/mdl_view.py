"""The MDL view: the selected MDL chain as linked boxes, then the bytes it describes.

Each box shows one MDL header (address, StartVa, ByteOffset, ByteCount, flags
and page frames); arrows follow Next.  Below, a `db`-style hex and ASCII dump
of each MDL's bytes, read through the same zero-copy page views the stack
uses (the debugger reading memory is not a payload copy, so nothing is counted).

The view draws an `MdlPicture`: plain data (headers and the first bytes of each MDL)
taken where the machine lives (`mdl_picture`, wskdbg.tui.machine_side), so the TUI
never holds a live MDL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from stack.kernel.mdl import Mdl, mdl_flag_names
from stack.kernel.memory import MemoryAccessError
from wskdbg.render.dump import format_dump
from wskdbg.render.fmt import addr64, addr64_nobt

from .textlinks import link_style, linkify

BOX_INNER = 30  # characters inside a box's borders
BOX_WIDTH = BOX_INNER + 2
ARROW = " ──▶ "
MAX_CHAIN = 32  # a corrupt (cyclic) chain must not hang the view
DUMP_BYTES_PER_MDL = 256


@dataclass(frozen=True, slots=True)
class MdlBox:
    """One MDL's header and the first bytes it describes (or why they cannot be read)."""

    address: int
    start_va: int
    byte_offset: int
    byte_count: int
    flags: int
    mapped_system_va: int
    pfns: tuple[int, ...]
    virtual_address: int
    data: bytes | str


@dataclass(frozen=True, slots=True)
class MdlPicture:
    """A chain of MDLs as the view draws it; `more`: the chain goes on past MAX_CHAIN (or loops)."""

    source: str
    boxes: tuple[MdlBox, ...]
    more: bool = False


def mdl_boxes(chain: list[Mdl]) -> list[MdlBox]:
    """Reads the machine: call it where the machine lives, while it is stopped or on its thread."""
    return [MdlBox(m.address, m.start_va, m.byte_offset, m.byte_count, m.flags, m.mapped_system_va or 0,
                   tuple(m.pfns), m.virtual_address, mdl_bytes(m)) for m in chain]


def mdl_picture(mdl: Mdl | None, source: str = "") -> MdlPicture | None:
    if mdl is None:
        return None
    chain = chain_of(mdl)
    return MdlPicture(source, tuple(mdl_boxes(chain)), chain[-1].next is not None)


def chain_of(mdl: Mdl | None) -> list[Mdl]:
    out: list[Mdl] = []
    seen: set[int] = set()
    while mdl is not None and len(out) < MAX_CHAIN and id(mdl) not in seen:
        seen.add(id(mdl))
        out.append(mdl)
        mdl = mdl.next
    return out


def _box(mdl: MdlBox, index: int) -> list[Text]:
    """One MDL as the lines of a box (all exactly BOX_WIDTH wide)."""
    title = f" MDL {index} "
    top = Text("╭─" + title + "─" * (BOX_INNER - len(title) - 1) + "╮")
    rows: list[Text] = []

    def row(label: str, value: str, address: int | None = None) -> None:
        body = Text(f" {label:<10} ")
        body.append(value, style=link_style(address) if address else "")
        body.truncate(BOX_INNER, pad=True)
        rows.append(Text("│") + body + Text("│"))

    row("address", addr64_nobt(mdl.address), mdl.address)
    row("StartVa", addr64_nobt(mdl.start_va), mdl.start_va)
    row("ByteOffset", f"{mdl.byte_offset:#x}")
    row("ByteCount", f"{mdl.byte_count:#x} ({mdl.byte_count})")
    row("Flags", f"{mdl.flags:#06x}")
    names = mdl_flag_names(mdl.flags)
    short = "|".join(n.replace("SOURCE_IS_", "").replace("MAPPED_TO_SYSTEM_VA", "MAPPED") for n in names) or "-"
    row(" ", short)
    row("SystemVa", addr64_nobt(mdl.mapped_system_va) if mdl.mapped_system_va else "-",
        mdl.mapped_system_va or None)
    pfns = " ".join(f"{p:x}" for p in mdl.pfns[:3]) + (" …" if len(mdl.pfns) > 3 else "")
    row(f"PFN[{len(mdl.pfns)}]", pfns or "(none)")
    bottom = Text("╰" + "─" * BOX_INNER + "╯")
    return [top, *rows, bottom]


def render_chain(chain: list[MdlBox] | tuple[MdlBox, ...], width: int, more: bool = False) -> Text:
    """Boxes left to right, wrapping to the next row when the width runs out."""
    if not chain:
        return Text("No MDL selected: pick an IRP with an MdlAddress, or click an MDL address.", style="dim")
    per_row = max(1, (width + len(ARROW)) // (BOX_WIDTH + len(ARROW)))
    boxes = [_box(m, i) for i, m in enumerate(chain)]
    out = Text(no_wrap=True, overflow="crop")
    for start in range(0, len(boxes), per_row):
        group = boxes[start:start + per_row]
        height = len(group[0])
        for line in range(height):
            for j, box in enumerate(group):
                if j:
                    is_arrow_row = line == height // 2
                    out.append(ARROW if is_arrow_row else " " * len(ARROW))
                out.append_text(box[line])
            if line == height // 2 and start + per_row < len(boxes):
                out.append(" ──▶ ↵")
            out.append("\n")
    out.append(f"… chain continues ({len(chain)} shown)" if more else "Next = NULL", style="dim")
    total = sum(m.byte_count for m in chain)
    out.append(f"   {len(chain)} MDL(s), {total:#x} ({total}) bytes")
    return out


def mdl_bytes(mdl: Mdl, limit: int = DUMP_BYTES_PER_MDL) -> bytes | str:
    """The first `limit` bytes an MDL describes, or why they cannot be read."""
    try:
        views = mdl.views(0, min(limit, mdl.byte_count))
    except (MemoryAccessError, ValueError) as exc:
        return f"(cannot read: {exc})"
    return b"".join(bytes(v) for v in views)


def render_dump(chain: list[MdlBox] | tuple[MdlBox, ...], columns: int = 16) -> str:
    lines: list[str] = []
    for i, mdl in enumerate(chain):
        va = mdl.virtual_address
        lines.append(f"MDL {i} at {addr64(mdl.address)}: {mdl.byte_count:#x} bytes at VA {addr64(va)}")
        data = mdl.data
        if isinstance(data, str):
            lines.append("  " + data)
        else:
            lines.extend(format_dump("db", va, data, columns))
            if mdl.byte_count > len(data):
                lines.append(f"  … {mdl.byte_count - len(data):#x} more bytes (db {va + len(data):x})")
        lines.append("")
    return "\n".join(lines)


class MdlView(VerticalScroll):
    """Chain boxes + hex/ASCII dump of the selected MDL chain (an MdlPicture)."""

    DEFAULT_CSS = """
    MdlView { height: 1fr; }
    MdlView > #mdl-title { height: 1; color: $secondary; text-style: bold; }
    MdlView > #mdl-boxes { height: auto; }
    MdlView > #mdl-dump { height: auto; width: auto; margin-top: 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.picture: MdlPicture | None = None
        self._shown: tuple[Any, ...] = ()

    def compose(self) -> ComposeResult:
        yield Static("MDL chain", id="mdl-title")
        yield Static(render_chain([], 80), id="mdl-boxes")
        yield Static("", id="mdl-dump")

    @property
    def source(self) -> str:
        return self.picture.source if self.picture is not None else ""

    def show_picture(self, picture: MdlPicture | None) -> None:
        self.picture = picture
        self.refresh_contents()

    def refresh_contents(self, force: bool = False) -> None:
        picture = self.picture
        chain = picture.boxes if picture is not None else ()
        width = max(BOX_WIDTH, self.content_region.width or 80)
        # Repaint only when the picture or the width changed (stepping past unrelated events
        # must not flicker the dump).
        shown = (width, picture)
        if not force and shown == self._shown:
            return
        self._shown = shown
        title = "MDL chain" + (f" of {self.source}" if self.source else "")
        self.query_one("#mdl-title", Static).update(title)
        self.query_one("#mdl-boxes", Static).update(render_chain(chain, width, picture.more if picture else False))
        columns = 16 if width >= 78 else 8
        dump = linkify(render_dump(chain, columns)) if chain else Text("")
        dump.no_wrap = True
        self.query_one("#mdl-dump", Static).update(dump)

    def on_resize(self) -> None:
        self.refresh_contents()
