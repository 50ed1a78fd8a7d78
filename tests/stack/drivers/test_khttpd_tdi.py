"""khttpd with Transport=TDI: the same requests, byte-exact, through tdx's IRPs instead of WSK's calls."""

from __future__ import annotations

import pytest

from stack.drivers.khttpd.driver import khttpd_globals
from stack.fs.docroot_manifest import docroot_files, file_bytes
from stack.kernel.events import IrpDispatched
from stack.tdi.constants import TDI_RECEIVE, TDI_SEND
from stack.usermode.webserver import http_fetch, http_session

from khttpd_lab import SERVER4, SERVER6, boot_lab, run_client

CONTENT = {name: file_bytes(content) for name, content in docroot_files().items()}
ALL_FILES = sorted(CONTENT)


@pytest.fixture(scope="module")
def tdi_lab():
    return boot_lab(seed=5, parameters={"Transport": "TDI"})


@pytest.mark.parametrize("server", [SERVER4, SERVER6], ids=["ipv4", "ipv6"])
def test_every_docroot_file_is_served_byte_exact_over_tdi(tdi_lab, server):
    responses = run_client(tdi_lab, http_session, server, [("GET", "/" + name) for name in ALL_FILES])
    for name, response in zip(ALL_FILES, responses):
        assert (response.status, response.body) == (200, CONTENT[name]), name
        assert response.header("connection") == "keep-alive"


def test_tdi_requests_go_down_as_tdi_send_and_tdi_receive_irps_to_device_tcp(tdi_lab):
    seen: list[tuple[int, int, str]] = []
    bus = tdi_lab.bus

    def watch(event):
        if isinstance(event, IrpDispatched) and event.driver == "\\Driver\\tdx":
            seen.append((event.major, event.minor, event.driver))

    unsubscribe = bus.subscribe(watch)
    try:
        response = run_client(tdi_lab, http_fetch, SERVER4, "GET", "/index.html")
    finally:
        unsubscribe()
    assert response.status == 200
    minors = {minor for major, minor, _ in seen if major == 0x0F}
    assert {TDI_RECEIVE, TDI_SEND} <= minors


def test_dynamic_requests_reach_the_user_mode_server_over_tdi(tdi_lab):
    response = run_client(tdi_lab, http_fetch, SERVER4, "GET", "/app/hello")
    assert response.status == 200 and response.body
    assert khttpd_globals(tdi_lab.host("winsrv").kernel).stats.dynamic_relayed >= 1


def test_a_bad_transport_parameter_fails_the_load():
    with pytest.raises(ValueError):
        from stack.drivers.khttpd.driver import khttpd_image
        khttpd_image(Transport="NetBEUI")


def test_unload_over_tdi_closes_every_tdi_object_and_leaks_no_pool():
    from stack.drivers.khttpd.driver import POOL_TAGS
    from stack.kernel import IoUnloadDriver
    from stack.kernel.pool import tag_from_str
    from stack.tdi.tdx import tdx_globals
    world = boot_lab(seed=9, parameters={"Transport": "TDI"})
    k = world.host("winsrv").kernel
    run_client(world, http_session, SERVER4, [("GET", "/index.html"), ("GET", "/app/hello")])
    done: list[int] = []
    IoUnloadDriver(k, k.drivers["khttpd"], on_done=done.append)
    world.run_while(lambda: not done, max_events=1_000_000)
    world.check()
    tags = {tag_from_str(t) for t in POOL_TAGS + ("TdxA", "TdxC", "File", "KsTb")}
    assert not [b for b in k.pool.allocated_blocks() if b.tag in tags]
    tdx = tdx_globals(k)
    assert not tdx.address_objects and not tdx.connections
