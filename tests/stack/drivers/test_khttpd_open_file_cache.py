"""khttpd's open-file cache (filecache.py): hot files stay open between requests, with no
IRP_MJ_CREATE / CLEANUP / CLOSE per GET; a changed file is reopened (its new size served); idle
files are closed after the TTL; the LRU bound and unload close them; `!khttpd`'s data shows them."""

from __future__ import annotations

from typing import Any

from stack.drivers.khttpd.driver import khttpd_globals
from stack.fs.docroot_manifest import docroot_files, file_bytes
from stack.fs.kfs import VOLUME_DEVICE_NAME, KfsReplaceFile, STATUS_SHARING_VIOLATION
from stack.kernel import IRP_MJ_CLEANUP, IRP_MJ_CLOSE, IRP_MJ_CREATE, IRP_MJ_READ, IoGetDeviceObjectPointer
from stack.kernel.events import IrpDispatched, RoutineEntered
from stack.usermode.webserver import http_fetch

from khttpd_lab import SERVER4, boot_lab, run_client

CONTENT = {name: file_bytes(content) for name, content in docroot_files().items()}


def _kfs_irps(lab: Any, fn: Any) -> tuple[Any, list[int], list[str]]:
    """fn()'s result, the majors of the IRPs sent to kfs on winsrv meanwhile, and kfs's routines entered."""
    seen: list[Any] = []

    def watch(event: Any) -> None:
        if event.host == "winsrv":
            seen.append(event)

    unsubscribe = lab.bus.subscribe(watch)
    try:
        result = fn()
    finally:
        unsubscribe()
    majors = [e.major for e in seen if isinstance(e, IrpDispatched) and e.driver.endswith("kfs")]
    entered = [e.symbol for e in seen if isinstance(e, RoutineEntered) and e.symbol.startswith("kfs!")]
    return result, majors, entered


def _get(lab: Any, path: str) -> Any:
    return run_client(lab, http_fetch, SERVER4, "GET", path)


def test_a_hot_file_stays_open_and_a_hit_sends_no_create_close_or_read_irp():
    lab = boot_lab(seed=5)
    g = khttpd_globals(lab.host("winsrv").kernel)
    first, first_irps, _ = _kfs_irps(lab, lambda: _get(lab, "/index.html"))
    second, second_irps, entered = _kfs_irps(lab, lambda: _get(lab, "/index.html"))
    assert first.body == second.body == CONTENT["index.html"]
    assert IRP_MJ_CREATE in first_irps and IRP_MJ_READ in first_irps  # opened, and read into the cache
    assert IRP_MJ_CLOSE not in first_irps  # ... and kept open
    # The hit: the open FILE_OBJECT, FastIoQueryBasicInfo to see it has not changed, the pages by fast I/O.
    assert second_irps == []
    assert "kfs!KfsFastIoQueryBasicInfo" in entered and "kfs!KfsFastIoMdlRead" in entered
    lab.run_until_idle()  # khttpd's send completes once the client has acknowledged the data
    snap = g.open_files.snapshot()
    assert (snap["hits"], snap["misses"], snap["entries"]) == (1, 1, 1)
    assert snap["files"][0]["name"] == "index.html" and snap["files"][0]["refs"] == 0


def test_a_changed_file_is_reopened_and_its_new_bytes_and_size_are_served():
    lab = boot_lab(seed=6)
    g = khttpd_globals(lab.host("winsrv").kernel)
    assert _get(lab, "/style.css").body == CONTENT["style.css"]
    new = b"body { color: red }\n" * 7
    lab.run_until_idle()  # the send has given the pages back: nothing locks them now
    status = lab.run_in("winsrv", lambda: KfsReplaceFile(IoGetDeviceObjectPointer(VOLUME_DEVICE_NAME),
                                                         "style.css", new))
    assert status == 0
    response, irps, _ = _kfs_irps(lab, lambda: _get(lab, "/style.css"))
    assert response.body == new and int(response.header("content-length")) == len(new)
    assert IRP_MJ_CREATE in irps  # reopened: the old FILE_OBJECT is closed (no send held it)
    assert IRP_MJ_CLEANUP in irps and IRP_MJ_CLOSE in irps
    snap = g.open_files.snapshot()
    assert (snap["changed"], snap["entries"], snap["files"][0]["size"]) == (1, 1, len(new))
    assert _get(lab, "/style.css").body == new and g.open_files.hits == 1


def test_an_idle_file_is_closed_after_the_ttl_when_a_miss_needs_the_table():
    lab = boot_lab(seed=7, parameters={"OpenFileCacheTtlMs": 1000})
    g = khttpd_globals(lab.host("winsrv").kernel)
    _get(lab, "/index.html")
    lab.run_for(2_000_000_000)  # virtual ns: index.html idle past its TTL
    _, irps, _ = _kfs_irps(lab, lambda: _get(lab, "/style.css"))
    assert [f["name"] for f in g.open_files.snapshot()["files"]] == ["style.css"]
    assert irps.count(IRP_MJ_CLOSE) == 1 and g.open_files.closed == 1


def test_the_least_recently_used_file_is_closed_when_the_table_is_full():
    lab = boot_lab(seed=8, parameters={"OpenFileCache": 2})
    g = khttpd_globals(lab.host("winsrv").kernel)
    for path in ("/index.html", "/style.css", "/index.html", "/files/1KB.bin"):
        _get(lab, path)
    assert [f["name"] for f in g.open_files.snapshot()["files"]] == ["index.html", "files/1KB.bin"]
    assert g.open_files.closed == 1


