"""Routine names (`module!Name`), the current kernel, and the logical call stack.

Driver routines are ordinary Python functions decorated with `@kroutine("echosrv")`.
The decorator records the routine in a catalog (in source order, so addresses are
deterministic), and on each call pushes a frame on the current execution context's
stack and publishes `RoutineEntered`/`RoutineReturned` — the hand-offs that `bp`,
`t`, `p`, `gu` and `k` are built on.  Generator routines (code that waits) keep
their frame across yields because each emulated thread owns its own frame list.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, TypeVar

if TYPE_CHECKING:
    from .kernel import Kernel

F = TypeVar("F", bound=Callable[..., Any])

# module name -> routine names in definition order
CATALOG: dict[str, list[str]] = {}
# `module!Name` -> the undecorated Python function (the debugger's source mode reads it)
FUNCTIONS: dict[str, Callable[..., Any]] = {}

_current: list["Kernel"] = []


def current_kernel() -> "Kernel":
    """The kernel whose code is running now (set by the scheduler for each event)."""
    if not _current:
        raise RuntimeError("no emulated kernel is running on this thread")
    return _current[-1]


def push_kernel(k: "Kernel") -> None:
    _current.append(k)


def pop_kernel() -> None:
    _current.pop()


def has_current_kernel() -> bool:
    return bool(_current)


class Frame(NamedTuple):
    """One entry of a logical call stack.  A tuple, so the push on every routine call stays cheap."""

    symbol: str
    args: tuple = ()


_new_frame = tuple.__new__  # Frame(symbol, args) without the Python-level __new__


def catalog_add(module: str, name: str) -> str:
    names = CATALOG.setdefault(module, [])
    if name not in names:
        names.append(name)
    return f"{module}!{name}"


def note_exception_frames(exc: BaseException, k: "Kernel") -> None:
    """Remember the logical stack (innermost first) where a Python exception started.

    The frames are popped while the exception unwinds, so the 0x1E bug check
    reads them from here.  A bug check itself (a BaseException) is not caught
    and leaves the frames in place for the debugger.
    """
    if getattr(exc, "kernel_frames", None) is None:
        try:
            exc.kernel_frames = [f.symbol for f in reversed(k.frames)]  # type: ignore[attr-defined]
        except AttributeError:  # an exception type with __slots__ cannot carry them
            pass


def kroutine(module: str, name: str | None = None) -> Callable[[F], F]:
    """Make a function a named kernel routine of `module` (see module docstring)."""

    current = _current
    new_frame = _new_frame

    def decorate(fn: F) -> F:
        symbol = catalog_add(module, name or fn.__name__)
        FUNCTIONS.setdefault(symbol, fn)
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def gen_wrapper(*args: Any, **kwargs: Any):
                # As `wrapper` below; the bus is asked again on return, because somebody may
                # have started listening while the routine waited.
                k = current[-1]
                if k.bus.subscribers:
                    k.enter(symbol, args)
                else:
                    k.frames.append(new_frame(Frame, (symbol, args)))
                try:
                    result = yield from fn(*args, **kwargs)
                except GeneratorExit:
                    k.leave_silently(symbol)
                    raise
                except Exception as exc:
                    note_exception_frames(exc, k)
                    k.leave_silently(symbol)
                    raise
                if k.bus.subscribers:
                    k.leave(symbol, result)
                else:
                    frames = k.frames
                    if frames and frames[-1][0] == symbol:
                        del frames[-1]
                    else:
                        k.leave_silently(symbol)
                return result

            gen_wrapper.symbol = symbol  # type: ignore[attr-defined]
            return gen_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any):
            # The per-packet path: with nobody on the bus the frame push and pop are
            # inlined (Kernel.enter / Kernel.leave are the observed path).
            k = current[-1]
            subscribers = k.bus.subscribers
            if subscribers:
                k.enter(symbol, args)
            else:
                k.frames.append(new_frame(Frame, (symbol, args)))
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                note_exception_frames(exc, k)
                k.leave_silently(symbol)
                raise
            if subscribers:
                k.leave(symbol, result)
            else:
                frames = k.frames
                if frames and frames[-1][0] == symbol:
                    del frames[-1]  # frames.pop() without a method call: this runs for every routine
                else:
                    k.leave_silently(symbol)
            return result

        wrapper.symbol = symbol  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def symbol_of(fn: object) -> str:
    """The `module!Name` of a routine, or a readable fallback for undecorated callables."""
    sym = getattr(fn, "symbol", None)
    if sym:
        return sym
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    module = (getattr(fn, "__module__", "") or "").rsplit(".", 1)[-1]
    return f"{module}!{name}"
