"""The stack view: each host's layers as a diagram, with live counters and the
current hand-off highlighted, so a person sees an IRP or a frame move between
layers as the machine steps.

The picture is a pure value (`StackPicture`, built by `build_picture`) and the
widget repaints only when it changes.  The widget's height depends only on
the number of layers, never on the contents, so stepping never shakes the
panes around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import RenderableType
from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from .link import LAYER_ORDER, LAYER_TITLES, EventTap, layer_of_module

ROWS_PER_LAYER = 2
MIN_COLUMN = 16  # the narrowest host column that still reads
PREFERRED_COLUMN = 26  # wide enough for a layer's driver names ("drivers echosrv khttpd")


@dataclass(frozen=True, slots=True)
class LayerRow:
    layer: str
    modules: str  # the drivers loaded in this layer ("echosrv khttpd")
    count: int  # hand-offs seen in this layer
    last: str  # the last thing that happened here


@dataclass(frozen=True, slots=True)
class StackPicture:
    hosts: tuple[tuple[str, tuple[LayerRow, ...]], ...]
    current: tuple[str, str] | None  # (host, layer) of the current event
    previous: tuple[str, str] | None  # where it came from
    caption: str  # the current event, described
    loads: tuple[tuple[str, str], ...] = ()  # host -> " cpu 42%" for hosts whose processors spend time

    @property
    def height(self) -> int:
        layers = max((len(rows) for _, rows in self.hosts), default=0)
        return 2 + layers * ROWS_PER_LAYER


def _layers_for(host: str, modules: list[str], counts: dict[tuple[str, str], int]) -> list[str]:
    """Every host shows the kernel stack; user mode only where it exists (the client)."""
    present = {layer_of_module(m) for m in modules}
    layers = []
    for layer in LAYER_ORDER:
        if layer == "user" and not (host == "client" or "user" in present or counts.get((host, "user"))):
            continue
        layers.append(layer)
    return layers


def build_picture(tap: EventTap, kernels: dict[str, Any], events_run: int) -> StackPicture:
    """The diagram's data at one moment.  Reads the machine's module lists: call it while the
    machine is stopped or on its thread."""
    counts, last_by_layer, event, current, previous = tap.layer_state()
    hosts = []
    for host, kernel in kernels.items():
        modules = [m.name for m in kernel.modules]
        by_layer: dict[str, list[str]] = {}
        for name in modules:
            layer = layer_of_module(name)
            if layer is not None:
                by_layer.setdefault(layer, []).append(name)
        rows = tuple(
            LayerRow(layer, " ".join(by_layer.get(layer, ())), counts.get((host, layer), 0),
                     last_by_layer.get((host, layer), ""))
            for layer in _layers_for(host, modules, counts)
        )
        hosts.append((host, rows))
    if event is not None:
        caption = f"#{event.seq} {event.host}: {event.describe()}"
    else:  # the status bar counts the events the machine ran before the views attached, too
        caption = f"event {events_run:,}: no hand-off seen since the views attached"
    loads = tuple((host, f" cpu {cpu_load(kernel):.0%}") for host, kernel in kernels.items()
                  if getattr(kernel, "cpu_model", None) is not None)
    return StackPicture(tuple(hosts), current, previous, caption, loads)


def cpu_load(kernel: object) -> float:
    """The host's processor load since boot (stack.kernel.cpu), 0..1."""
    model = kernel.cpu_model  # type: ignore[attr-defined]
    now = kernel.now_ns  # type: ignore[attr-defined]
    busy = sum(p.isr_ns + p.dpc_ns + p.thread_ns for p in model.processors)
    return min(1.0, busy / (now * len(model.processors))) if now else 0.0


