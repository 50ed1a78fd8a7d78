"""The lab a bridge serves by default: the standard lab (`default_world`), where winsrv
already runs echosrv (40007) and khttpd (80, handing dynamic requests to its user-mode
web server on 8080), next to the `dns` and `httpbin` hosts.

Registered as topology "default", so a recording names it and `wskdbg run rec.wbr`
rebuilds it.  (The debugger may build its own lab and register it under another
name with `stack.bridge.session.register_topology`.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .session import register_topology

if TYPE_CHECKING:
    from stack.world import World

SERVER_HOST = "winsrv"


def bridge_lab(seed: int = 1) -> "World":
    from stack.world import default_world

    return default_world(seed)


register_topology("default", bridge_lab)
