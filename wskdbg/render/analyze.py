"""`.bugcheck` and `!analyze [-v]` in WinDbg's layout."""

from __future__ import annotations

import re
from typing import Any, Sequence

from stack.kernel.bugcheck import BUGCHECK_HELP, argument_meanings

from wskdbg.render.fmt import addr64, addr64_nobt
from wskdbg.render.stack import format_k

# "Bugcheck Analysis" sits 24 columns into the 79-column box, as the debugger prints it.
BANNER = [
    "*" * 79,
    "*" + " " * 77 + "*",
    "*" + " " * 24 + "Bugcheck Analysis".ljust(53) + "*",
    "*" + " " * 77 + "*",
    "*" * 79,
]


def bugcheck_lines(code: int, params: Sequence[int]) -> list[str]:
    return [f"Bugcheck code {code:08x}", "Arguments " + " ".join(addr64(p) for p in params)]


def _module_of(symbol: str) -> str:
    return symbol.partition("!")[0] if "!" in symbol else symbol


def python_exception_note(detail: str) -> list[str]:
    """The exception line and the Python frames (file names only, no host paths or line numbers)."""
    if not detail:
        return []
    first = detail.splitlines()[0]
    frames = re.findall(r'File "([^"]+)", line \d+, in (\S+)', detail)
    out = ["PYTHON_EXCEPTION:  " + first, ""]
    if frames:
        out.append("PYTHON_STACK:")
        for path, fn in frames[-8:]:
            out.append(f"    {path.replace(chr(92), '/').rsplit('/', 1)[-1]} in {fn}")
        out.append("")
    return out


def _argument_lines(params: Sequence[int], meanings: Sequence[str]) -> list[str]:
    """`Arg1: ffffc40ce0d93980, Address of the IRP`; a reserved argument prints bare."""
    out = []
    for i, (p, meaning) in enumerate(zip(params, meanings), start=1):
        out.append(f"Arg{i}: {addr64_nobt(p)}" + (f", {meaning}" if meaning else ""))
    return "\n".join(out).splitlines()


def analyze_lines(info: Any, frames: Sequence[Any], image_of: dict[str, str], verbose: bool) -> list[str]:
    """The `!analyze` report in the current debugger's layout.  `frames` are the crash stack
    as `k` shows it; STACK_TEXT starts at nt!KeBugCheckEx, as the debugger's does.

    Held against a published `!analyze -v` (Windows 10.0.22621, Bug Check 0x50)::

        Debugging Details:
        ------------------
        ...
        BUGCHECK_CODE:  50

        BUGCHECK_P1: ffffe5068d8a4000
        ...
        PROCESS_NAME:  System
        ...
        STACK_TEXT:
        fffff90f`b6d8ebb8 fffff801`164a1e1d     : 00000000`00000050 ... : nt!KeBugCheckEx
        ...

        SYMBOL_NAME:  Driver+1d1e
        ...
        FAILURE_BUCKET_ID:  AV_W_(null)_Driver!unknown_function
        ...
        Followup:     MachineOwner
        ---------

    Lines the debugger would fill from a dump or the OS (KEY_VALUES_STRING, OS_VERSION,
    FAILURE_ID_HASH ...) are left out rather than invented; what only the emulator knows
    (a Python exception, a rule's note) is labelled as the emulator's.
    """
    description = BUGCHECK_HELP.get(info.code, ("", ()))[0]
    # Verifier codes: Arg1 is a subcode that decides what Arg2..Arg4 mean.
    arg_meanings = argument_meanings(info.code, info.params)
    culprit = info.faulting_symbol
    module = _module_of(culprit)
    image = image_of.get(module, f"{module}.sys")
    bucket = f"0x{info.code:X}_{culprit}"
    faulting = next((f for f in frames if f.symbol == culprit), None)
    offset = faulting.offset if faulting is not None else 0
    symbol_name = f"{culprit}+{offset:x}"
    if not verbose:
        return BANNER + ["", "Use !analyze -v to get detailed debugging information.", "",
                         f"BugCheck {info.code:X}, {{{', '.join(f'{p:x}' for p in info.params)}}}", "",
                         f"Probably caused by : {image} ( {symbol_name} )", "", "Followup:     MachineOwner",
                         "---------"]
    lines = BANNER + ["", f"{info.name} ({info.code:x})"]
    lines += description.splitlines() if description else ["(no description for this bug check code)"]
    lines.append("Arguments:")
    lines += _argument_lines(info.params, arg_meanings)
    lines += ["", "Debugging Details:", "------------------", "", ""]
    lines += [f"BUGCHECK_CODE:  {info.code:x}", ""]
    lines += [f"BUGCHECK_P{i}: {p:x}\n" for i, p in enumerate(info.params, start=1)]
    lines = "\n".join(lines).split("\n")
    lines += [f"PROCESS_NAME:  {info.process}", ""]
    if info.code == 0x1E:
        lines += python_exception_note(info.detail)
    elif info.detail:
        lines += ["EMULATOR_NOTE:  " + info.detail.splitlines()[0], ""]
    stack_text = frames
    for i, f in enumerate(frames):
        if f.symbol == "nt!KeBugCheckEx":
            stack_text = frames[i:]
            break
    lines.append("STACK_TEXT:  ")
    lines += format_k(stack_text, "b", numbered=False)[1:]
    lines += ["", "", f"SYMBOL_NAME:  {symbol_name}", "",
              f"MODULE_NAME: {module}", "", f"IMAGE_NAME:  {image}", "",
              "STACK_COMMAND:  .cxr; .ecxr ; kb", "", f"BUCKET_ID_FUNC_OFFSET:  {offset:x}", "",
              f"FAILURE_BUCKET_ID:  {bucket}", "", "OSPLATFORM_TYPE:  x64", "",
              "Followup:     MachineOwner", "---------"]
    return lines
