"""`!analyze -v` explains verifier subcodes, and says which ones the emulator made up."""

from __future__ import annotations

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
