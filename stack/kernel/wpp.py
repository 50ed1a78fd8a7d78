"""WPP software tracing: providers, trace sessions and message formatting.

A driver declares a provider (control GUID + named flag bits, in declaration
order: bit 0 = 0x1) and calls `DoTraceMessage`/`TraceEvents`.  Whether a
message is wanted is two integer tests against the provider's enabled mask
and level — done before any formatting, so a disabled message costs almost
nothing.  Sessions (`tracelog -start NAME -guid G -flag F -level L`) keep raw
records in a bounded ring; formatting happens when someone reads them.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .events import WppMessage
from .ntstatus import status_name
from .symbols import current_kernel, has_current_kernel

if TYPE_CHECKING:
    from .kernel import Kernel

TRACE_LEVEL_NONE = 0
TRACE_LEVEL_CRITICAL = 1
TRACE_LEVEL_ERROR = 2
TRACE_LEVEL_WARNING = 3
TRACE_LEVEL_INFORMATION = 4
TRACE_LEVEL_VERBOSE = 5
LEVEL_NAMES = {0: "NONE", 1: "CRITICAL", 2: "ERROR", 3: "WARNING", 4: "INFORMATION", 5: "VERBOSE"}

DEFAULT_PREFIX = "[%9!d!]%8!04X!.%3!04X!::%4!s! [%1!s!]"


class WppError(ValueError):
    pass


@dataclass(slots=True)
class WppProvider:
    """WPP_DEFINE_CONTROL_GUID(name, guid, WPP_DEFINE_BIT(...)...)."""

    name: str
    guid: str  # canonical lower-case 8-4-4-4-12
    flags: tuple[str, ...]
    enabled_flags: int = 0  # union over the sessions that enable it
    level: int = 0  # max over those sessions
    messages: int = 0
    suppressed: int = 0
    # The message GUIDs' friendly name, which the default prefix's %1!s! prints: the name
    # tracewpp gives a component's TMF files, by default the directory it was built in
    # (`[echosrv]`), set from the driver object by WPP_INIT_TRACING.
    friendly_name: str = ""

    def bit(self, flag: str) -> int:
        try:
            return 1 << self.flags.index(flag)
        except ValueError:
            raise WppError(f"provider {self.name} has no flag {flag}") from None

    def enabled(self, flag_bit: int, level: int) -> bool:
        return bool(self.enabled_flags & flag_bit) and level <= self.level


@dataclass(slots=True)
class WppRecord:
    seq: int
    time_ns: int
    cpu: int
    pid: int
    tid: int
    provider: str
    flag: str
    level: int
    function: str
    fmt: str
    args: tuple
    text: str = ""
    friendly: str = ""  # %1!s!: the message GUID's friendly name


@dataclass(slots=True)
class WppSession:
    """A trace session: which providers at which flags/level, and a bounded ring of records."""

    name: str
    providers: dict[str, tuple[int, int]]  # guid -> (flags, level)
    buffer: deque
    realtime: bool = False
    events_lost: int = 0
    started_ns: int = 0
    total: int = 0

    @property
    def capacity(self) -> int:
        return self.buffer.maxlen or 0


def canonical_guid(text: str) -> str:
    """Accept `{8-4-4-4-12}`, `#8-4-4-4-12` or the WPP `(l,w,w,w,ll)` group form."""
    t = text.strip().lstrip("#").strip("{}() ").lower()
    if "," in t:
        parts = [p.strip().lstrip("0x") or "0" for p in t.split(",")]
        if len(parts) == 5:
            widths = (8, 4, 4, 4, 12)
            t = "-".join(p.rjust(w, "0") for p, w in zip(parts, widths))
    if not re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", t):
        raise WppError(f"not a GUID: {text!r}")
    return t


class WppRegistry:
    """One per kernel: the providers drivers registered and the running sessions."""

    def __init__(self, kernel: "Kernel") -> None:
        self.kernel = kernel
        self.providers: dict[str, WppProvider] = {}  # guid -> provider
        self.sessions: dict[str, WppSession] = {}
        self.prefix = DEFAULT_PREFIX
        self._seq = 0

    # -- providers -------------------------------------------------------------
    def register(self, provider: WppProvider) -> WppProvider:
        existing = self.providers.get(provider.guid)
        if existing is not None:
            return existing
        self.providers[provider.guid] = provider
        self._recompute(provider)
        return provider

    def unregister(self, provider: WppProvider) -> None:
        self.providers.pop(provider.guid, None)

    def find_provider(self, name_or_guid: str) -> WppProvider | None:
        for p in self.providers.values():
            if p.name.lower() == name_or_guid.lower():
                return p
        try:
            return self.providers.get(canonical_guid(name_or_guid))
        except WppError:
            return None

    # -- sessions (tracelog) --------------------------------------------------------
    def start(self, name: str, guid: str, flags: int, level: int = TRACE_LEVEL_VERBOSE,
              buffer_records: int = 4096, realtime: bool = False) -> WppSession:
        if name in self.sessions:
            raise WppError(f"session {name} is already running (use enable to change it)")
        g = self._resolve_guid(guid)
        session = WppSession(name, {g: (flags, level)}, deque(maxlen=buffer_records), realtime,
                             started_ns=self.kernel.now_ns)
        self.sessions[name] = session
        self._recompute_all()
        return session

    def enable(self, name: str, guid: str, flags: int, level: int) -> WppSession:
        session = self._session(name)
        session.providers[self._resolve_guid(guid)] = (flags, level)
        self._recompute_all()
        return session

    def disable(self, name: str, guid: str) -> WppSession:
        session = self._session(name)
        session.providers.pop(self._resolve_guid(guid), None)
        self._recompute_all()
        return session

    def stop(self, name: str) -> WppSession:
        session = self._session(name)
        del self.sessions[name]
        self._recompute_all()
        return session

    def _session(self, name: str) -> WppSession:
        try:
            return self.sessions[name]
        except KeyError:
            raise WppError(f"no trace session named {name}") from None

    def _resolve_guid(self, text: str) -> str:
        p = self.find_provider(text)
        return p.guid if p else canonical_guid(text)

    def _recompute_all(self) -> None:
        for p in self.providers.values():
            self._recompute(p)

    def _recompute(self, p: WppProvider) -> None:
        flags = 0
        level = 0
        for s in self.sessions.values():
            f, lv = s.providers.get(p.guid, (0, 0))
            flags |= f
            level = max(level, lv if f else 0)
        p.enabled_flags = flags
        p.level = level

    # -- logging ------------------------------------------------------------------------
    def log(self, provider: WppProvider, flag: str, level: int, function: str, fmt: str, args: tuple) -> None:
        k = self.kernel
        self._seq += 1
        thread = k.current_thread
        rec = WppRecord(self._seq, k.now_ns, k.cpu, thread.pid if thread else 0, thread.tid if thread else 0,
                        provider.name, flag, level, function, fmt, args,
                        friendly=provider.friendly_name or provider.name)
        bit = provider.bit(flag)
        delivered = False
        for s in self.sessions.values():
            f, lv = s.providers.get(provider.guid, (0, 0))
            if f & bit and level <= lv:
                if len(s.buffer) == s.buffer.maxlen:
                    s.events_lost += 1
                s.buffer.append(rec)
                s.total += 1
                delivered = True
        if delivered:
            provider.messages += 1
            if k.bus.subscribers:
                rec.text = format_message(fmt, args)
                k.publish(WppMessage, provider=provider.name, flag=flag, level=level, function=function,
                          text=rec.text)

    # -- formatting (tracefmt) ------------------------------------------------------------------
    def format_record(self, rec: WppRecord, prefix: str | None = None) -> str:
        text = rec.text or format_message(rec.fmt, rec.args)
        rec.text = text
        return format_prefix(prefix if prefix is not None else self.prefix, rec) + text


_TIME_CACHE: dict[int, str] = {}


def format_systime(time_ns: int) -> str:
    """MM/DD/YYYY-HH:MM:SS.mmm of the emulated system time (boot epoch + virtual time)."""
    from .kernel import BOOT_EPOCH_S
    secs, ns = divmod(time_ns, 1_000_000_000)
    t = time.gmtime(BOOT_EPOCH_S + secs)
    return f"{t.tm_mon:02d}/{t.tm_mday:02d}/{t.tm_year}-{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{ns // 1_000_000:03d}"


_PREFIX_RE = re.compile(r"%(\d)!([^!]*)!")
# %N!fmt! fields (1 provider, 2 function, 3 thread, 4 time, 5-6 zero, 7 sequence, 8 process, 9 CPU)
# and the %!NAME! names format_prefix fills in.
PREFIX_FIELDS = range(1, 10)
PREFIX_NAMES = ("FUNC", "LEVEL", "FLAGS")
_PREFIX_SPEC_RE = re.compile(r"[-+ #0]*\d*(?:\.\d+)?[diuxXocsS]")


class WppPrefixError(WppError):
    """A bad `!wmitrace.setprefix` prefix; ``position`` indexes the prefix text."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


