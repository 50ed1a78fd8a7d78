"""The kernel web server's commands: `reg` (driver parameters), `!tdi` (tdx's objects), `!khttpd`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wskdbg.commands.registry import CommandResult, Invocation, command, tokenize

if TYPE_CHECKING:
    from wskdbg.engine import Engine

_ROOTS = {"HKLM": "\\Registry\\Machine", "HKEY_LOCAL_MACHINE": "\\Registry\\Machine"}


def _key_path(text: str) -> str:
    root, _, rest = text.partition("\\")
    base = _ROOTS.get(root.upper())
    if base is None:
        raise ValueError(f"unknown root key '{root}' (HKLM)")
    return f"{base}\\{rest}" if rest else base


REG_HELP = """
reg add KeyName /v ValueName /d Data [/t REG_SZ|REG_DWORD]   set a value (kernel.extensions registry)
reg query KeyName                                             list a key's values

Drivers read their Parameters key in DriverEntry, so a value takes effect at the next `sc start`:
  reg add HKLM\\System\\CurrentControlSet\\Services\\khttpd\\Parameters /v Transport /d TDI
"""


@command("reg", area="services", syntax="reg add KeyName /v Name /d Data [/t Type] | reg query KeyName",
         mutates=True, summary="Set and query driver parameters in the registry", help=REG_HELP)
def cmd_reg(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    if len(words) < 2 or words[0][0].lower() not in ("add", "query"):
        raise inv.error("reg needs add or query and a key name", 0)
    try:
        key = _key_path(words[1][0])
    except ValueError as exc:
        raise inv.error(str(exc), words[1][1]) from None
    registry: dict[str, dict[str, Any]] = dbg.kernel.extensions.setdefault("registry", {})
    if words[0][0].lower() == "query":
        values = registry.get(key, {})
        lines = [words[1][0]] + [f"    {name}    {'REG_DWORD' if isinstance(v, int) else 'REG_SZ'}    "
                                 f"{hex(v) if isinstance(v, int) else v}" for name, v in values.items()]
        return CommandResult("\n".join(lines), {"key": key, "values": dict(values)})
    opts: dict[str, str] = {}
    i = 2
    while i < len(words):
        flag, at = words[i]
        if flag.lower() not in ("/v", "/d", "/t") or i + 1 >= len(words):
            raise inv.error(f"unexpected '{flag}' (reg add Key /v Name /d Data [/t Type])", at)
        opts[flag.lower()] = words[i + 1][0]
        i += 2
    if "/v" not in opts or "/d" not in opts:
        raise inv.error("reg add needs /v Name and /d Data", len(inv.args))
    kind = opts.get("/t", "REG_SZ").upper()
    data: Any = opts["/d"]
    if kind == "REG_DWORD":
        try:
            data = int(data, 0)
        except ValueError:
            raise inv.error(f"'{data}' is not a REG_DWORD", len(inv.args)) from None
    elif kind != "REG_SZ":
        raise inv.error(f"unsupported type {kind} (REG_SZ, REG_DWORD)", len(inv.args))
    registry.setdefault(key, {})[opts["/v"]] = data
    return CommandResult("The operation completed successfully.", {"key": key, "name": opts["/v"], "data": data})


@command("!tdi", area="network", syntax="!tdi",
         summary="List tdx's transport address objects and connection endpoints",
         help="""
