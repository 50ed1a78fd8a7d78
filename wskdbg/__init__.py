"""wskdbg: a WinDbg-style kernel debugger over an emulated Windows network stack."""

__version__ = "0.1.0"