def check_prefix(prefix: str) -> None:
    """Raise WppPrefixError unless every %N!fmt! and %!NAME! in `prefix` is one format_prefix knows.

    A '%' that starts neither (e.g. "50% ") is kept as text.
    """
    pos = prefix.find("%")
    while pos >= 0:
        start = pos + 1
        if prefix.startswith("!", start):
            end = prefix.find("!", start + 1)
            if end < 0:
                raise WppPrefixError("unterminated %!NAME! (the closing '!' is missing)", pos)
            name = prefix[start + 1:end]
            if name not in PREFIX_NAMES:
                known = ", ".join(f"%!{n}!" for n in PREFIX_NAMES)
                raise WppPrefixError(f"unknown prefix name %!{name}! (known: {known})", pos)
            pos = prefix.find("%", end + 1)
            continue
        digits_end = start
        while digits_end < len(prefix) and prefix[digits_end].isdigit():
            digits_end += 1
        if digits_end == start:
            pos = prefix.find("%", start)
            continue
        number = prefix[start:digits_end]
        if int(number) not in PREFIX_FIELDS:
            raise WppPrefixError(f"%{number} is not a prefix field: use %1 .. %9", pos)
        if not prefix.startswith("!", digits_end):
            raise WppPrefixError(f"%{number} needs a format between '!' marks, e.g. %{number}!s!", pos)
        end = prefix.find("!", digits_end + 1)
        if end < 0:
            raise WppPrefixError(f"unterminated %{number}!...! (the closing '!' is missing)", pos)
        spec = prefix[digits_end + 1:end]
        if spec and not _PREFIX_SPEC_RE.fullmatch(spec):
            raise WppPrefixError(f"bad format '{spec}' in %{number}!{spec}! (printf style, e.g. s, d, 04x)", pos)
        pos = prefix.find("%", end + 1)


