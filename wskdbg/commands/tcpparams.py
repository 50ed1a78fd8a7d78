"""`!tcpparams`: the tcpip registry values the lab models (HKLM\\SYSTEM\\CurrentControlSet\\Services\\
Tcpip\\Parameters) and the time-wait table they bound.

On Windows these are registry values tcpip reads when it starts (learn.microsoft.com, Windows 2000
TCP/IP registry reference: MaxFreeTcbs cc938178, TcpTimedWaitDelay cc938217).  The lab shows them
and lets a class lower MaxFreeTcbs at once, to watch the time-wait table reach its bound and
release its oldest records before 2*MSL (KB Q151418).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wskdbg.commands.network import tcpip_of
from wskdbg.commands.registry import CommandResult, Invocation, command, tokenize
from wskdbg.commands.synflood import _number

if TYPE_CHECKING:
    from wskdbg.engine import Engine

_SYNTAX = "!tcpparams [MaxFreeTcbs N]"
_KEY = r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services\Tcpip\Parameters"


@command("!tcpparams", area="network", mutates=True, syntax=_SYNTAX,
         summary="tcpip's MaxFreeTcbs and TcpTimedWaitDelay, and the time-wait table they bound",
         help=f"""
Shows the current host's values of {_KEY} that the lab models:
TcpTimedWaitDelay (2*MSL, how long a closed connection's time-wait TCB is kept) and MaxFreeTcbs
(how many time-wait TCBs the table holds: past it the oldest is released early, as Windows
reuses TIME-WAIT control blocks under a high connection rate - KB Q151418), then the table:
records in it, released early so far (also `!netstat -s`), and the pool tag 'TcpW' they use.
`!tcpparams MaxFreeTcbs 50` sets the bound at once (on Windows: a registry edit and a restart
of tcpip); records past the new bound are released at the next connection to enter TIME_WAIT.""")
def cmd_tcpparams(dbg: "Engine", inv: Invocation) -> CommandResult:
    words = tokenize(inv.args)
    tcp = tcpip_of(dbg).tcp
    if words:
        name, at = words[0]
        if name.lower() != "maxfreetcbs" or len(words) != 2:
            raise inv.error(f"usage: {_SYNTAX}", inv.args_offset + at)
        value, vat = words[1]
        tcp.max_time_wait_tcbs = _number(inv, value, inv.args_offset + vat, 1, 0xFFFFFFFF)
    delay_s = tcp.config.time_wait_ns / 1e9
    data = {"MaxFreeTcbs": tcp.max_time_wait_tcbs, "TcpTimedWaitDelay": delay_s,
            "time_wait_tcbs": len(tcp.time_wait), "reclaimed_early": tcp.counters.tcp_time_wait_reclaimed}
    # reg query's own shape (the key, then name/type/data four spaces apart); the lab's figures after it.
    lines = ["", _KEY,
             f"    MaxFreeTcbs    REG_DWORD    {tcp.max_time_wait_tcbs:#x}",
             f"    TcpTimedWaitDelay    REG_DWORD    {int(delay_s):#x}", "",
             f"(lab) {dbg.current_host}: MaxFreeTcbs {tcp.max_time_wait_tcbs}, TcpTimedWaitDelay {delay_s:g} s; "
             f"time-wait TCBs {len(tcp.time_wait)} (pool tag 'TcpW'); "
             f"released before 2*MSL because the table was full: {tcp.counters.tcp_time_wait_reclaimed}"]
    return CommandResult("\n".join(lines), data)
