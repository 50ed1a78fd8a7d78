"""ksocket: wbenny/KSOCKET — a Berkeley socket layer over WSK, and its demo driver."""

from .main import DRIVER_IMAGE, HTTP_REQUEST, SERVER_PORT, SERVER_REPLY  # noqa: F401
