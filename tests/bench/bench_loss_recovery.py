"""rack's figure: a 4 MiB bulk echo under the lab's default (Adaptive moderation, LSO+RSC), virtual time and loss
recovery for slow_start_ack_limit (HyStart++ L) 1 and 8, RACK-TLP off and on.  A script, not a test.

    PYTHONPATH=. python3 tests/bench/bench_loss_recovery.py
"""
import hashlib
import time
from stack.nic import NicOffloads
from stack.tcpip.addr import SockAddr
from stack.tcpip.tcp import MS, TcpConfig
from stack.usermode.programs import echo_client, echo_server, pattern
from stack.usermode.socket import run_program
from stack.world import default_world

def run(limit, rack, mib=4):
    kw = dict(time_wait_ns=1000 * MS, slow_start_ack_limit=limit)
    try:
        cfg = TcpConfig(rack_tlp=rack, **kw)
    except TypeError:
        if not rack: return None
        cfg = TcpConfig(**kw)
    world = default_world(1, services=False, offloads=NicOffloads(lso=True, rsc=True), tcp_config=cfg)
    server = run_program(world.host("winsrv").kernel, echo_server, SockAddr.parse("0.0.0.0:7"))
    world.run_for(1_000_000)
    data = pattern(42, mib << 20)
    v0 = world.now_ns; c0 = time.process_time()
    client = run_program(world.host("client").kernel, echo_client, SockAddr.parse("10.0.0.1:7"), data)
    world.run_while(lambda: not (client.done and server.done), max_events=100_000_000)
    cpu = time.process_time() - c0
    client.raise_error()
    assert client.result.received_sha256 == hashlib.sha256(data).hexdigest()
    out = {}
    for h in ("client", "winsrv"):
        host = world.host(h); c = host.stack.counters
        d = {k: getattr(c, k) for k in ("tcp_segments_retransmitted",) if hasattr(c, k)}
        for k in ("tcp_rack_retransmissions", "tcp_tlp_probes", "tcp_tlp_recoveries", "tcp_retransmission_timeouts"):
            if hasattr(c, k): d[k] = getattr(c, k)
        d["nic_drops"] = dict(host.nic.counters.drops)
        out[h] = d
    return (world.now_ns - v0) / 1e6, cpu, out

for limit in (1, 8):
    for rack in (False, True):
        r = run(limit, rack)
        if r is None: continue
        print(f"L={limit} rack_tlp={rack}: virtual {r[0]:.1f} ms  cpu {r[1]:.2f} s  {r[2]}")
