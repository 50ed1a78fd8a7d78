"""TDI: tdx.sys over tcpip (the transport interface WSK replaced), its IRPs and structures,
and the thesis's Berkeley sockets library over it (stack.tdi.sockets)."""

from .build import *  # noqa: F401,F403
from .constants import *  # noqa: F401,F403
from .structs import *  # noqa: F401,F403
from .tdx import TDX_IMAGE, load_tdx, tdx_globals  # noqa: F401
from .tdx_upcalls import TdiReturnChainedReceives  # noqa: F401
from .zw import (FILE_OBJECT, IO_STATUS_BLOCK, OBJECT_ATTRIBUTES, InitializeObjectAttributes,  # noqa: F401
                 IoGetRelatedDeviceObject, ObDereferenceObject, ObReferenceObjectByHandle, Ref, ZwClose,
                 ZwCreateFile)
