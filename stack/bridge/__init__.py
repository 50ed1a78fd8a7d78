"""Bridges from the emulated lab to the real world (issue 7).

* `forward`  - port forwarding: host TCP listeners whose connections enter the lab
  from a lab host ``gateway`` (no privileges needed).
* `tap`      - a TAP device in a network namespace of its own, cabled to the lab's
  switch, so the host kernel's TCP/IP talks to the emulated one (Linux, root).
* `realtime` - `BridgeHub`: the virtual clock follows the wall clock while attached;
  host I/O enters only there, as scheduler events, and is recorded.
* `record`   - the recording format; `session.BridgeSession.replay_session` replays it.
* `session`  - everything above in one object; `lab.bridge_lab` builds the default lab.

Public names:

    BridgeSession.live_session(world, forwards=[...], tap=TapOptions(...) | True, record=path)
    BridgeSession.replay_session(read_recording(path))
    session.start() / session.run(max_wall_s=, max_events=, until=) / session.close()
    ForwardSpec.parse("127.0.0.1:8080=winsrv:80")
    BridgeHub(scheduler, bus, tick_ns=, recorder=, replay=)
"""

from .events import BridgeInputApplied, ForwardConnectionState
from .forward import Forwarder, ForwardHost
from .realtime import BridgeError, BridgeHub, bus_recorder
from .record import BridgeInput, Recording, RecordingError, RecordingHeader, RecordingWriter, read_recording
from .session import BridgeSession, TapOptions, build_topology, register_topology
from .spec import ForwardSpec, ForwardSpecError
from .tap import TapNamespace, TapPort, TapSettings, TapUnavailable, tap_unavailable_reason

__all__ = [
    "BridgeInputApplied", "ForwardConnectionState", "Forwarder", "ForwardHost", "BridgeError", "BridgeHub",
    "bus_recorder", "BridgeInput", "Recording", "RecordingError", "RecordingHeader", "RecordingWriter",
    "read_recording", "BridgeSession", "TapOptions", "build_topology", "register_topology", "ForwardSpec",
    "ForwardSpecError", "TapNamespace", "TapPort", "TapSettings", "TapUnavailable", "tap_unavailable_reason",
]
