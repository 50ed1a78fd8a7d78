"""The footer of key bindings, rebuilt only when the keys it shows change.

Textual's `Footer` recomposes (a fresh FooterKey widget per key, each restyled) on every
`bindings_updated` signal, which a screen publishes on every focus change, although the
app's keys are the same from every pane: a tab switch (F2..F12) moved the focus and rebuilt
the footer three or four times, most of the switch's cost.  This one remembers what it last
showed and leaves its widgets alone while the shown keys, their descriptions and whether
they are enabled stay the same.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer


def shown_keys(screen: Screen) -> tuple:
    """What the footer shows: every `show` binding with its state, and the palette key."""
    return tuple((binding.key, binding.key_display, binding.description, binding.action, enabled, tooltip)
                 for (_, binding, enabled, tooltip) in screen.active_bindings.values()
                 if binding.show or binding.key == screen.app.COMMAND_PALETTE_BINDING)


class KeyFooter(Footer):
    """`Footer` that skips recomposing when the keys it shows did not change."""

    _shown: tuple | None = None

    def bindings_changed(self, screen: Screen) -> None:
        if self._bindings_ready and self._shown is not None and screen is self.screen \
                and shown_keys(screen) == self._shown:
            return
        super().bindings_changed(screen)

    def compose(self) -> ComposeResult:
        self._shown = shown_keys(self.screen) if self._bindings_ready else None
        yield from super().compose()
