"""The wsk.h API: what a Winsock Kernel client (echosrv, ksocket, khttpd) sees.

Clients import from here and from stack.kernel only:

    from stack.wsk import (WskRegister, WskCaptureProviderNPI, WSK_CLIENT_NPI, WSK_REGISTRATION,
                           WSK_PROVIDER_NPI, WSK_BUF, SOCKADDR_IN6, Ref, ...)

`WskRegister` and friends are netio.sys's (netio.py); the provider behind the
WSK_PROVIDER_NPI a client captures is afd.sys (stack.afd), whose names this package also
re-exports for the tests and the debugger (`DRIVER_IMAGE`, `wsk_sockets`, `get_provider` ...).

Calling conventions: names and argument order of wsk.h; out-pointers are `Ref`; ports are
host-order ints.  `WskCaptureProviderNPI` and `WskDeregister` return a `WskStatus` - an int
you may also `yield from` on a system thread to wait as the C call blocks.
"""

from typing import Any

from .constants import *  # noqa: F401,F403
from .dns_client import DnsResolver, configure_dns  # noqa: F401
from .events import WskCall, WskEvent, WskSocketState  # noqa: F401
from .netio import (WskCaptureProviderNPI, WskClient, WskDeregister, WskRegister, WskReleaseProviderNPI,  # noqa: F401
                    WskStatus)
from .structs import *  # noqa: F401,F403
from .structs import Ref, SOCKADDR_STORAGE, WskAddressError, fill_sockaddr, from_sockaddr, to_sockaddr  # noqa: F401

# afd.sys's names, imported on first use (stack.afd imports this package).
_FROM_AFD = ("DRIVER_IMAGE", "AFD_DEVICE_NAME", "SOCKET_TAG", "WskSocketObject", "WskProvider", "WskSocketInfo",
             "get_provider", "wsk_sockets")


def __getattr__(name: str) -> Any:
    if name not in _FROM_AFD:
        raise AttributeError(f"module 'stack.wsk' has no attribute {name!r}")
    import stack.afd
    return getattr(stack.afd, name)
