"""What the debugger prints when the machine stops.

Every stop at a hand-off ends with the same two lines::

    nt!IofCallDriver+0x2c:
    fffff801`0a1b2c5c [winsrv] irp.dispatch: IoCallDriver ffffc10a3b2e1a30 IRP_MJ_DEVICE_CONTROL -> \\Driver\\AFD

(the symbol line as WinDbg prints it, then the address with the hand-off in
place of the disassembly: host, event kind, description).  A breakpoint adds
`Breakpoint N hit` in front, a break-in the break instruction line, a bug
check the fatal-error banner and the break in nt!DbgBreakPointWithStatus.
"""

from __future__ import annotations

from typing import Any

from wskdbg.render.fmt import addr64

BREAK_LINE = "Break instruction exception - code 80000003 (first chance)"


def event_text(ev: Any) -> str:
    """`irp.dispatch: IoCallDriver ...` — the event kind, then its description without the kind."""
    kind = ev.kind
    try:
        desc = ev.describe()
    except Exception as exc:  # an event's describe() must not break the stop display
        desc = f"<describe failed: {type(exc).__name__}>"
    if desc.startswith(kind + " "):
        desc = desc[len(kind):].strip()
    return f"{kind}: {desc}" if desc and desc != kind else kind


def handoff_lines(symbol_line: str, address: int, host: str, ev: Any) -> list[str]:
    return [f"{symbol_line}:", f"{addr64(address)} [{host}] {event_text(ev)}"]


def fatal_error_lines(code: int, params: tuple[int, int, int, int], break_address: int) -> list[str]:
    """What KD prints when a live target bug-checks: KeBugCheck2 breaks into the debugger
    before any bug check callback runs, so the stop is a break instruction in
    nt!DbgBreakPointWithStatus.  As published captures show it (e.g. the HTTP.sys
    CVE-2021-31166 crash, Bug Check 0x139)::

        *** Fatal System Error: 0x00000139
                               (0x0000000000000003,0xFFFFF90EA867EE40,0xFFFFF90EA867ED98,0x0000000000000000)

        Break instruction exception - code 80000003 (first chance)

        A fatal system error has occurred.
        Debugger entered on first try; Bugcheck callbacks have not been invoked.

        A fatal system error has occurred.

        For analysis of this file, run !analyze -v
        nt!DbgBreakPointWithStatus:
        fffff804`19410c50 cc              int     3
    """
    p = ",".join(f"0x{x:016X}" for x in params)
    return [
        f"*** Fatal System Error: 0x{code:08x}",
        f"                       ({p})",
        "",
        BREAK_LINE,
        "",
        "A fatal system error has occurred.",
        "Debugger entered on first try; Bugcheck callbacks have not been invoked.",
        "",
        "A fatal system error has occurred.",
        "",
        "For analysis of this file, run !analyze -v",
        "nt!DbgBreakPointWithStatus:",
        f"{addr64(break_address)} cc              int     3",
    ]


def seconds(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d} s"
