"""--forward specifications."""

from __future__ import annotations

import pytest

from stack.bridge.spec import ForwardSpec, ForwardSpecError


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:8080=winsrv:80", ("127.0.0.1", 8080, "winsrv", 80)),
    ("[::1]:8080=winsrv:80", ("::1", 8080, "winsrv", 80)),
    ("8080=winsrv:40007", ("127.0.0.1", 8080, "winsrv", 40007)),
    ("localhost:8080=winsrv:80", ("127.0.0.1", 8080, "winsrv", 80)),
    ("0.0.0.0:8080=10.0.0.1:80", ("0.0.0.0", 8080, "10.0.0.1", 80)),
    ("127.0.0.1:0=[fd00::1]:80", ("127.0.0.1", 0, "fd00::1", 80)),
])
def test_forward_spec_parses_listen_and_target(text: str, expected: tuple) -> None:
    spec = ForwardSpec.parse(text)
    assert (spec.listen_host, spec.listen_port, spec.target_host, spec.target_port) == expected
    assert ForwardSpec.parse(str(spec)) == spec


def test_forward_spec_without_address_binds_loopback_never_all_interfaces() -> None:
    assert ForwardSpec.parse("9000=winsrv:80").listen_host == "127.0.0.1"


@pytest.mark.parametrize("text, message", [
    ("winsrv:80", "expected"),
    ("8080=winsrv", "expected HOST:PORT"),
    ("8080=winsrv:0", "not 1..65535"),
    ("70000=winsrv:80", "not 0..65535"),
    ("8080=winsrv:http", "not a number"),
    ("::1:8080=winsrv:80", r"\[ADDR\]:PORT"),
    ("myhost:8080=winsrv:80", "not an IP address"),
    ("8080=:80", "host is missing"),
])
def test_forward_spec_rejects_bad_text_with_reason(text: str, message: str) -> None:
    with pytest.raises(ForwardSpecError, match=message):
        ForwardSpec.parse(text)
