"""echosrv: the WDK WSK echo server sample (wsksmple.c), port 40007, dual stack."""

from .wsksmple import DRIVER_IMAGE, ECHOSRV_CONTROL_GUID, EchosrvGlobals  # noqa: F401
