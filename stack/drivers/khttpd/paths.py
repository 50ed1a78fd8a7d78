"""Request-target resolution for khttpd: from raw target bytes to a docroot path.

The document root is a virtual, read-only set of files (the emulated file
system), so resolution never touches the host file system. It turns a raw
request-target into a normalized posix path relative to the root
(``files/4KB.bin``) that the file system looks up.

Rules, in the order they are applied:

1. A target longer than ``max_target_length`` bytes (8 KiB) is 414.
2. Origin-form (``/path?query``) is the normal case. Absolute-form
   (``http://host[:port]/path``, RFC 9112 section 3.2.2) is accepted when the
   host is one of ``server_names`` (any host when ``server_names`` is None).
   Authority-form, asterisk-form, other schemes and fragments are 400.
3. The query string is split off at the first ``?`` and kept raw.
4. The path is percent-decoded exactly once. Malformed escapes, an encoded
   ``/`` (``%2f``), NUL or any control character, a backslash (raw or
   ``%5c``), a decoded ``%XX`` sequence (double encoding, e.g. ``%252e``),
   raw non-ASCII bytes and invalid UTF-8 (including overlong forms such as
   ``%c0%ae``) are all 400.
5. Empty segments (``//``) collapse; ``.`` segments vanish; ``..`` removes the
   previous segment. A ``..`` that would climb above the root is **400**, not
   clamped at the root as RFC 3986 would do: such a request is an attack or a
   bug, and answering 400 makes it visible in the access log.
6. A path that names a directory (ends in ``/``, ``/.`` or ``/..``) gets
   ``index.html`` appended, so ``/`` is ``index.html``.
7. ``resolve_request_target`` then looks the path up in the docroot: 404 when
   it is not there.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Final

MAX_TARGET_LENGTH = 8192
INDEX_DOCUMENT = "index.html"

# A docroot is either a mapping keyed by relative posix path (the manifest)
# or a predicate answering "does this file exist?" (the file system).
DocrootLookup = Mapping[str, object] | Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class HttpError:
    """A request that cannot be served: the status to answer and why."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class ResolvedPath:
    """A target normalized to a path inside the document root."""

    fs_path: str  # relative posix path, no leading slash: "files/4KB.bin"
    url_path: str  # the same with a leading slash: "/files/4KB.bin"
    query: bytes  # raw query string without the "?", b"" when absent


_HEX_VALUE = {c: int(chr(c), 16) for c in b"0123456789abcdefABCDEF"}


def _bad(reason: str) -> HttpError:
    return HttpError(400, reason)


def _split_absolute_form(
    target: bytes, server_names: Collection[str] | None
) -> bytes | HttpError:
    """Strip ``http://authority`` and return the path part (origin-form)."""
    if target[:7].lower() != b"http://":
        return _bad("unsupported absolute-form scheme")
    rest = target[7:]
    end = len(rest)
    for delimiter in (b"/", b"?"):
        found = rest.find(delimiter)
        if found != -1:
            end = min(end, found)
    authority, path = rest[:end], rest[end:]
    if not authority or b"@" in authority:
        return _bad("absolute-form without a plain host")
    host = authority
    if host.startswith(b"["):  # IPv6 literal: [::1]:80
        close = host.find(b"]")
        if close == -1:
            return _bad("unterminated IPv6 literal in absolute-form")
        port = host[close + 1 :]
        host = host[: close + 1]
    else:
        host, _, port = host.partition(b":")
        port = b":" + port if port else b""
    if port and (port[:1] != b":" or not port[1:].isdigit()):
        return _bad("bad port in absolute-form")
    try:
        host_name = host.decode("ascii").lower()
    except UnicodeDecodeError:
        return _bad("non-ASCII host in absolute-form")
    if server_names is not None and host_name not in {n.lower() for n in server_names}:
        return _bad("absolute-form target names another host")
    if not path:
        return b"/"
    if path[:1] == b"?":
        return b"/" + path
    return path


# Bytes a path may hold as they are: visible ASCII except '%' (an escape) and '\\'.
_PLAIN_PATH_BYTES: Final = bytes(b for b in range(0x21, 0x7F) if b not in (0x25, 0x5C))