Every TDI transport address object (device, protocol, local address, registered event handlers,
whether a transport listener is behind it) and every connection endpoint (state, address object,
remote address, bytes) that tdx.sys holds on the current host.""")
def cmd_tdi(dbg: "Engine", inv: Invocation) -> CommandResult:
    from stack.tdi.constants import TDI_EVENT_NAMES
    from stack.tdi.tdx import tdx_globals
    g = tdx_globals(dbg.kernel)
    if g is None:
        return CommandResult(f"tdx is not loaded on {dbg.current_host}.", {"address_objects": [], "connections": []})
    lines = ["Address objects:", f"{'Address':<18} {'Device':<14} {'Local':<22} Listening  Event handlers"]
    aos = []
    for ao in g.address_objects:
        handlers = ",".join(TDI_EVENT_NAMES[e].removeprefix("TDI_EVENT_") for e in sorted(ao.handlers))
        lines.append(f"{ao.address:016x}   {ao.device.name:<14} {str(ao.local):<22} "
                     f"{'yes' if ao.listener is not None else 'no':<10} {handlers or '-'}")
        aos.append({"address": ao.address, "device": ao.device.name, "local": str(ao.local),
                    "handlers": handlers})
    lines += ["", "Connection endpoints:",
              f"{'Address':<18} {'State':<14} {'AddressObject':<18} {'Remote':<22} {'Sent':>8} {'Received':>8}"]
    cos = []
    for co in g.connections:
        ao = f"{co.ao.address:016x}" if co.ao is not None else "-"
        lines.append(f"{co.address:016x}   {co.state:<14} {ao:<18} {str(co.remote or '-'):<22} "
                     f"{co.bytes_sent:>8} {co.bytes_received:>8}")
        cos.append({"address": co.address, "state": co.state, "remote": str(co.remote or "-"),
                    "sent": co.bytes_sent, "received": co.bytes_received})
    lines.append(f"\nEvent handler calls: {g.indications}")
    return CommandResult("\n".join(lines), {"address_objects": aos, "connections": cos})


@command("!khttpd", area="network", syntax="!khttpd",
         summary="khttpd's state: transport, connections, request counters, open files (and its response cache)",
         help="""
khttpd's debugger extension: the transport it runs over (WSK or TDI), its connection and request
counters, the files its open-file cache keeps open (FILE_OBJECT, size, hits, sends using it; the cache's
hits, misses, files reopened because they changed, files closed), and the response cache when it has one
(entries, hits, misses, locked pages, memory used).""")
def cmd_khttpd(dbg: "Engine", inv: Invocation) -> CommandResult:
    from stack.drivers.khttpd.state import khttpd_globals
    g = khttpd_globals(dbg.kernel)
    if g is None:
        return CommandResult(f"khttpd is not loaded on {dbg.current_host}.", {})
    s = g.stats
    data: dict[str, Any] = {"transport": g.config.Transport, "port": g.config.Port,
                            "connections_active": s.connections_active, "connections_accepted": s.connections_accepted,
                            "requests": s.requests, "errors": s.errors, "header_timeouts": s.header_timeouts,
                            "bytes_sent": s.bytes_sent}
    lines = [f"khttpd at {g.address:016x}: port {g.config.Port} over {g.config.Transport}"
             f"{' (copy mode)' if g.config.CopyMode else ''}",
             f"  connections  active {s.connections_active}  accepted {s.connections_accepted}  "
             f"refused {s.connections_refused}",
             f"  requests     {s.requests}  (zero copy {s.static_zero_copy}, copied {s.static_copied}, "
             f"HEAD {s.head_requests}, relayed {s.dynamic_relayed}, errors {s.errors}, "
             f"header timeouts {s.header_timeouts})",
             f"  bytes sent   {s.bytes_sent}"]
    if g.config.event_driven:  # connections live on receive events, no worker thread
        events = "TDI ClientEventReceive" if g.config.Transport == "TDI" else "WskReceiveEvent"
        lines.append(f"  connections  event driven: requests parsed in {events} at DISPATCH_LEVEL")
    if g.config.ConditionalAccept:  # SO_CONDITIONAL_ACCEPT: WskInspectEvent decides before the SYN-ACK
        lines.append(f"  conditional accept  rejected {s.inspect_rejected} (RST at the SYN), pended {s.inspect_pended}, "
                     f"waiting now {len(g.inspect_waiting)}")
        data["conditional_accept"] = {"rejected": s.inspect_rejected, "pended": s.inspect_pended,
                                      "waiting": len(g.inspect_waiting)}
    if g.config.HandOver != "Relay":
        lines.append(f"  hand-over    {g.config.HandOver} to port {g.config.BackendPort}: "
                     f"redirected {s.dynamic_redirected}, handed over {s.dynamic_handed_over}, "
                     f"fallbacks {s.hand_over_fallbacks}")
        data["hand_over"] = {"method": g.config.HandOver, "handed_over": s.dynamic_handed_over,
                             "redirected": s.dynamic_redirected, "fallbacks": s.hand_over_fallbacks}
    cache = getattr(g, "cache", None)
    if cache is not None:
        lines += cache.describe()
        data["cache"] = cache.snapshot()
    open_files = getattr(g, "open_files", None)
    if open_files is not None:
        lines += open_files.describe()
        data["open_files"] = open_files.snapshot()
    return CommandResult("\n".join(lines), data)
