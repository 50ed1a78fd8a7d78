"""khttpd's open-file cache: the FILE_OBJECTs of hot files stay open between requests.

Without it a GET opens its file (a FILE_OBJECT and IRP_MJ_CREATE), asks the size, and closes it
after the send (IRP_MJ_CLEANUP, IRP_MJ_CLOSE): three IRPs per request for the answer the last
request already had.  IIS keeps the handles of the files it served open in its file cache the
same way (ObjectCacheTTL, 30 s by default) and so does nginx (open_file_cache).

Lifetime of an entry (KhttpdOpenFile / KhttpdReleaseFile):
* a send holds it (refs) from the lookup until the send is done;
* every hit asks the file system for the file's LastWriteTime through FastIoQueryBasicInfo (no
  IRP): a file that changed since it was opened is dropped and opened anew - its size, the
  response's Content-Length and validators, come from the new open;
* an entry nobody used for OpenFileCacheTtlMs of virtual time, or the least recently used one when
  OpenFileCache files are open, is closed when a miss looks for room (never while a send holds it);
* KhttpdCleanup closes them all before the driver goes.
`!khttpd` lists the open files, their hits, and the cache's hits, misses and closes.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from stack.fs import fsio
from stack.fs.kfs import VOLUME_DEVICE_NAME
from stack.kernel import NT_SUCCESS, STATUS_SUCCESS, STATUS_UNSUCCESSFUL, IoGetDeviceObjectPointer, current_kernel, \
    kroutine


@dataclass(slots=True, eq=False)
class KhttpdOpenFileEntry:
    fs_path: str
    file_object: Any
    size: int
    last_write_time: int  # FILE_BASIC_INFORMATION.LastWriteTime when opened
    last_used_ns: int
    refs: int = 0  # sends using file_object now
    hits: int = 0
    stale: bool = False  # dropped from the table: closed when the last send lets go


@dataclass(slots=True)
class KhttpdOpenFileCache:
    max_entries: int
    ttl_ns: int
    entries: OrderedDict[str, KhttpdOpenFileEntry] = field(default_factory=OrderedDict)  # least recently used first
    held: dict[int, KhttpdOpenFileEntry] = field(default_factory=dict)  # FILE_OBJECT address -> entry (live or stale)
    hits: int = 0
    misses: int = 0
    changed: int = 0  # entries dropped because the file changed
    closed: int = 0  # entries closed (idle past the TTL, room, change, unload)

    def snapshot(self) -> dict[str, Any]:
        return {"entries": len(self.entries), "hits": self.hits, "misses": self.misses, "changed": self.changed,
                "closed": self.closed, "max": self.max_entries, "ttl_ms": self.ttl_ns // 1_000_000,
                "files": [{"name": e.fs_path, "file_object": e.file_object.address, "size": e.size,
                           "hits": e.hits, "refs": e.refs} for e in self.entries.values()]}

    def describe(self) -> list[str]:
        lines = [f"  open files   {len(self.entries)} of {self.max_entries} open, {self.hits} hits, "
                 f"{self.misses} misses, {self.changed} changed, {self.closed} closed "
                 f"(idle TTL {self.ttl_ns // 1_000_000} ms)"]
        if self.entries:
            lines.append(f"    {'FileObject':<18} {'Size':>8} {'Hits':>5} {'Refs':>4}  File")
            for e in reversed(self.entries.values()):  # most recently used first
                lines.append(f"    {e.file_object.address:016x} {e.size:>8} {e.hits:>5} {e.refs:>4}  {e.fs_path}")
        return lines


def _open_and_size(fs_name: str) -> tuple[int, Any, int, int]:
    """IoCreateFileObject + IRP_MJ_CREATE, then the size (FastIoQueryStandardInfo) and the
    LastWriteTime (FastIoQueryBasicInfo): (status, fo, size, last_write_time)."""
    volume = IoGetDeviceObjectPointer(VOLUME_DEVICE_NAME)
    if volume is None:
        return STATUS_UNSUCCESSFUL, None, 0, 0
    status, file_object = fsio.fs_open(volume, fs_name)
    if file_object is None:
        return status, None, 0, 0
    status, size = fsio.fs_query_size(file_object)
    if NT_SUCCESS(status):
        status, info = fsio.fs_query_basic(file_object)
    if not NT_SUCCESS(status) or info is None:
        fsio.fs_close(file_object)
        return status, None, 0, 0
    return status, file_object, size, info.LastWriteTime


def _close(cache: KhttpdOpenFileCache, entry: KhttpdOpenFileEntry) -> None:
    cache.held.pop(entry.file_object.address, None)
    cache.closed += 1
    fsio.fs_close(entry.file_object)


def _drop(cache: KhttpdOpenFileCache, entry: KhttpdOpenFileEntry) -> None:
    """Out of the table; closed now if no send holds it, else when the last one lets go."""
    if cache.entries.get(entry.fs_path) is entry:
        del cache.entries[entry.fs_path]
    entry.stale = True
    if entry.refs == 0:
        _close(cache, entry)


def _make_room(cache: KhttpdOpenFileCache, now_ns: int) -> bool:
    """Close idle entries past their TTL, then least recently used idle ones until one more fits."""
    for entry in [e for e in cache.entries.values() if e.refs == 0 and now_ns - e.last_used_ns >= cache.ttl_ns]:
        _drop(cache, entry)
    for entry in list(cache.entries.values()):
        if len(cache.entries) < cache.max_entries:
            break
        if entry.refs == 0:
            _drop(cache, entry)
    return len(cache.entries) < cache.max_entries


@kroutine("khttpd")
def KhttpdOpenFile(cache: KhttpdOpenFileCache | None, fs_path: str, fs_name: str) -> tuple[int, Any, int, int]:
    """(status, FILE_OBJECT, size, LastWriteTime) for a static file: the open one when the cache
    has it and the file has not changed, else a new open (kept when there is room).  The
    response's validators come from that LastWriteTime.  KhttpdReleaseFile after."""
    if cache is None:
        return _open_and_size(fs_name)
    now_ns = current_kernel().now_ns
    entry = cache.entries.get(fs_path)
    if entry is not None:
        status, info = fsio.fs_query_basic(entry.file_object)  # FastIoQueryBasicInfo: no IRP
        if NT_SUCCESS(status) and info is not None and info.LastWriteTime == entry.last_write_time:
            cache.entries.move_to_end(fs_path)
            entry.refs += 1
            entry.hits += 1
            entry.last_used_ns = now_ns
            cache.hits += 1
            return STATUS_SUCCESS, entry.file_object, entry.size, entry.last_write_time
        cache.changed += 1
        _drop(cache, entry)
    cache.misses += 1
    status, file_object, size, last_write_time = _open_and_size(fs_name)
    if file_object is None:
        return status, None, 0, 0
    if _make_room(cache, now_ns):
        entry = KhttpdOpenFileEntry(fs_path, file_object, size, last_write_time, now_ns, refs=1)
        cache.entries[fs_path] = entry
        cache.held[file_object.address] = entry
    return status, file_object, size, last_write_time


@kroutine("khttpd")
def KhttpdReleaseFile(cache: KhttpdOpenFileCache | None, file_object: Any) -> None:
    """The send is done with the file: the cache keeps it open, anything else is closed."""
    entry = cache.held.get(file_object.address) if cache is not None else None
    if entry is None or entry.file_object is not file_object:
        fsio.fs_close(file_object)
        return
    entry.refs -= 1
    if entry.stale and entry.refs == 0:
        _close(cache, entry)


def KhttpdOpenFileCacheFlush(cache: KhttpdOpenFileCache) -> None:
    """Close every open file (unload: no send is left by then)."""
    for entry in list(cache.entries.values()):
        _drop(cache, entry)


__all__ = ["KhttpdOpenFile", "KhttpdOpenFileCache", "KhttpdOpenFileEntry", "KhttpdReleaseFile",
           "KhttpdOpenFileCacheFlush"]
