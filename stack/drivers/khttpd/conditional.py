"""Sans-IO validators and ranges for static files: ETag, Last-Modified, 304, Range, 206, 416.

RFC 9110 §13 (conditional requests) and §14 (range requests), the parts a static file
server needs.  Nothing here reads a file: a representation is described by its size
and its validators; the driver then sends the chosen byte ranges from the cache's MDLs.

    v = Validators.for_file(path, size, last_write_time)
    if not_modified(request_headers, v): answer 304 with v.headers()
    ranges = parse_range(request.header(b"range"), size, request.header(b"if-range"), v)
    RANGE_NONE -> 200 whole file;  RANGE_UNSATISFIABLE -> 416 (Content-Range: bytes */size)
    [(first, last)] -> 206 with Content-Range;  several -> 206 multipart/byteranges
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Final

from stack.drivers.khttpd.http_message import http_date

RANGE_NONE: Final = "none"  # no (usable) Range header: the whole representation
RANGE_UNSATISFIABLE: Final = "unsatisfiable"  # 416
MAX_RANGES: Final = 16  # more ranges than this in one request: served whole (a cheap DoS guard)
MULTIPART_BOUNDARY: Final = "KHTTPD_BYTERANGES"
FILETIME_UNIX_EPOCH_S: Final = 11_644_473_600  # 1601-01-01 to 1970-01-01 in seconds


@dataclass(frozen=True, slots=True)
class Validators:
    etag: str  # strong: "size-crc" (quotes included)
    last_modified_s: int  # Unix seconds
    last_modified: str  # IMF-fixdate

    @classmethod
    def for_file(cls, fs_path: str, size: int, last_write_time: int) -> "Validators":
        """From the open's FILE_BASIC_INFORMATION.LastWriteTime (FILETIME): a replaced file gets a
        new ETag even within the same second, and its Last-Modified moves (IIS's ETag is built
        from the file's last write time the same way)."""
        key = (fs_path, size, last_write_time)
        validators = _FILE_VALIDATORS.get(key)
        if validators is None:  # the same file is served again and again: its validators are made once
            mtime_unix = max(0, last_write_time // 10_000_000 - FILETIME_UNIX_EPOCH_S)
            validators = cls(f'"{last_write_time:x}-{size:x}-{zlib.crc32(fs_path.encode("utf-8")):08x}"',
                             mtime_unix, http_date(mtime_unix, 0))
            if len(_FILE_VALIDATORS) >= _FILE_VALIDATORS_LIMIT:
                _FILE_VALIDATORS.clear()
            _FILE_VALIDATORS[key] = validators
        return validators

    def headers(self) -> list[tuple[str, str]]:
        return [("ETag", self.etag), ("Last-Modified", self.last_modified)]


_FILE_VALIDATORS: dict[tuple[str, int, int], Validators] = {}
_FILE_VALIDATORS_LIMIT = 1024


def _etags(value: bytes) -> list[str]:
    return [tag.strip().removeprefix("W/") for tag in value.decode("latin-1").split(",") if tag.strip()]


def _http_date_s(value: bytes) -> int | None:
    try:
        return int(parsedate_to_datetime(value.decode("latin-1")).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def not_modified(if_none_match: bytes | None, if_modified_since: bytes | None, v: Validators) -> bool:
    """304?  If-None-Match (weak comparison) wins; If-Modified-Since only without it (RFC 9110 §13.2.2)."""
    if if_none_match is not None:
        tags = _etags(if_none_match)
        return "*" in tags or v.etag in tags
    if if_modified_since is not None:
        since = _http_date_s(if_modified_since)
        return since is not None and v.last_modified_s <= since
    return False


def parse_range(value: bytes | None, size: int, if_range: bytes | None = None,
                v: Validators | None = None) -> list[tuple[int, int]] | str:
    """The byte ranges (first, last inclusive) to send, RANGE_NONE, or RANGE_UNSATISFIABLE."""
    if value is None:
        return RANGE_NONE
    if if_range is not None and v is not None:
        text = if_range.strip()
        if text.startswith(b'"') or text.startswith(b"W/"):
            if text.decode("latin-1") != v.etag:  # If-Range needs a strong match
                return RANGE_NONE
        else:
            since = _http_date_s(text)
            if since is None or since != v.last_modified_s:
                return RANGE_NONE
    unit, _, spec = value.decode("latin-1").partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip():
        return RANGE_NONE  # an unknown unit is ignored
    ranges: list[tuple[int, int]] = []
    pieces = [p.strip() for p in spec.split(",")]
    if len(pieces) > MAX_RANGES:
        return RANGE_NONE
    for piece in pieces:
        first_text, dash, last_text = piece.partition("-")
        if not dash:
            return RANGE_NONE  # malformed: ignore the header
        try:
            if first_text == "":
                suffix = int(last_text)
                if suffix <= 0:
                    continue
                first, last = max(0, size - suffix), size - 1
            else:
                first = int(first_text)
                last = int(last_text) if last_text else size - 1
                if last_text and last < first:
                    return RANGE_NONE  # an invalid range-spec: the header is ignored
                last = min(last, size - 1)
        except ValueError:
            return RANGE_NONE
        if first < size and first <= last:
            ranges.append((first, last))
    return ranges if ranges else RANGE_UNSATISFIABLE


def content_range(first: int, last: int, size: int) -> str:
    return f"bytes {first}-{last}/{size}"


def multipart_pieces(ranges: list[tuple[int, int]], size: int, content_type: str) -> list[bytes | tuple[int, int]]:
    """multipart/byteranges as a list of literal byte pieces and (first, last) file ranges, in order."""
    out: list[bytes | tuple[int, int]] = []
    for first, last in ranges:
        out.append((f"\r\n--{MULTIPART_BOUNDARY}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Range: {content_range(first, last, size)}\r\n\r\n").encode("latin-1"))
        out.append((first, last))
    out.append(f"\r\n--{MULTIPART_BOUNDARY}--\r\n".encode("latin-1"))
    return out