def _percent_decode_once(raw_path: bytes) -> bytes | HttpError:
    """Decode %XX escapes once, refusing anything that could smuggle structure."""
    if not raw_path.translate(None, _PLAIN_PATH_BYTES):
        return raw_path  # the usual path: nothing to decode and nothing to refuse (the loop's answer)
    decoded = bytearray()
    i = 0
    length = len(raw_path)
    while i < length:
        byte = raw_path[i]
        if byte == 0x25:  # '%'
            if i + 3 > length:
                return _bad("truncated percent escape")
            high, low = raw_path[i + 1], raw_path[i + 2]
            if high not in _HEX_VALUE or low not in _HEX_VALUE:
                return _bad("malformed percent escape")
            value = _HEX_VALUE[high] * 16 + _HEX_VALUE[low]
            if value == 0x2F:
                return _bad("encoded slash in path")
            decoded.append(value)
            i += 3
            continue
        if byte == 0x5C:
            return _bad("backslash in path")
        if byte < 0x21 or byte >= 0x7F:
            return _bad("control, space or non-ASCII byte in path")
        decoded.append(byte)
        i += 1
    for value in decoded:
        if value < 0x20 or value == 0x7F:
            return _bad("encoded control character or NUL in path")
        if value == 0x5C:
            return _bad("encoded backslash in path")
    if _contains_escape(decoded):
        return _bad("double-encoded path")
    return bytes(decoded)


def _contains_escape(data: bytes | bytearray) -> bool:
    """True when ``data`` still holds a %XX sequence after one decode."""
    start = 0
    while True:
        found = data.find(b"%", start)
        if found == -1 or found + 3 > len(data):
            return False
        if data[found + 1] in _HEX_VALUE and data[found + 2] in _HEX_VALUE:
            return True
        start = found + 1


def _normalize_segments(path: str) -> tuple[list[str], bool] | HttpError:
    """Apply ``.``/``..``/``//`` rules; return segments and "is a directory"."""
    segments: list[str] = []
    is_directory = True  # "/" alone names the root directory
    for segment in path.split("/"):
        if segment in ("", "."):
            is_directory = True
            continue
        if segment == "..":
            if not segments:
                return _bad("path climbs above the document root")
            segments.pop()
            is_directory = True
            continue
        segments.append(segment)
        is_directory = False
    return segments, is_directory


def normalize_request_target(
    target: bytes,
    *,
    server_names: Collection[str] | None = None,
    max_target_length: int = MAX_TARGET_LENGTH,
) -> ResolvedPath | HttpError:
    """Normalize a raw request-target without looking anything up.

    Returns a ResolvedPath whose ``fs_path`` is guaranteed to stay inside the
    root, or an HttpError (400 or 414).
    """
    if not isinstance(target, (bytes, bytearray, memoryview)):
        raise TypeError(f"request target must be bytes, not {type(target).__name__}")
    target = bytes(target)
    if len(target) > max_target_length:
        return HttpError(414, f"request target longer than {max_target_length} bytes")
    if not target:
        return _bad("empty request target")
    if target[:1] != b"/":
        if target == b"*":
            return _bad("asterisk-form is not served")
        stripped = _split_absolute_form(target, server_names)
        if isinstance(stripped, HttpError):
            return stripped
        target = stripped
    if b"#" in target:
        return _bad("fragment in request target")
    raw_path, _, query = target.partition(b"?")
    decoded = _percent_decode_once(raw_path)
    if isinstance(decoded, HttpError):
        return decoded
    try:
        text = decoded.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        return _bad("path is not valid UTF-8")
    normalized = _normalize_segments(text)
    if isinstance(normalized, HttpError):
        return normalized
    segments, is_directory = normalized
    if is_directory:
        segments.append(INDEX_DOCUMENT)
    fs_path = "/".join(segments)
    return ResolvedPath(fs_path=fs_path, url_path="/" + fs_path, query=query)


def docroot_has(docroot: DocrootLookup, fs_path: str) -> bool:
    """Ask a manifest mapping or a lookup callable whether a file exists."""
    if isinstance(docroot, Mapping):
        return fs_path in docroot
    return bool(docroot(fs_path))


def resolve_request_target(
    target: bytes,
    docroot: DocrootLookup,
    *,
    server_names: Collection[str] | None = None,
    max_target_length: int = MAX_TARGET_LENGTH,
) -> ResolvedPath | HttpError:
    """Normalize ``target`` and look it up: a ResolvedPath that exists, or 400/404/414."""
    resolved = normalize_request_target(
        target, server_names=server_names, max_target_length=max_target_length
    )
    if isinstance(resolved, HttpError):
        return resolved
    if not docroot_has(docroot, resolved.fs_path):
        return HttpError(404, f"{resolved.url_path} is not in the document root")
    return resolved
