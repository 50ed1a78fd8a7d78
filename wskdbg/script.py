"""Running `.wds` session scripts and checking their transcripts.

A script is one command line per line (`;` separates commands, `$$` starts a
comment).  The transcript echoes each line as `0: kd> line` followed by its
output, so same seed + same script gives a byte-identical transcript.

    wskdbg run session.wds            print the transcript
    wskdbg run session.wds --check    compare with session.out (unified diff, exit 1 on mismatch)
    wskdbg run session.wds --update   (re)write session.out
"""

from __future__ import annotations

import difflib
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

from wskdbg.commands.registry import PROMPT, CommandResult


@dataclass(slots=True)
class ScriptStep:
    line_number: int
    command: str
    result: CommandResult


@dataclass(slots=True)
class ScriptRun:
    path: str
    steps: list[ScriptStep] = field(default_factory=list)

    @property
    def transcript(self) -> str:
        parts: list[str] = []
        for step in self.steps:
            parts.append(f"{PROMPT}{step.command}")
            if step.result.text:
                parts.append(step.result.text)
        return "\n".join(parts) + "\n"

    @property
    def errors(self) -> list[ScriptStep]:
        return [s for s in self.steps if s.result.error]

    def error_lines(self) -> list[str]:
        name = os.path.basename(self.path)
        out = []
        for step in self.errors:
            message = step.result.data.get("error") if isinstance(step.result.data, dict) else None
            out.append(f"{name}:{step.line_number}: error: {message or step.result.text.strip()}")
        return out

    def as_json(self) -> list[dict[str, Any]]:
        return [{"line": s.line_number, "command": s.command, "text": s.result.text,
                 "data": jsonable(s.result.data), "error": s.result.error} for s in self.steps]


def jsonable(value: Any) -> Any:
    """Plain JSON types for a command's data (dataclasses, bytes, objects become dicts/strings)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    fields = getattr(value, "__dataclass_fields__", None)
    if fields is not None:
        return {k: jsonable(getattr(value, k)) for k in fields}
    return str(value)


def run_lines(engine: Any, path: str, lines: list[str]) -> ScriptRun:
    """Execute script lines on an engine; comments are echoed like commands (with no output)."""
    run = ScriptRun(path)
    engine.script_dirs.append(os.path.dirname(os.path.abspath(path)))
    try:
        for number, raw in enumerate(lines, start=1):
            line = raw.rstrip()
            if not line.strip():
                continue
            result = engine.execute(line)
            run.steps.append(ScriptStep(number, line, result))
    finally:
        engine.script_dirs.pop()
    return run


def run_file(engine: Any, path: str) -> ScriptRun:
    with open(path, encoding="utf-8") as fh:
        return run_lines(engine, path, fh.read().splitlines())


def expected_path(path: str) -> str:
    root, _ = os.path.splitext(path)
    return root + ".out"


def main_run(path: str, *, make_engine: Callable[[], Any], check: bool = False, update: bool = False,
             as_json: bool = False, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`wskdbg run FILE.wds`: returns the process exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"wskdbg: cannot read {path}: {getattr(exc, 'strerror', None) or exc}", file=err)
        return 2
    engine = make_engine()
    try:
        run = run_lines(engine, path, lines)
    finally:
        engine.close()
    for line in run.error_lines():
        print(line, file=err)
    transcript = run.transcript
    if update:
        with open(expected_path(path), "w", encoding="utf-8") as fh:
            fh.write(transcript)
        print(f"wrote {expected_path(path)}", file=err)
        return 0
    if check:
        expected_file = expected_path(path)
        try:
            with open(expected_file, encoding="utf-8") as fh:
                expected = fh.read()
        except OSError:
            print(f"wskdbg: no expected transcript {expected_file} (run with --update to create it)", file=err)
            return 1
        if expected == transcript:
            print(f"{os.path.basename(path)}: transcript matches", file=err)
            return 0
        diff = difflib.unified_diff(expected.splitlines(keepends=True), transcript.splitlines(keepends=True),
                                    fromfile=expected_file, tofile=f"{path} (this run)")
        out.writelines(diff)
        return 1
    if as_json:
        json.dump(run.as_json(), out, indent=1)
        out.write("\n")
    else:
        out.write(transcript)
    return 1 if run.errors else 0
