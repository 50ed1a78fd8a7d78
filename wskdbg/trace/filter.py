"""The trace filter language: `provider:echosrv flag:TRCINFO level<=3 host:winsrv "text"`.

`TraceFilter.parse` turns filter text into a `TraceFilter` (errors name the column);
`describe` gives canonical text back.  The columnar store (wskdbg.trace.store) evaluates a
filter block by block; `TraceFilter.matches` is the plain per-record predicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .record import TraceRecord, format_trace_line

__all__ = ["TraceFilter", "TraceFilterError"]

_LEVEL_BY_NAME: dict[str, int] = {
    "critical": 1,
    "fatal": 1,
    "error": 2,
    "err": 2,
    "warning": 3,
    "warn": 3,
    "information": 4,
    "info": 4,
    "verbose": 5,
    "debug": 5,
}


class TraceFilterError(ValueError):
    """Bad filter syntax; ``column`` is the 1-based column of the problem."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} (column {column})")
        self.reason = message
        self.column = column


@dataclass(frozen=True, slots=True)
class TraceFilter:
    """What a selection keeps.  ``None`` (or empty text) means "any".

    Provider, flag and host names compare case-insensitively; ``text`` is a
    case-insensitive substring of the whole display line.
    """

    providers: frozenset[str] | None = None
    flags: frozenset[str] | None = None
    max_level: int | None = None
    text: str | None = None
    hosts: frozenset[str] | None = None

    @property
    def is_empty(self) -> bool:
        return (
            self.providers is None
            and self.flags is None
            and self.max_level is None
            and not self.text
            and self.hosts is None
        )

    def matches(self, record: TraceRecord) -> bool:
        """Plain predicate for one record (used outside the columnar store)."""
        if self.providers is not None and record.provider.lower() not in _lowered(
            self.providers
        ):
            return False
        if self.flags is not None and (
            record.flag is None or record.flag.lower() not in _lowered(self.flags)
        ):
            return False
        if self.hosts is not None and record.host.lower() not in _lowered(self.hosts):
            return False
        if self.max_level is not None and record.level > self.max_level:
            return False
        if self.text and self.text.lower() not in format_trace_line(record).lower():
            return False
        return True

    def describe(self) -> str:
        """Canonical filter text; ``TraceFilter.parse(f.describe()) == f``."""
        parts: list[str] = []
        for key, names in (
            ("provider", self.providers),
            ("flag", self.flags),
            ("host", self.hosts),
        ):
            if names is not None:
                parts.append(f"{key}:{','.join(sorted(names))}")
        if self.max_level is not None:
            parts.append(f"level<={self.max_level}")
        if self.text:
            parts.append(_quote(self.text))
        return " ".join(parts)

    @classmethod
    def parse(cls, source: str) -> TraceFilter:
        """Parse ``provider:echosrv,tcpip level<=4 flag:TRCINFO host:a "some text"``.

        Keys: ``provider:``/``p:``, ``flag:``/``f:``, ``host:``/``h:`` (comma
        lists; repeating a key adds names), ``level<=N``, ``level<N``,
        ``level:N``/``level=N`` (N is 1..5 or a name such as ``warning``; all
        mean "at most"), ``text:WORDS``.  Bare words, and ``"quoted phrases"``,
        form the text substring, joined by single spaces.
        """
        providers: set[str] | None = None
        flags: set[str] | None = None
        hosts: set[str] | None = None
        max_level: int | None = None
        words: list[str] = []
        for token, column, quoted in _tokenize(source):
            if quoted:
                words.append(token)
                continue
            key, op, value = _split_key(token)
            if key is None:
                words.append(token)
                continue
            if key == "?":
                raise TraceFilterError(
                    f"unknown filter key {value!r}; keys are provider, flag, host,"
                    ' level, text (quote text that contains ":")',
                    column,
                )
            if key == "level":
                level = _parse_level(value, column + len(token) - len(value))
                if op == "<":
                    level -= 1
                    if level < 1:
                        raise TraceFilterError("level<1 keeps nothing", column)
                max_level = level if max_level is None else min(max_level, level)
                continue
            if op != ":":
                raise TraceFilterError(f"{key} takes ':' (as in {key}:name)", column)
            if key == "text":
                if not value:
                    raise TraceFilterError("text: needs a value", column)
                words.append(value)
                continue
            names = {name for name in value.split(",") if name}
            if not names:
                raise TraceFilterError(f"{key}: needs a name", column)
            if key == "provider":
                providers = names if providers is None else providers | names
            elif key == "flag":
                flags = names if flags is None else flags | names
            else:
                hosts = names if hosts is None else hosts | names
        return cls(
            providers=frozenset(providers) if providers is not None else None,
            flags=frozenset(flags) if flags is not None else None,
            max_level=max_level,
            text=" ".join(words) or None,
            hosts=frozenset(hosts) if hosts is not None else None,
        )


_KEY_ALIASES = {
    "provider": "provider",
    "p": "provider",
    "flag": "flag",
    "f": "flag",
    "host": "host",
    "h": "host",
    "level": "level",
    "l": "level",
    "text": "text",
}


def _lowered(names: frozenset[str]) -> frozenset[str]:
    return frozenset(name.lower() for name in names)


def _quote(text: str) -> str:
    words = text.split(" ")
    plain = all(word and _split_key(word)[0] is None for word in words)
    return text if plain else '"' + text.replace('"', "") + '"'


def _tokenize(source: str) -> Iterator[tuple[str, int, bool]]:
    """Whitespace-separated tokens with 1-based columns; "..." is one token."""
    index, length = 0, len(source)
    while index < length:
        char = source[index]
        if char.isspace():
            index += 1
            continue
        if char == '"':
            end = source.find('"', index + 1)
            if end < 0:
                raise TraceFilterError('unterminated "quote"', index + 1)
            yield source[index + 1 : end], index + 1, True
            index = end + 1
            continue
        start, parts = index, []
        while index < length and not source[index].isspace():
            if source[index] == '"':  # key:"quoted value"
                end = source.find('"', index + 1)
                if end < 0:
                    raise TraceFilterError('unterminated "quote"', index + 1)
                parts.append(source[index + 1 : end])
                index = end + 1
            else:
                parts.append(source[index])
                index += 1
        yield "".join(parts), start + 1, False


def _split_key(token: str) -> tuple[str | None, str, str]:
    """``provider:x`` -> ("provider", ":", "x"); a plain word -> (None, "", token)."""
    for index, char in enumerate(token):
        if char in ":<=":
            name = token[:index].lower()
            if not name.isalpha():
                return None, "", token
            if name not in _KEY_ALIASES:
                return "?", "", token[:index]
            op = "<" if token.startswith("<", index) else char
            if token.startswith("<=", index):
                op, index = "<=", index + 1
            return _KEY_ALIASES[name], op, token[index + 1 :]
        if not char.isalpha():
            return None, "", token
    return None, "", token


def _parse_level(value: str, column: int) -> int:
    if value.isdigit():
        level = int(value)
        if 1 <= level <= 5:
            return level
    elif value.lower() in _LEVEL_BY_NAME:
        return _LEVEL_BY_NAME[value.lower()]
    raise TraceFilterError(
        f"bad level {value!r}: use 1..5 or critical, error, warning, info, verbose",
        column,
    )
