"""Trace lines of WPP messages and bus events: records (record.py), the columnar store with
progressive filtering (store.py) and its filter language (filter.py).  No Textual here: the
TUI's trace view renders from it, and the REPL, sessions and tests can use it too."""
