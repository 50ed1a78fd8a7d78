"""Physical runs of an MDL chain and MDLs over physical runs: the transport's receive indications.

tcpip names where each received run lies (mdl_chain_physical_addresses over the NET_BUFFER's
MDLs); afd and tdx describe a run with an MDL over its page frames (mdl_over_physical_run).
"""

from __future__ import annotations

from kernel_harness import new_machine, run

from stack.kernel import PAGE_SIZE, NonPagedPoolNx, ExAllocatePoolWithTag
from stack.kernel.memory import PAGE_SHIFT
from stack.kernel.mdl import (MmInitializeMdlForPages, mdl_chain_bytes, mdl_chain_physical_addresses,
                              mdl_chain_views, mdl_over_physical_run)


def _physical(k, address: int, length: int) -> bytes:
    start = address - (k.phys.base_pfn << PAGE_SHIFT)
    return bytes(k.phys.view[start:start + length])


def test_each_view_of_a_chain_is_named_by_the_physical_address_of_its_bytes():
    m = new_machine()
    k = m.kernel

    def body():
        va = ExAllocatePoolWithTag(NonPagedPoolNx, 4 * PAGE_SIZE, "Nic ")
        pages = k.mem.pfns_for(va, 4 * PAGE_SIZE)
        # A head MDL over two separate page runs (two views), then an MDL over one page.
        head = MmInitializeMdlForPages(k, [pages[0], pages[2]], PAGE_SIZE - 300, 700)
        head.next = MmInitializeMdlForPages(k, [pages[3]], 100, 500)
        for i, view in enumerate(mdl_chain_views(head)):
            view[:] = bytes((i * 37 + j) & 0xFF for j in range(len(view)))
        results = []
        for offset in (0, 10, 299, 300, 650, 700, 1199):
            views = mdl_chain_views(head, offset)
            pas = mdl_chain_physical_addresses(head, offset, views)
            results.append([(_physical(k, pa, len(v)), bytes(v)) for pa, v in zip(pas, views)])
        return [len(mdl_chain_views(head))], results

    counts, results = run(m, body)
    assert counts == [3]
    for runs in results:
        assert runs and all(memory == view for memory, view in runs)


def test_an_mdl_over_a_physical_run_describes_exactly_those_bytes():
    m = new_machine()
    k = m.kernel

    def body():
        va = ExAllocatePoolWithTag(NonPagedPoolNx, 3 * PAGE_SIZE, "Nic ")
        k.write(va, bytes(range(256)) * 48)
        first = k.mem.pfns_for(va, PAGE_SIZE)[0]
        address = (first << PAGE_SHIFT) + 4000  # straddles into the next (contiguous) frame
        mdl = mdl_over_physical_run(k, address, 1000)
        return mdl.pfns, mdl.byte_offset, mdl.byte_count, mdl_chain_bytes(mdl), _physical(k, address, 1000), first

    pfns, byte_offset, count, described, memory, first = run(m, body)
    assert pfns == [first, first + 1] and byte_offset == 4000 and count == 1000
    assert described == memory == (bytes(range(256)) * 48)[4000:5000]
