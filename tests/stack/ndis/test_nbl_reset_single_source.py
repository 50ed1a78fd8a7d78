"""The NBL allocation fast path inlines `_reset_nbl` and `_reset_nb` (one allocation per frame sent,
so the calls are saved on purpose).  These tests hold the two copies equal field by field: a field
one of them resets and the other forgets shows up here, not as a stale value in a recycled NBL."""

from __future__ import annotations

from typing import Any

import pytest

from stack.kernel.machine import Machine
from stack.ndis import (NET_BUFFER_LIST_POOL_PARAMETERS, NdisAllocateNetBufferAndNetBufferList,
                        NdisAllocateNetBufferList, NdisAllocateNetBufferListPool, NdisFreeNetBufferList)
from stack.ndis.nbl import NetBufferList

DATA_SIZE = 256
# What ties the object to its pool, its memory and its NB/MDL: the same object either way, never reset.
_IDENTITY = {"kernel", "address", "pool", "NdisPoolHandle", "own_nb", "own_mdl", "struct_size", "freed",
             "_retreats"}


class _Stale:
    """A value no reset writes: whatever still holds one afterwards was not reset."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<stale {self.name}>"


_STALE: dict[str, _Stale] = {}


def _slots(obj: Any) -> list[str]:
    return [s for cls in type(obj).__mro__ for s in getattr(cls, "__slots__", ())]


def _dirty(obj: Any, prefix: str) -> None:
    """Every field the resets might own gets a stale value; lists are dirtied in place (callers may hold them)."""
    for name in _slots(obj):
        if name in _IDENTITY:
            continue
        value = getattr(obj, name)
        if isinstance(value, list):
            value[:] = [_STALE.setdefault(f"{prefix}.{name}[{i}]", _Stale(f"{prefix}.{name}[{i}]"))
                        for i in range(len(value))]
        else:
            setattr(obj, name, _STALE.setdefault(f"{prefix}.{name}", _Stale(f"{prefix}.{name}")))


def _fields(obj: Any) -> dict[str, Any]:
    out = {}
    for name in _slots(obj):
        if name in _IDENTITY:
            continue
        value = getattr(obj, name)
        out[name] = list(value) if isinstance(value, list) else value
    return out


@pytest.fixture
def nbl_pool():
    k = Machine(seed=9, memory_mb=8).kernel
    return NdisAllocateNetBufferListPool(k, NET_BUFFER_LIST_POOL_PARAMETERS(fAllocateNetBuffer=True,
                                                                             DataSize=DATA_SIZE))


def _recycled(pool: Any, allocate: Any) -> tuple[dict[str, Any], dict[str, Any], NetBufferList]:
    """Free a pool's NBL, dirty it and its NB, allocate it again with `allocate`: the fields then."""
    nbl = NdisAllocateNetBufferList(pool)
    assert nbl is not None
    NdisFreeNetBufferList(nbl)
    _dirty(nbl, "nbl")
    assert nbl.own_nb is not None
    _dirty(nbl.own_nb, "nb")
    again = allocate(pool)
    assert again is nbl  # the free list hands the same object back
    fields = _fields(nbl), _fields(nbl.own_nb), nbl
    NdisFreeNetBufferList(nbl)  # so the next call recycles this same NBL
    return fields


def test_the_inlined_allocation_resets_every_nbl_and_nb_field_as_reset_nbl_and_reset_nb_do(nbl_pool):
    # NdisAllocateNetBufferList calls _reset_nbl/_reset_nb; NdisAllocateNetBufferAndNetBufferList inlines them.
    # Over the pool's own data buffer with all of it in front, the two must leave identical NBLs.
    ref_nbl, ref_nb, _ = _recycled(nbl_pool, NdisAllocateNetBufferList)
    fast_nbl, fast_nb, _ = _recycled(
        nbl_pool, lambda p: NdisAllocateNetBufferAndNetBufferList(p, 0, 0, None, DATA_SIZE, 0))
    assert fast_nbl == ref_nbl
    assert fast_nb == ref_nb


def test_no_stale_value_survives_either_allocation(nbl_pool):
    # Every field the resets own is reset (or rebuilt by set_data): none keeps what the last user left.
    for allocate in (NdisAllocateNetBufferList,
                     lambda p: NdisAllocateNetBufferAndNetBufferList(p, 0, 0, None, DATA_SIZE, 0)):
        nbl_fields, nb_fields, _ = _recycled(nbl_pool, allocate)
        stale = [(k, v) for k, v in {**nbl_fields, **nb_fields}.items()
                 if isinstance(v, _Stale) or (isinstance(v, list) and any(isinstance(x, _Stale) for x in v))]
        assert stale == [], stale


def test_the_test_sees_a_field_only_one_copy_resets(nbl_pool, monkeypatch):
    # The check itself: a reset that forgets a field (here Scratch) is caught.
    import stack.ndis.nbl as nbl_module
    real = nbl_module._reset_nbl

    def forgetful(nbl: NetBufferList) -> None:
        scratch = nbl.Scratch
        real(nbl)
        nbl.Scratch = scratch

    monkeypatch.setattr(nbl_module, "_reset_nbl", forgetful)
    ref_nbl, _, _ = _recycled(nbl_pool, NdisAllocateNetBufferList)
    fast_nbl, _, _ = _recycled(nbl_pool, lambda p: NdisAllocateNetBufferAndNetBufferList(p, 0, 0, None, DATA_SIZE, 0))
    assert fast_nbl != ref_nbl and isinstance(ref_nbl["Scratch"], _Stale)

