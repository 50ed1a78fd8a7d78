"""`!analyze -v` explains verifier subcodes, and says which ones the emulator made up."""

from __future__ import annotations

import re

from stack.kernel import bugcheck as bc
from stack.kernel.bugcheck import BugCheckInfo

from wskdbg.render.analyze import analyze_lines


def _info(code: int, params: tuple[int, int, int, int]) -> BugCheckInfo:
    return BugCheckInfo(code=code, params=params, host="winsrv", time_ns=0, irql=0, thread=0,
                        thread_name="System", process="System", frames=[], faulting_symbol="testdrv!Bad")


def _arguments(info: BugCheckInfo) -> list[str]:
    return [line for line in analyze_lines(info, [], {}, verbose=True) if line.startswith("Arg") and line != "Arguments:"]


def test_analyze_describes_a_documented_0xc4_subcode_and_its_parameters() -> None:
    args = _arguments(_info(0xC4, (0x7F, 2, 0xFFFFC1CB00001000, 0)))
    assert args[0] == ("Arg1: 000000000000007f, MmBuildMdlForNonPagedPool was passed an MDL whose pages "
                       "are from paged pool.")
    assert args[1:3] == ["Arg2: 0000000000000002, Current IRQL", "Arg3: ffffc1cb00001000, MDL address"]
    assert args[3] == "Arg4: 0000000000000000, MDL flags"
    assert not any("emulator-defined" in a for a in args)


def test_analyze_marks_an_emulator_defined_subcode() -> None:
    args = _arguments(_info(0xC4, (bc.EMU_C4_MDL_FREED_LOCKED, 0xFFFFC1CB00001000, 2, 0)))
    assert args[0].startswith("Arg1: 0000000000001040, emulator-defined subcode: IoFreeMdl")
    assert args[2] == "Arg3: 0000000000000002, Number of locked pages"


def test_analyze_falls_back_to_the_generic_text_for_an_unknown_subcode() -> None:
    args = _arguments(_info(0xC4, (0x9999, 0, 0, 0)))
    assert args[0] == "Arg1: 0000000000009999, violation type"
    assert args[1] == "Arg2: 0000000000000000"


# A published `!analyze -v` of Bug Check 0x44 (a double IoCompleteRequest) begins:
#
#   *******************************************************************************
#   *                                                                             *
#   *                        Bugcheck Analysis                                    *
#   *                                                                             *
#   *******************************************************************************
#
#   MULTIPLE_IRP_COMPLETE_REQUESTS (44)
#   A driver has requested that an IRP be completed (IoCompleteRequest()), but
#   ...
#   fields in each of the stack locations.
#   Arguments:
#   Arg1: ffffc40ce0d93980, Address of the IRP
#   Arg2: 0000000000001269
#   Arg3: 0000000000000000
#   Arg4: 0000000000000000
#
#   Debugging Details:
#   ------------------
#
# and a current debugger's (Windows 10.0.22621, Bug Check 0x50) continues with
# `BUGCHECK_CODE:  50`, `BUGCHECK_P1: ffffe5068d8a4000` ... `BUGCHECK_P4: 0`, PROCESS_NAME,
# STACK_TEXT from nt!KeBugCheckEx, SYMBOL_NAME, MODULE_NAME, IMAGE_NAME, STACK_COMMAND,
# BUCKET_ID_FUNC_OFFSET, FAILURE_BUCKET_ID, OSPLATFORM_TYPE, then `Followup:     MachineOwner`.

class _Frame:
    def __init__(self, symbol: str, offset: int, sp: int) -> None:
        self.symbol, self.offset, self.child_sp, self.ret_addr = symbol, offset, sp, sp + 0x1000
        self.call_site = f"{symbol}+{offset:#x}" if offset else symbol
        self.args = (0x44, 0xFFFFC40CE0D93980)


def _report_0x44() -> list[str]:
    info = BugCheckInfo(code=0x44, params=(0xFFFFC40CE0D93980, 0x1269, 0, 0), host="winsrv", time_ns=0, irql=2,
                        thread=0, thread_name="Idle", process="System", frames=[],
                        faulting_symbol="buggy!BuggyTimerDpc")
    frames = [_Frame("nt!DbgBreakPointWithStatus", 0, 0xFFFFD57300005C00),
              _Frame("nt!KeBugCheckEx", 0x107, 0xFFFFD57300005D58),
              _Frame("buggy!BuggyTimerDpc", 0x214, 0xFFFFD57300005E58)]
    return analyze_lines(info, frames, {"buggy": "buggy.sys"}, verbose=True)


def test_analyze_banner_puts_bugcheck_analysis_24_columns_in() -> None:
    lines = _report_0x44()
    assert lines[:5] == ["*" * 79, "*" + " " * 77 + "*",
                         "*                        Bugcheck Analysis                                    *",
                         "*" + " " * 77 + "*", "*" * 79]


def test_analyze_0x44_prints_the_whole_description_and_bare_reserved_arguments() -> None:
    lines = _report_0x44()
    at = lines.index("MULTIPLE_IRP_COMPLETE_REQUESTS (44)")
    assert lines[at + 1] == "A driver has requested that an IRP be completed (IoCompleteRequest()), but"
    assert lines[at + 10] == "fields in each of the stack locations."
    assert lines[at + 11:at + 16] == ["Arguments:", "Arg1: ffffc40ce0d93980, Address of the IRP",
                                      "Arg2: 0000000000001269", "Arg3: 0000000000000000",
                                      "Arg4: 0000000000000000"]
    assert lines[at + 16:at + 19] == ["", "Debugging Details:", "------------------"]


def test_analyze_keys_come_in_the_current_debuggers_order_with_nothing_invented() -> None:
    lines = _report_0x44()
    keys = [line.split(":")[0] for line in lines if re.match(r"^[A-Z_0-9]+:", line)]
    assert keys == ["BUGCHECK_CODE", "BUGCHECK_P1", "BUGCHECK_P2", "BUGCHECK_P3", "BUGCHECK_P4", "PROCESS_NAME",
                    "STACK_TEXT", "SYMBOL_NAME", "MODULE_NAME", "IMAGE_NAME", "STACK_COMMAND",
                    "BUCKET_ID_FUNC_OFFSET", "FAILURE_BUCKET_ID", "OSPLATFORM_TYPE"]
    assert "BUGCHECK_CODE:  44" in lines and "BUGCHECK_P1: ffffc40ce0d93980" in lines
    assert "BUGCHECK_P2: 1269" in lines and "BUGCHECK_P4: 0" in lines
    assert "SYMBOL_NAME:  buggy!BuggyTimerDpc+214" in lines
    assert "FAILURE_BUCKET_ID:  0x44_buggy!BuggyTimerDpc" in lines
    assert lines[-2:] == ["Followup:     MachineOwner", "---------"]
    assert not any("HOST" in line or "(Idle)" in line for line in lines)


def test_analyze_stack_text_starts_at_kebugcheckex_without_frame_numbers() -> None:
    lines = _report_0x44()
    at = lines.index("STACK_TEXT:  ")
    assert lines[at + 1] == ("ffffd573`00005d58 ffffd573`00006d58     : 00000000`00000044 ffffc40c`e0d93980 "
                             "00000000`00000000 00000000`00000000 : nt!KeBugCheckEx+0x107")
    assert lines[at + 2].endswith(": buggy!BuggyTimerDpc+0x214")
    assert lines[at + 3] == ""
