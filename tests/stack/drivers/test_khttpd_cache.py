"""khttpd's response cache: a hit answered inside TDI's receive event at DISPATCH_LEVEL (no thread),
a miss filled by a work item at PASSIVE_LEVEL, LRU eviction under the memory budget."""

from __future__ import annotations

from stack.drivers.khttpd.driver import khttpd_globals
from stack.fs.docroot_manifest import docroot_files, file_bytes
from stack.kernel import DISPATCH_LEVEL
from stack.kernel.events import Event
from stack.usermode.webserver import HttpClient, http_fetch, http_session

from khttpd_lab import SERVER4, SERVER6, boot_lab, run_client

CONTENT = {name: file_bytes(content) for name, content in docroot_files().items()}


def _lab(budget: int = 1 << 20, seed: int = 41):
    return boot_lab(seed=seed, parameters={"Transport": "TDI", "ResponseCache": budget})


def test_a_miss_then_hits_are_byte_exact_and_counted():
    lab = _lab()
    g = khttpd_globals(lab.host("winsrv").kernel)
    responses = run_client(lab, http_session, SERVER4, [("GET", "/index.html")] * 3 + [("GET", "/style.css")])
    assert [r.body for r in responses] == [CONTENT["index.html"]] * 3 + [CONTENT["style.css"]]
    six = run_client(lab, http_fetch, SERVER6, "GET", "/index.html")
    assert six.body == CONTENT["index.html"]
    snap = g.cache.snapshot()
    assert (snap["hits"], snap["misses"], snap["entries"]) == (3, 2, 2)
    assert snap["locked_pages"] >= 2


def test_a_hit_is_answered_in_the_receive_event_at_dispatch_level_with_no_thread_switch():
    lab = _lab()
    winsrv = lab.host("winsrv").kernel
    run_client(lab, http_fetch, SERVER4, "GET", "/index.html")  # the miss fills the cache
    events: list[Event] = []
    sends: list[tuple[int, list[str]]] = []
    import stack.drivers.khttpd.cached as cached
    original = cached.IoCallDriver

    def watching_call(device, irp):
        sends.append((winsrv.irql, [f.symbol for f in winsrv.frames]))
        events.append("TDI_SEND")  # type: ignore[arg-type]
        return original(device, irp)

    def watch(event: Event) -> None:
        if event.host == winsrv.name:
            events.append(event)

    cached.IoCallDriver = watching_call
    unsubscribe = lab.bus.subscribe(watch)
    try:
        response = run_client(lab, http_fetch, SERVER4, "GET", "/index.html")
    finally:
        unsubscribe()
        cached.IoCallDriver = original
    assert response.body == CONTENT["index.html"]
    assert khttpd_globals(winsrv).cache.hits == 1
    irql, frames = sends[0]  # the response's TDI_SEND
    assert irql == DISPATCH_LEVEL
    assert "khttpd!KhttpdTdiReceiveEvent" in frames and "ndis!ndisMiniportDpc" in frames
    # The event sequence from the DPC that indicated the request to the TDI_SEND of the
    # response: one DPC, no thread switch, no work item.
    send_at = events.index("TDI_SEND")  # type: ignore[arg-type]
    receive_at = max(i for i, e in enumerate(events[:send_at])
                     if getattr(e, "symbol", "") == "khttpd!KhttpdTdiReceiveEvent")
    dpc_at = max(i for i, e in enumerate(events[:receive_at]) if getattr(e, "kind", "") == "dpc.run")
    between = [e.kind for e in events[dpc_at:send_at] if not isinstance(e, str)]
    assert "thread.switch" not in between and "workitem" not in between
    assert events[dpc_at].routine.startswith("ndis!")


def test_eviction_keeps_the_locked_pages_within_the_budget():
    budget = 40 * 1024
    lab = _lab(budget=budget, seed=43)
    g = khttpd_globals(lab.host("winsrv").kernel)
    names = ["files/16KB.bin", "files/4KB.bin", "files/16KB.bin", "index.html", "files/64KB.bin", "files/1KB.bin"]
    names = [n for n in names if n in CONTENT]
    for name in names:
        response = run_client(lab, http_fetch, SERVER4, "GET", "/" + name)
        assert response.body == CONTENT[name]
        assert g.cache.used <= budget
    snap = g.cache.snapshot()
    assert snap["evictions"] >= 1 or snap["used"] <= budget
    assert g.cache.uncacheable >= 1  # 64 KB is over the whole budget: served, never kept
    assert sum(e.size for e in g.cache.entries.values()) == g.cache.used


def test_unload_with_a_full_cache_unlocks_every_page_and_leaks_no_pool():
    from stack.drivers.khttpd.driver import POOL_TAGS
    from stack.kernel import IoUnloadDriver
    from stack.kernel.pool import tag_from_str
    lab = _lab(seed=45)
    k = lab.host("winsrv").kernel
    run_client(lab, http_session, SERVER4, [("GET", "/index.html"), ("GET", "/style.css"), ("GET", "/app/hello")])
    locked = sum(p.lock_count for p in k.phys.pfns)
    assert khttpd_globals(k).cache.locked_pages
    done: list[int] = []
    IoUnloadDriver(k, k.drivers["khttpd"], on_done=done.append)
    lab.run_while(lambda: not done, max_events=1_000_000)
    lab.check()
    tags = {tag_from_str(t) for t in POOL_TAGS + ("TdxA", "TdxC", "KsTb")}
    assert not [b for b in k.pool.allocated_blocks() if b.tag in tags]
    assert sum(p.lock_count for p in k.phys.pfns) < locked


