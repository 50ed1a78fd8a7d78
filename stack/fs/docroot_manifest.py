"""The lab's document root: the files khttpd serves, by relative posix path.

Small text files (index.html, about.txt, style.css, files/index.html) ship in
``stack/fs/docroot/`` and are read once when the manifest is built; this is
the only time the host file system is touched. The binary test files are
never stored: each is synthesized on demand from a SHA-256 counter stream
seeded with its own path, so every run serves the same bytes and a client can
recompute what it should have received (``synthesize_file``).

Paths under ``DYNAMIC_PREFIXES`` are not files: khttpd relays them to the
user-mode web server (``DYNAMIC_SAMPLE_PATH`` is the sample page it answers).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from pathlib import Path

DOCROOT_DIR = Path(__file__).resolve().parent / "docroot"

# Synthesized binary files and their exact sizes in bytes.
DOCROOT_SIZES: dict[str, int] = {
    "files/64B.bin": 64,
    "files/1KB.bin": 1024,
    "files/4KB.bin": 4 * 1024,
    "files/16KB.bin": 16 * 1024,
    "files/64KB.bin": 64 * 1024,
    "files/256KB.bin": 256 * 1024,
    "files/1MB.bin": 1024 * 1024,
}

DYNAMIC_PREFIXES = ("/cgi/", "/app/")
DYNAMIC_SAMPLE_PATH = "/app/hello"

# Shipped files stay small; anything bigger belongs in DOCROOT_SIZES.
MAX_SHIPPED_FILE_SIZE = 64 * 1024

_STREAM_DOMAIN = b"khttpd-docroot-v1\x00"
_DIGEST_SIZE = hashlib.sha256().digest_size

FileContent = bytes | Callable[[], bytes]


class DocrootError(Exception):
    """The shipped document root is not what the lab expects."""


@functools.lru_cache(maxsize=len(DOCROOT_SIZES))
def synthesize_file(path: str, size: int) -> bytes:
    """``size`` bytes of SHA-256(domain | path | counter) blocks, counter from 0.

    Pure function of its arguments, so the same path and size always give the
    same bytes, on any machine; kept once made (immutable bytes, ~1.4 MB for all seven): every
    lab that reads a file and every test that recomputes one made them again (the 1 MiB file
    ~25 ms of CPU each time, all seven ~40 ms).
    """
    if size < 0:
        raise ValueError(f"file size must be >= 0, got {size}")
    seed = hashlib.sha256(_STREAM_DOMAIN + path.encode("utf-8") + b"\x00")
    blocks = (size + _DIGEST_SIZE - 1) // _DIGEST_SIZE
    out = bytearray(blocks * _DIGEST_SIZE)
    for counter in range(blocks):
        block = seed.copy()  # the prefix is hashed once, then only the counter
        block.update(counter.to_bytes(8, "big"))
        start = counter * _DIGEST_SIZE
        out[start : start + _DIGEST_SIZE] = block.digest()
    del out[size:]
    return bytes(out)


def _shipped_files(root: Path) -> dict[str, bytes]:
    if not root.is_dir():
        raise DocrootError(f"document root folder missing: {root}")
    files: dict[str, bytes] = {}
    real_root = root.resolve()
    for file in sorted(root.rglob("*")):
        relative = file.relative_to(root)
        if any(part.startswith((".", "__")) for part in relative.parts):
            continue  # hidden files and __pycache__ are not content
        # Only regular files reached without a link: a symlink (to a file, or a folder on
        # the way) could serve anything on the host, so it is never content.
        if file.is_symlink() or not file.is_file():
            continue
        resolved = file.resolve()
        if not resolved.is_relative_to(real_root) or resolved != real_root / relative:
            continue
        data = file.read_bytes()
        if len(data) > MAX_SHIPPED_FILE_SIZE:
            raise DocrootError(f"{relative.as_posix()} is {len(data)} bytes; synthesize it")
        files[relative.as_posix()] = data
    return files


def docroot_files(root: Path = DOCROOT_DIR) -> dict[str, FileContent]:
    """Every docroot file by relative posix path, sorted by path.

    Shipped files map to their bytes; synthesized ones to a zero-argument
    callable returning their bytes (call ``file_bytes`` to get either).
    """
    files: dict[str, FileContent] = dict(_shipped_files(root))
    for path, size in DOCROOT_SIZES.items():
        if path in files:
            raise DocrootError(f"{path} is both shipped and synthesized")
        files[path] = functools.partial(synthesize_file, path, size)
    return dict(sorted(files.items()))


def file_bytes(content: FileContent) -> bytes:
    """The bytes of a manifest entry, synthesizing it if needed."""
    return content if isinstance(content, bytes) else content()


def docroot_sizes(root: Path = DOCROOT_DIR) -> dict[str, int]:
    """Size of every docroot file, without synthesizing the big ones."""
    sizes: dict[str, int] = {}
    for path, content in docroot_files(root).items():
        sizes[path] = len(content) if isinstance(content, bytes) else DOCROOT_SIZES[path]
    return sizes
