"""Clickable addresses: any kernel address in any view runs `app.inspect_address`."""

from __future__ import annotations

import re

from rich.style import Style
from rich.text import Text

# 16 hex digits (with or without WinDbg's backtick), or 0x-prefixed values of 8+ digits.
ADDRESS_RE = re.compile(r"\b(?:0x)?([0-9a-fA-F]{8}`?[0-9a-fA-F]{8}|(?<=0x)[0-9a-fA-F]{8,16})\b")
KERNEL_PREFIXES = ("ffff",)


def parse_address(token: str) -> int | None:
    digits = token.replace("`", "").removeprefix("0x")
    try:
        return int(digits, 16)
    except ValueError:
        return None


def is_kernel_address(value: int) -> bool:
    return value >= 0xFFFF_0000_0000_0000


def link_style(address: int) -> Style:
    return Style(underline=True, meta={"@click": f"app.inspect_address({address})"})


def linkify(text: str | Text, style: str = "") -> Text:
    """`text` with each kernel address underlined and clickable."""
    out = Text(text, style=style) if isinstance(text, str) else text.copy()
    plain = out.plain
    for match in ADDRESS_RE.finditer(plain):
        value = parse_address(match.group(1))
        if value is None or not is_kernel_address(value):
            continue
        out.stylize(link_style(value), match.start(1), match.end(1))
    return out
