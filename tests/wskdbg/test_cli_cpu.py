"""`wskdbg --cpu PROFILE`: a class starts the lab with processors that spend time (issue 12)."""

from __future__ import annotations

import pytest

from wskdbg import cli


def test_cpu_switch_starts_winsrv_with_one_processor_of_the_profile(capsys) -> None:
    assert cli.main(["--cpu", "2003", "-c", "!cpu"]) == 0
    out = capsys.readouterr().out
    assert "winsrv     2003     1" in out and "client     zero" in out


def test_cpu_hosts_gives_each_named_host_a_processor() -> None:
    args = cli.build_parser().parse_args(["--cpu", "x64", "--cpu-hosts", "winsrv,client"])
    engine = cli.make_engine(args)
    try:
        assert engine.kernel_of("client").cpu_model.profile.name == "x64"
        assert engine.kernel_of("winsrv").cpu_model.profile.name == "x64"
    finally:
        engine.close()


def test_cpu_hosts_naming_no_host_is_a_clear_error() -> None:
    with pytest.raises(SystemExit, match="no host named 'nohost'"):
        cli.main(["--cpu", "x64", "--cpu-hosts", "nohost", "-c", "!cpu"])


def test_without_cpu_the_lab_keeps_no_processor_model() -> None:
    engine = cli.make_engine(cli.build_parser().parse_args([]))
    try:
        assert engine.kernel_of("winsrv").cpu_model is None
    finally:
        engine.close()
