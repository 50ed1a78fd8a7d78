"""The emulated Windows kernel executive.

Drivers import the routines they call from here, with their Windows names:

    from stack.kernel import IoAllocateIrp, IoCallDriver, KeWaitForSingleObject, STATUS_PENDING
"""

from .bugcheck import BugCheckInfo, KernelBugCheck, bugcheck_name  # noqa: F401
from .events import Event, EventBus  # noqa: F401
from .ex import *  # noqa: F401,F403
from .ex import PoolObject  # noqa: F401
from .io import *  # noqa: F401,F403
from .irp import *  # noqa: F401,F403
from .irp import IoStackLocation, Irp, live_irps, major_name, minor_name  # noqa: F401
from .irql import *  # noqa: F401,F403
from .ke import *  # noqa: F401,F403
from .kernel import CopyCounter, Kernel, Module  # noqa: F401
from .mdl import *  # noqa: F401,F403
from .lookaside import *  # noqa: F401,F403
from .memory import (PAGE_SIZE, ADDRESS_AND_SIZE_TO_SPAN_PAGES, BYTE_OFFSET, PAGE_ALIGN,  # noqa: F401
                     MemoryAccessError)
from .ntstatus import *  # noqa: F401,F403
from .pool import NonPagedPool, NonPagedPoolNx, PagedPool  # noqa: F401
from .scheduler import NS_PER_MS, NS_PER_S, NS_PER_US, Scheduler  # noqa: F401
from .symbols import current_kernel, kroutine, symbol_of  # noqa: F401
from .wpp import (TRACE_LEVEL_ERROR, TRACE_LEVEL_INFORMATION, TRACE_LEVEL_VERBOSE,  # noqa: F401
                  TRACE_LEVEL_WARNING, WPP_CLEANUP, WPP_DEFINE_CONTROL_GUID, WPP_INIT_TRACING, DoTraceMessage,
                  TraceEvents, WppProvider)
