"""The Winsock Kernel provider (wskprov) and the wsk.h API its clients call.

Clients (echosrv, ksocket, khttpd) import from here and from stack.kernel only:

    from stack.wsk import (WskRegister, WskCaptureProviderNPI, WSK_CLIENT_NPI, WSK_REGISTRATION,
                           WSK_PROVIDER_NPI, WSK_BUF, SOCKADDR_IN6, Ref, ...)

Calling conventions: /work/briefs/wsk_conventions.md (names and argument order of wsk.h;
out-pointers are `Ref`; ports are host-order ints).  `WskCaptureProviderNPI` and
`WskDeregister` return a `WskStatus` — an int you may also `yield from` on a system
thread to wait as the C call blocks.
"""

from .constants import *  # noqa: F401,F403
from .dns_client import DnsResolver, configure_dns  # noqa: F401
from .events import WskCall, WskEvent, WskSocketState  # noqa: F401
from .irpops import WskIrpParameters, WskStatus  # noqa: F401
from .names import WskFreeAddressInfo, WskGetAddressInfo, WskGetNameInfo  # noqa: F401
from .provider import (DRIVER_IMAGE, WSKPROV_DEVICE_NAME, WskCaptureProviderNPI, WskControlClient,  # noqa: F401
                       WskDeregister, WskRegister, WskReleaseProviderNPI, WskSocket, WskSocketConnect)
from .socket import SOCKET_TAG, WskSocketObject  # noqa: F401
from .state import WskClient, WskProvider, WskSocketInfo, get_provider, wsk_sockets  # noqa: F401
from .structs import *  # noqa: F401,F403
from .structs import Ref, SOCKADDR_STORAGE, WskAddressError, fill_sockaddr, from_sockaddr, to_sockaddr  # noqa: F401