class StackView(Widget, can_focus=True):
    """Renders a `StackPicture`; call `show(picture)` from the app's timer."""

    COMPONENT_CLASSES = {"stack-view--current", "stack-view--trail", "stack-view--title", "stack-view--idle",
                         "stack-view--caption"}
    DEFAULT_CSS = """
    StackView { height: 1fr; width: 1fr; padding: 0 1; }
    StackView > .stack-view--current { background: $accent; color: $text; text-style: bold; }
    StackView > .stack-view--trail { background: $accent 25%; }
    StackView > .stack-view--title { color: $secondary; text-style: bold; }
    StackView > .stack-view--idle { color: $text-muted; }
    StackView > .stack-view--caption { color: $warning; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.picture: StackPicture | None = None

    def show(self, picture: StackPicture) -> bool:
        """Repaint only when the picture changed; True when it did."""
        if picture == self.picture:
            return False
        self.picture = picture
        self.refresh()
        return True

    def render(self) -> RenderableType:
        picture = self.picture
        width = max(20, self.content_region.width or self.size.width)
        if picture is None or not picture.hosts:
            return Text("(no machine)", style=self.get_component_rich_style("stack-view--idle"))
        return render_picture(picture, width, self._styles())

    def _styles(self) -> dict[str, Style]:
        return {name: self.get_component_rich_style(f"stack-view--{name}", partial=True)
                for name in ("current", "trail", "title", "idle", "caption")}


def render_picture(picture: StackPicture, width: int, styles: dict[str, Style] | None = None) -> Text:
    """The diagram as text: one column per host, two lines per layer."""
    styles = styles or {}
    current_style = styles.get("current", Style(reverse=True, bold=True))
    trail_style = styles.get("trail", Style(underline=True))
    title_style = styles.get("title", Style(bold=True))
    idle_style = styles.get("idle", Style(dim=True))
    caption_style = styles.get("caption", Style(italic=True))

    gap = 2
    shown, hidden = _hosts_that_fit(picture, width, gap)
    n = len(shown)
    col = max(MIN_COLUMN, (width - gap * (n - 1)) // n)
    depth = max(len(rows) for _, rows in shown)
    columns: list[list[Text]] = []
    for host, rows in shown:
        lines: list[Text] = [Text(f" {host}{dict(picture.loads).get(host, '')} ".center(col, "─"), style=title_style)]
        pad = depth - len(rows)  # hosts without user mode start one layer lower
        for _ in range(pad * ROWS_PER_LAYER):
            lines.append(Text(" " * col))
        for row in rows:
            key = (host, row.layer)
            marker = "  "
            style = Style()
            if key == picture.current:
                style = current_style
                marker = _arrow(picture, host, rows, row.layer)
            elif key == picture.previous:
                style = trail_style
                marker = "· "
            title = LAYER_TITLES.get(row.layer, row.layer)
            count = f"{row.count:,}"
            head_room = col - len(marker) - len(count) - 1
            head = f"{title:<9} {row.modules}"[:head_room].ljust(head_room)
            line1 = Text(marker + head + " " + count, style=style)
            detail = row.last or ("" if row.count else "·")
            line2 = Text(("  │ " + detail)[:col].ljust(col), style=style if style else idle_style)
            lines.extend((line1, line2))
        columns.append(lines)
    out = Text(no_wrap=True, overflow="crop")
    height = max(len(c) for c in columns)
    for i in range(height):
        for j, lines in enumerate(columns):
            cell = lines[i] if i < len(lines) else Text(" " * col)
            if j:
                out.append(" " * gap)
            out.append_text(_fit(cell, col))
        out.append("\n")
    caption = picture.caption
    if hidden:
        caption = f"{caption}  (not shown: {' '.join(hidden)})"
    out.append(Text(caption[:width], style=caption_style))
    return out


def _hosts_that_fit(picture: StackPicture, width: int,
                    gap: int) -> tuple[list[tuple[str, tuple[LayerRow, ...]]], list[str]]:
    """As many host columns as the width holds at a readable size: the hosts of the current
    and the previous hand-off first, then the lab's order (winsrv, client, the service hosts)."""
    hosts = list(picture.hosts)
    room = max(1, (width + gap) // (PREFERRED_COLUMN + gap))
    if len(hosts) <= room:
        return hosts, []
    names = [host for host, _ in hosts]
    wanted = [key[0] for key in (picture.current, picture.previous) if key is not None and key[0] in names]
    chosen = set(list(dict.fromkeys(wanted + names))[:room])
    return [h for h in hosts if h[0] in chosen], [name for name in names if name not in chosen]


def _fit(text: Text, width: int) -> Text:
    text = text.copy()
    text.truncate(width, pad=True)
    return text


def _arrow(picture: StackPicture, host: str, rows: tuple[LayerRow, ...], layer: str) -> str:
    """▼ when the event moved down the stack, ▲ up, ⇄ across the wire from another host."""
    previous = picture.previous
    if previous is None:
        return "▶ "
    if previous[0] != host:
        return "⇄ "
    order = [r.layer for r in rows]
    if previous[1] in order and layer in order:
        return "▼ " if order.index(layer) > order.index(previous[1]) else "▲ "
    return "▶ "
