"""WinDbg-shaped text for the debugger's displays (shared by REPL, TUI and batch runs).

``fmt`` holds number and ``dt`` field formatting; ``dump`` the ``d*`` memory displays.
"""