def test_a_keep_alive_client_gets_pipelined_hits_in_order():
    lab = _lab(seed=47)
    run_client(lab, http_fetch, SERVER4, "GET", "/style.css")

    def pipelined():
        client = yield from HttpClient.connect(SERVER4)
        yield from client.send_raw(b"GET /style.css HTTP/1.1\r\nHost: w\r\n\r\n" * 2
                                   + b"HEAD /style.css HTTP/1.1\r\nHost: w\r\n\r\n")
        out = [(yield from client.read_response()), (yield from client.read_response()),
               (yield from client.read_response(head_only=True))]
        yield from client.close()
        return out

    a, b, c = run_client(lab, pipelined)
    assert a.body == b.body == CONTENT["style.css"] and c.status == 200 and c.body == b""


def test_the_irql_rule_is_enforced_a_paged_header_buffer_on_the_hit_path_bug_checks_d1(monkeypatch):
    """The hit path passes the tests above only because it touches nonpaged memory alone: give it a
    paged header buffer and the machine bug-checks DRIVER_IRQL_NOT_LESS_OR_EQUAL in the receive event."""
    import stack.drivers.khttpd.response as response
    from stack.drivers.khttpd.state import HEADER_BUFFER_SIZE
    from stack.kernel import PagedPool
    from stack.usermode.socket import run_program
    lab = _lab(seed=49)
    run_client(lab, http_fetch, SERVER4, "GET", "/style.css")
    from stack.kernel import ExAllocatePoolWithTag, IoAllocateMdl, current_kernel
    paged = lab.run_in("winsrv", ExAllocatePoolWithTag, PagedPool, HEADER_BUFFER_SIZE, "Test")

    def paged_header_mdl(connection, header):
        current_kernel().write(paged, header)  # the header buffer is now pageable
        return IoAllocateMdl(paged, len(header))

    monkeypatch.setattr(response, "_header_mdl", paged_header_mdl)
    program = run_program(lab.host("client").kernel, http_fetch, SERVER4, "GET", "/style.css")
    lab.run_while(lambda: not program.done and lab.scheduler.halted is None, max_events=2_000_000)
    info = lab.scheduler.halted
    assert info is not None and info.code == 0xD1
    assert info.irql == DISPATCH_LEVEL and "khttpd!KhttpdTdiReceiveEvent" in info.frames


# --- the same cache over WSK: hits answered inside WskReceiveEvent -------------------------------------

def _wsk_lab(budget: int = 1 << 20, seed: int = 51):
    return boot_lab(seed=seed, parameters={"Transport": "WSK", "ResponseCache": budget})


def test_over_wsk_a_miss_then_hits_are_byte_exact_and_counted():
    lab = _wsk_lab()
    g = khttpd_globals(lab.host("winsrv").kernel)
    responses = run_client(lab, http_session, SERVER4, [("GET", "/index.html")] * 3 + [("GET", "/style.css"),
                                                                                       ("GET", "/app/hello")])
    assert [r.body for r in responses[:4]] == [CONTENT["index.html"]] * 3 + [CONTENT["style.css"]]
    assert responses[4].body.startswith(b"Hello from the user-mode web server")  # a miss path: the work item
    six = run_client(lab, http_fetch, SERVER6, "GET", "/index.html")
    assert six.body == CONTENT["index.html"]
    snap = g.cache.snapshot()
    assert (snap["hits"], snap["misses"], snap["entries"]) == (3, 2, 2)


def test_over_wsk_a_hit_is_answered_inside_wsk_receive_event_from_the_nics_dpc_with_no_thread_switch():
    lab = _wsk_lab(seed=53)
    winsrv = lab.host("winsrv").kernel
    run_client(lab, http_fetch, SERVER4, "GET", "/index.html")  # the miss fills the cache
    events: list[Event] = []
    sends: list[tuple[int, list[str]]] = []

    def watch(event: Event) -> None:
        if event.host != winsrv.name:
            return
        events.append(event)
        if event.kind == "wsk.call" and event.call in ("WskSend", "WskDisconnect") and event.length:
            sends.append((winsrv.irql, [f.symbol for f in winsrv.frames]))

    unsubscribe = lab.bus.subscribe(watch)
    try:
        response = run_client(lab, http_fetch, SERVER4, "GET", "/index.html")
    finally:
        unsubscribe()
    assert response.body == CONTENT["index.html"]
    assert khttpd_globals(winsrv).cache.hits == 1
    irql, frames = sends[0]  # the response's WskSend (or WskDisconnect with the data)
    assert irql == DISPATCH_LEVEL
    assert "khttpd!KhttpdWskReceiveEvent" in frames and "khttpd!KhttpdSendCached" in frames
    assert "afd!WskProTLEventReceive" in frames and "ndis!ndisMiniportDpc" in frames
    send_at = next(i for i, e in enumerate(events) if e.kind == "wsk.call" and e.call in ("WskSend", "WskDisconnect")
                   and e.length)
    dpc_at = max(i for i, e in enumerate(events[:send_at]) if e.kind == "dpc.run")
    between = [e.kind for e in events[dpc_at:send_at]]
    assert "thread.switch" not in between and "workitem" not in between
    assert events[dpc_at].routine.startswith("ndis!")