def test_without_the_cache_every_get_opens_and_closes_its_file():
    lab = boot_lab(seed=9, parameters={"OpenFileCache": 0})
    _get(lab, "/index.html")
    _, irps, _ = _kfs_irps(lab, lambda: _get(lab, "/index.html"))
    assert (irps.count(IRP_MJ_CREATE), irps.count(IRP_MJ_CLEANUP), irps.count(IRP_MJ_CLOSE)) == (1, 1, 1)
    assert khttpd_globals(lab.host("winsrv").kernel).open_files is None


def test_replacing_a_file_whose_pages_are_lent_out_is_refused_and_changes_nothing():
    from stack.fs import fsio
    from stack.fs.fsrtl import FsRtlMdlReadComplete, fs_mdl_read_fast
    lab = boot_lab(seed=10)

    def body() -> tuple[int, int, int]:
        volume = IoGetDeviceObjectPointer(VOLUME_DEVICE_NAME)
        _, fo = fsio.fs_open(volume, "index.html")
        _, chain = fs_mdl_read_fast(fo, 0, 100)
        refused = KfsReplaceFile(volume, "index.html", b"x")
        _, size = fsio.fs_query_size(fo)
        FsRtlMdlReadComplete(fo, chain)
        fsio.fs_close(fo)
        return refused, size, KfsReplaceFile(volume, "index.html", b"x")

    refused, size, later = lab.run_in("winsrv", body)
    assert refused == STATUS_SHARING_VIOLATION and size == len(CONTENT["index.html"]) and later == 0


# ---- validators after a replace: ETag and Last-Modified come from the open's LastWriteTime ----

def _fetch(method: str, target: str, headers: tuple[tuple[str, str], ...] = ()) -> Any:
    from stack.usermode.webserver import HttpClient

    def gen() -> Any:
        client = yield from HttpClient.connect(SERVER4)
        try:
            return (yield from client.request(method, target, keep_alive=False, headers=headers))
        finally:
            yield from client.close()
    return gen


def _replace(lab: Any, name: str, content: bytes) -> int:
    lab.run_until_idle()  # the last send has given its pages back
    return lab.run_in("winsrv", lambda: KfsReplaceFile(IoGetDeviceObjectPointer(VOLUME_DEVICE_NAME), name, content))


def _flip(data: bytes) -> bytes:
    return bytes(b ^ 0x20 for b in data)  # same size, other bytes


def test_if_none_match_with_the_old_etag_after_a_same_size_replace_is_a_full_200():
    lab = boot_lab(seed=6)
    old = run_client(lab, _fetch("GET", "/style.css"))
    new = _flip(CONTENT["style.css"])
    assert _replace(lab, "style.css", new) == 0
    again = run_client(lab, _fetch("GET", "/style.css", (("If-None-Match", old.header("etag")),)))
    assert (again.status, again.body) == (200, new)
    assert again.header("etag") != old.header("etag")


def test_if_modified_since_the_old_date_after_a_replace_is_a_full_200_with_a_later_last_modified():
    from email.utils import parsedate_to_datetime
    lab = boot_lab(seed=6)
    old = run_client(lab, _fetch("GET", "/style.css"))
    lab.run_for(2_000_000_000)  # the replace lands two virtual seconds later
    assert _replace(lab, "style.css", b"x" * 10) == 0
    again = run_client(lab, _fetch("GET", "/style.css", (("If-Modified-Since", old.header("last-modified")),)))
    assert (again.status, again.body) == (200, b"x" * 10)
    assert parsedate_to_datetime(again.header("last-modified")) > parsedate_to_datetime(old.header("last-modified"))
    # the replace's system time (boot 2026-01-01 plus the virtual clock), the same second as the Date
    # of the GET that followed it at once - not a time on the volume's 2024 epoch
    assert again.header("last-modified") == again.header("date") != old.header("date")


def test_range_with_if_range_of_the_old_etag_after_a_replace_sends_the_whole_new_file():
    lab = boot_lab(seed=6)
    old = run_client(lab, _fetch("GET", "/style.css"))
    new = _flip(CONTENT["style.css"])
    assert _replace(lab, "style.css", new) == 0
    again = run_client(lab, _fetch("GET", "/style.css", (("Range", "bytes=100-"), ("If-Range", old.header("etag")))))
    assert (again.status, again.body, again.header("content-range")) == (200, new, None)


def test_last_modified_is_the_files_last_write_time_not_the_boot_time():
    lab = boot_lab(seed=6)
    first = run_client(lab, _fetch("GET", "/style.css"))
    assert first.header("last-modified") == "Mon, 01 Jan 2024 00:00:00 GMT"  # KFS_VOLUME_TIME


def test_the_cache_pages_of_a_zero_copy_get_are_given_back_at_passive_level():
    """FsRtlMdlReadComplete is PASSIVE_LEVEL only: the sender gives the pages back after its wait,
    not KhttpdSendComplete from the transport's DPC."""
    lab = boot_lab(seed=5)
    k = lab.host("winsrv").kernel
    irqls: list[tuple[str, int]] = []

    def watch(event: Any) -> None:
        if isinstance(event, RoutineEntered) and event.symbol in ("nt!FsRtlMdlReadEx", "nt!FsRtlMdlReadComplete"):
            irqls.append((event.symbol, k.irql))

    unsubscribe = lab.bus.subscribe(watch)
    try:
        for _ in range(2):  # a miss, then an open-file cache hit
            assert _get(lab, "/index.html").body == CONTENT["index.html"]
            lab.run_until_idle()
    finally:
        unsubscribe()
    assert [s for s, _ in irqls].count("nt!FsRtlMdlReadComplete") == 2
    assert all(irql == 0 for _, irql in irqls), irqls
    assert lab.scheduler.halted is None
