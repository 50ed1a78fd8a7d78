"""TCP glue: demultiplexing, listeners, timers and zero-copy I/O around the sans-IO core.

The core (`stack.tcpip.tcp`) decides *what* to send and when; this module turns
its segments into wire headers in a header slot, describes the payload with
partial MDLs over the client's own pages (IoBuildPartialMdl, from a pool), and
hands the packet to the IP layer.  On receive it parses the TCP header, finds
the connection by 4-tuple (or the listener), feeds the core, and delivers the
data to the client: zero copy through the receive handler, or one counted copy
into a posted receive MDL.  The NBL under received data is held while the core
still references it, and copied out only when the adapter is short of buffers.
"""

from __future__ import annotations

from .tcpl.common import ReceiveRequest, SendRequest, Tcb  # noqa: F401 - the records callers name
from .tcpl.endpoint import TcbLayer
from .tcpl.listen import ListenLayer
from .tcpl.receive import ReceiveLayer
from .tcpl.send import SendLayer
from .tcpl.timewait import TimeWaitLayer


class TcpLayer(TcbLayer, ListenLayer, SendLayer, ReceiveLayer, TimeWaitLayer):
    """tcpip's TCP: one per stack.  Its parts live in stack/tcpip/tcpl/ along their seams -
    endpoint.py (sockets, connect, close, the TCB's life), listen.py, send.py, receive.py and
    timewait.py (the time-wait TCB table)."""