def format_prefix(prefix: str, rec: WppRecord) -> str:
    values = {1: rec.friendly or rec.provider, 2: f"{rec.function}", 3: rec.tid, 4: format_systime(rec.time_ns), 5: 0, 6: 0,
              7: rec.seq, 8: rec.pid, 9: rec.cpu}

    def sub(m: re.Match) -> str:
        n = int(m.group(1))
        spec = m.group(2)
        v = values.get(n, "")
        return _printf_one("%" + spec, v) if spec else str(v)

    out = _PREFIX_RE.sub(sub, prefix)
    out = out.replace("%!FUNC!", rec.function).replace("%!LEVEL!", LEVEL_NAMES.get(rec.level, str(rec.level)))
    return out.replace("%!FLAGS!", rec.flag)


_FMT_RE = re.compile(r"%(?:!([A-Za-z]+)!|([-+ #0]*)(\d*)(?:\.(\d+))?(I64|I32|I|ll|l|h|w)?([diuxXpscSoc%]))")


def format_message(fmt: str, args: tuple) -> str:
    """printf with WPP's extended specifiers (%!STATUS!, %!IPADDR!, %!PORT! ...)."""
    it = iter(args)

    def sub(m: re.Match) -> str:
        ext = m.group(1)
        if ext is not None:
            return _extended(ext.upper(), it)
        conv = m.group(6)
        if conv == "%":
            return "%"
        value = next(it, None)
        return _printf_one("%" + (m.group(2) or "") + (m.group(3) or "") +
                           (("." + m.group(4)) if m.group(4) else "") + conv, value)

    try:
        return _FMT_RE.sub(sub, fmt)
    except Exception as exc:  # a bad format string must not crash the machine
        return f"{fmt} <format error: {exc}>"


