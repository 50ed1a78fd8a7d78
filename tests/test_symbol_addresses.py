"""Routine addresses never depend on what the process imported.

Each image lays itself out from its own routine names when it loads (stack.kernel.kernel:
`_assign_symbol`), so importing every test helper — stand-ins, harnesses, tests that define
routines of their own — before building the lab gives the same addresses as a fresh process
that imports nothing but the lab.  (They used to follow a process-global catalog filled in
import order, so a stand-in that registered `tcpip` routines moved the real tcpip's.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROUTINES = ("nt!IofCallDriver", "nt!KiIdleLoop", "tcpip!TcpTcbReceive", "ndis!NdisMIndicateReceiveNetBufferLists",
            "netvmini!MPSendNetBufferLists", "afd!WskProAPISend", "afd!WskProAPIReceive",
            "echosrv!WskSampleReceiveIrpCompletionRoutine", "echosrv!WskSampleAcceptEvent", "khttpd!DriverEntry",
            "afd!AfdDispatchDeviceControl", "kfs!KfsCommonRead")

LAB_ADDRESSES = f"""
import json
from stack.world import default_world
world = default_world(1)
print(json.dumps({{h: {{r: world.hosts[h].kernel.symbol_address(r) for r in {ROUTINES!r}}}
                  for h in ("winsrv", "client")}}))
"""


def helper_files() -> list[Path]:
    """Every helper module under tests/ (not benchmarks or scripts), and every test module
    that defines emulated routines of its own."""
    out = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.name in ("__init__.py", "conftest.py", "make_screenshot.py") or path.parent.name == "bench":
            continue
        if not path.name.startswith("test_") or "kroutine(" in path.read_text(encoding="utf-8"):
            out.append(path)
    return out


def import_file(path: Path) -> None:
    sys.path.insert(0, str(path.parent))  # helpers import their siblings by bare name
    try:
        name = "helper_" + "_".join(path.relative_to(ROOT).with_suffix("").parts)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))


def test_routine_addresses_are_the_same_after_importing_every_test_helper():
    helpers = helper_files()
    assert any(p.name == "dbg_harness.py" for p in helpers) and len(helpers) > 10
    for path in helpers:
        import_file(path)
    here = json.loads(subprocess.run([sys.executable, "-c", LAB_ADDRESSES], capture_output=True, text=True,
                                     check=False, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
                      or "null")
    from stack.world import default_world
    world = default_world(1)
    mine = {h: {r: world.hosts[h].kernel.symbol_address(r) for r in ROUTINES} for h in ("winsrv", "client")}
    from stack.kernel.symbols import CATALOG
    from wskdbg.engine import KERNEL_FRAMES
    known = {f"{m}!{n}" for m, names in CATALOG.items() for n in names} | {f"nt!{n}" for n in KERNEL_FRAMES}
    assert set(ROUTINES) <= known  # real routines, not names that merely hash somewhere
    assert all(mine["winsrv"][r] for r in ROUTINES)  # and every one is loaded on winsrv
    assert mine == here
