"""afd.sys: the Ancillary Function Driver for Winsock - one driver, \\Driver\\AFD on \\Device\\Afd.

It is the kernel half of user-mode Winsock (device.py: IRPs from NtDeviceIoControlFile) and
the Winsock Kernel provider: dispatch tables a WSK client calls directly (provider.py, and one
file per socket table: basic.py, listen.py, connection.py, datagram.py; socket.py holds the
socket object), each taking one stack location of the client's IRP (irp.py).  netio.sys's NMR
(stack.wsk.netio) attaches registered WSK clients to it.  Load it with
`IoLoadDriver(kernel, stack.afd.DRIVER_IMAGE)`; the world does that on every host.
handover.py is the lab's own addition: WskProLabHandOverConnection moves a WSK connection into a
user-mode listener's accept queue (khttpd's accept-queue hand-over; no such interface in Windows).
"""

from .driver import AFD_DEVICE_NAME, DRIVER_IMAGE, load_afd  # noqa: F401
from .handover import WskProLabHandOverConnection  # noqa: F401
from .provider import WskProAPIControlClient, WskProAPISocket, WskProAPISocketConnect  # noqa: F401
from .socket import SOCKET_TAG, WskSocketObject  # noqa: F401
from .state import WskProvider, WskSocketInfo, get_provider, wsk_sockets  # noqa: F401
