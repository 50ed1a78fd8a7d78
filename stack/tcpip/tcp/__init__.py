"""Sans-IO TCP core: segments and time in, segments, deadlines and events out."""

from .config import MS, MSL_NS, SECOND, TcpConfig
from .connection import DEFAULT_MSS, TcpConnection
from .errors import TcpConfigError, TcpError, TcpSegmentError, TcpStateError
from .events import (
    Closed,
    DataAcked,
    DataReceived,
    Established,
    LossProbe,
    OutOfOrderDropped,
    PeerClosed,
    Reset,
    Retransmitted,
    StateChanged,
    TcpEvent,
)
from .listener import TcpListener
from .segment import ACK, FIN, PSH, RST, SYN, URG, TcpSegment, rst_for_unexpected
from .states import TcpState

__all__ = [
    "ACK", "FIN", "PSH", "RST", "SYN", "URG", "MS", "MSL_NS", "SECOND", "DEFAULT_MSS",
    "Closed", "DataAcked", "DataReceived", "Established", "LossProbe", "OutOfOrderDropped", "PeerClosed", "Reset",
    "Retransmitted",
    "StateChanged", "TcpConfig", "TcpConfigError", "TcpConnection", "TcpError", "TcpEvent",
    "TcpListener", "TcpSegment", "TcpSegmentError", "TcpState", "TcpStateError", "rst_for_unexpected",
]