def test_over_wsk_a_paged_header_buffer_on_the_hit_path_bug_checks_d1_in_wsk_receive_event(monkeypatch):
    import stack.drivers.khttpd.response as response
    from stack.drivers.khttpd.state import HEADER_BUFFER_SIZE
    from stack.kernel import PagedPool
    from stack.usermode.socket import run_program
    lab = _wsk_lab(seed=55)
    run_client(lab, http_fetch, SERVER4, "GET", "/style.css")
    from stack.kernel import ExAllocatePoolWithTag, IoAllocateMdl, current_kernel
    paged = lab.run_in("winsrv", ExAllocatePoolWithTag, PagedPool, HEADER_BUFFER_SIZE, "Test")

    def paged_header_mdl(connection, header):
        current_kernel().write(paged, header)
        return IoAllocateMdl(paged, len(header))

    monkeypatch.setattr(response, "_header_mdl", paged_header_mdl)
    program = run_program(lab.host("client").kernel, http_fetch, SERVER4, "GET", "/style.css")
    lab.run_while(lambda: not program.done and lab.scheduler.halted is None, max_events=2_000_000)
    info = lab.scheduler.halted
    assert info is not None and info.code == 0xD1
    assert info.irql == DISPATCH_LEVEL and "khttpd!KhttpdWskReceiveEvent" in info.frames


def test_over_wsk_pipelined_hits_come_back_in_order_and_unload_leaks_nothing():
    from stack.drivers.khttpd.driver import POOL_TAGS
    from stack.kernel import IoUnloadDriver
    from stack.kernel.pool import tag_from_str
    lab = _wsk_lab(seed=57)
    k = lab.host("winsrv").kernel
    run_client(lab, http_fetch, SERVER4, "GET", "/style.css")

    def pipelined():
        client = yield from HttpClient.connect(SERVER4)
        yield from client.send_raw(b"GET /style.css HTTP/1.1\r\nHost: w\r\n\r\n" * 2
                                   + b"HEAD /style.css HTTP/1.1\r\nHost: w\r\n\r\n")
        out = [(yield from client.read_response()), (yield from client.read_response()),
               (yield from client.read_response(head_only=True))]
        yield from client.close()
        return out

    a, b, c = run_client(lab, pipelined)
    assert a.body == b.body == CONTENT["style.css"] and c.status == 200 and c.body == b""
    done: list[int] = []
    IoUnloadDriver(k, k.drivers["khttpd"], on_done=done.append)
    lab.run_while(lambda: not done, max_events=1_000_000)
    lab.check()
    tags = {tag_from_str(t) for t in POOL_TAGS}
    assert not [blk for blk in k.pool.allocated_blocks() if blk.tag in tags]


def test_replacing_a_file_the_response_cache_holds_locked_is_a_sharing_violation_and_changes_nothing():
    """CcPurgeCacheSection refuses while the response cache keeps the file's pages locked (its MDL
    read is outstanding): KfsReplaceFile answers STATUS_SHARING_VIOLATION, and the old bytes, size
    and LastWriteTime stay."""
    from stack.fs import fsio
    from stack.fs.kfs import KFS_VOLUME_TIME, STATUS_SHARING_VIOLATION, VOLUME_DEVICE_NAME, KfsReplaceFile
    from stack.kernel import IoGetDeviceObjectPointer
    lab = _lab(seed=49)
    g = khttpd_globals(lab.host("winsrv").kernel)
    assert run_client(lab, http_fetch, SERVER4, "GET", "/style.css").body == CONTENT["style.css"]
    lab.run_until_idle()
    assert "style.css" in [e.fs_path for e in g.cache.entries.values()]

    def replace_then_look() -> tuple[int, int, int]:
        volume = IoGetDeviceObjectPointer(VOLUME_DEVICE_NAME)
        status = KfsReplaceFile(volume, "style.css", b"changed")
        _, fo = fsio.fs_open(volume, "style.css")
        _, size = fsio.fs_query_size(fo)
        _, info = fsio.fs_query_basic(fo)
        fsio.fs_close(fo)
        return status, size, info.LastWriteTime

    status, size, written = lab.run_in("winsrv", replace_then_look)
    assert (status, size, written) == (STATUS_SHARING_VIOLATION, len(CONTENT["style.css"]), KFS_VOLUME_TIME)
    again = run_client(lab, http_fetch, SERVER4, "GET", "/style.css")
    assert (again.status, again.body) == (200, CONTENT["style.css"])
