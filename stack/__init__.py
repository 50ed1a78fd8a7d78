"""The emulated Windows kernel network stack. Knows nothing of the debugger."""
