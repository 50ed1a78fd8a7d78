"""File extension to Content-Type, the table a static web server ships with.

A fixed table rather than Python's ``mimetypes`` module: that one reads the
host's /etc/mime.types, and the emulated server must answer the same on every
machine.
"""

from __future__ import annotations

DEFAULT_CONTENT_TYPE = "application/octet-stream"

_UTF8 = "; charset=utf-8"

CONTENT_TYPES: dict[str, str] = {
    # text
    ".html": "text/html" + _UTF8,
    ".htm": "text/html" + _UTF8,
    ".txt": "text/plain" + _UTF8,
    ".css": "text/css" + _UTF8,
    ".csv": "text/csv" + _UTF8,
    ".md": "text/markdown" + _UTF8,
    ".xml": "application/xml",
    ".js": "text/javascript" + _UTF8,
    ".mjs": "text/javascript" + _UTF8,
    ".json": "application/json",
    # images
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
    ".ico": "image/vnd.microsoft.icon",
    ".webp": "image/webp",
    # fonts
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    # archives and binaries
    ".pdf": "application/pdf",
    ".zip": "application/zip",
    ".gz": "application/gzip",
    ".tar": "application/x-tar",
    ".wasm": "application/wasm",
    ".bin": DEFAULT_CONTENT_TYPE,
    ".exe": "application/vnd.microsoft.portable-executable",
    ".dll": "application/vnd.microsoft.portable-executable",
    ".sys": "application/vnd.microsoft.portable-executable",
    # media
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
}


def content_type_for(path: str) -> str:
    """Content-Type for a docroot path, by its extension (case-insensitive).

    Only the last path segment counts, so a dot in a directory name does not
    give a file an extension.
    """
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    if dot <= 0:  # no extension, or a dot file such as ".htaccess"
        return DEFAULT_CONTENT_TYPE
    return CONTENT_TYPES.get(name[dot:].lower(), DEFAULT_CONTENT_TYPE)