def _printf_one(spec: str, value: Any) -> str:
    conv = spec[-1]
    if value is None:
        value = 0 if conv not in "sS" else "(null)"
    if conv == "p":
        return f"{_int(value) & 0xFFFFFFFFFFFFFFFF:016X}"
    if conv in "sS":
        return spec[:-1].replace("S", "") % (str(value),) if len(spec) > 2 else str(value)
    if conv == "u":
        return (spec[:-1] + "d") % (_int(value) & 0xFFFFFFFFFFFFFFFF)
    if conv == "c":
        return chr(_int(value) & 0xFF)
    return spec % _int(value)


def _int(value: Any) -> int:
    if isinstance(value, int):
        return value
    return int(getattr(value, "address", 0) or 0)


def _extended(name: str, it) -> str:
    if name == "STATUS":
        v = _int(next(it, 0)) & 0xFFFFFFFF
        n = status_name(v)
        return n if n.startswith("STATUS_") else f"0x{v:08x}"
    if name == "IPADDR":
        v = next(it, 0)
        if isinstance(v, (bytes, bytearray)) and len(v) == 4:
            return ".".join(str(b) for b in v)
        return str(v)
    if name == "PORT":
        return str(_int(next(it, 0)))
    if name == "IRQL":
        from .irql import irql_name
        return irql_name(_int(next(it, 0)))
    if name == "BOOL":
        return "TRUE" if next(it, 0) else "FALSE"
    if name in ("FUNC", "FILE", "LINE"):
        return ""
    return f"%!{name}!"


# --- the driver-facing macros -------------------------------------------------------------

def WPP_DEFINE_CONTROL_GUID(name: str, guid: str, flags: list[str] | tuple[str, ...]) -> WppProvider:
    if len(flags) > 31:
        raise WppError("WPP allows at most 31 flag bits")
    return WppProvider(name, canonical_guid(guid), tuple(flags))


def WPP_INIT_TRACING(provider: WppProvider, DriverObject: Any = None, RegistryPath: str = "") -> WppProvider:
    module = getattr(DriverObject, "module", "")
    if module and not provider.friendly_name:
        provider.friendly_name = module  # the component's TMF friendly name: its build directory
    return current_kernel().wpp.register(provider)


def WPP_CLEANUP(provider: WppProvider, DriverObject: Any = None) -> None:
    current_kernel().wpp.unregister(provider)


def TraceEvents(provider: WppProvider, level: int, flag: str, fmt: str, *args: Any) -> None:
    """WPP_LEVEL_FLAGS_ENABLED(level, flag): the flag is on and the level is within the session's."""
    try:
        bit = 1 << provider.flags.index(flag)
    except ValueError:
        raise WppError(f"provider {provider.name} has no flag {flag}") from None
    if not (provider.enabled_flags & bit) or level > provider.level:
        return
    if not has_current_kernel():
        return
    k = current_kernel()
    function = k.frames[-1].symbol.split("!", 1)[-1] if k.frames else "?"
    k.wpp.log(provider, flag, level, function, fmt, args)


def DoTraceMessage(provider: WppProvider, flag: str, fmt: str, *args: Any) -> None:
    """The default WPP macro: checks the flag only (level is ignored)."""
    try:
        bit = 1 << provider.flags.index(flag)
    except ValueError:
        raise WppError(f"provider {provider.name} has no flag {flag}") from None
    if not provider.enabled_flags & bit:
        return
    if not has_current_kernel():
        return
    k = current_kernel()
    function = k.frames[-1].symbol.split("!", 1)[-1] if k.frames else "?"
    k.wpp.log(provider, flag, TRACE_LEVEL_NONE, function, fmt, args)
