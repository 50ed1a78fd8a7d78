"""With the processor model on, every WSK call through afd's dispatch table costs "wsk_dispatch"
(stack/kernel/costs.py) on the processor of the caller, once per call - not only its IRPs' costs."""

from __future__ import annotations

from stack import wsk
from stack.kernel import IoFreeIrp, current_kernel
from stack.kernel.costs import COST_TABLE, CostProfile
from stack.kernel.cpu import install

from wsk_harness import Call, WskLab

WSK_NS = 1000


def _only(op: str, ns: float) -> CostProfile:
    """A profile where nothing costs anything but `op`: what a call spends is its count of `op`."""
    return CostProfile(f"only {op}", "test", 0, overrides={**{name: 0.0 for name in COST_TABLE}, op: ns})


def test_each_wsk_call_charges_one_wsk_dispatch_on_the_calling_processor() -> None:
    lab = WskLab()
    model = install(lab.k, _only("wsk_dispatch", WSK_NS), 1)

    def go() -> tuple[int, int]:
        k = current_kernel()
        start = k.now_ns
        c = Call()
        lab.dispatch.WskSocket(lab.npi.Client, wsk.AF_INET6, wsk.SOCK_STREAM, wsk.IPPROTO_TCP,
                               wsk.WSK_FLAG_LISTEN_SOCKET, None, None, None, None, None, c.irp)
        after_socket = k.now_ns - start
        sock = c.information
        IoFreeIrp(c.irp)
        c = Call()
        sock.Dispatch.WskBind(sock, wsk.SOCKADDR_IN6(wsk.AF_INET6, 7777, 0, wsk.IN6ADDR_ANY, 0), 0, c.irp)
        IoFreeIrp(c.irp)
        return after_socket, k.now_ns - start

    after_socket, after_bind = lab.call(go)
    assert after_socket == WSK_NS  # WskSocket: one dispatch, nothing else costs in this profile
    assert after_bind == 2 * WSK_NS  # WskBind: one more
    assert model.processors[0].thread_ns == 2 * WSK_NS


def test_the_2003_profile_prices_a_wsk_call_at_the_tables_figure() -> None:
    lab = WskLab()
    install(lab.k, "2003", 1)

    def go() -> int:
        k = current_kernel()
        c = Call()
        lab.dispatch.WskSocket(lab.npi.Client, wsk.AF_INET6, wsk.SOCK_STREAM, wsk.IPPROTO_TCP,
                               wsk.WSK_FLAG_LISTEN_SOCKET, None, None, None, None, None, c.irp)
        start = k.now_ns
        sock = c.information
        IoFreeIrp(c.irp)
        sock.Dispatch.WskGetLocalAddress(sock, wsk.SOCKADDR_IN6(wsk.AF_INET6, 0, 0, wsk.IN6ADDR_ANY, 0), None)
        return k.now_ns - start

    # WskGetLocalAddress without an IRP: the dispatch, and no IRP work at all
    assert lab.call(go) == COST_TABLE["wsk_dispatch"][0]
