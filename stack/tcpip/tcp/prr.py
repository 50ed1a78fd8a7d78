"""Proportional Rate Reduction (RFC 6937), sans I/O: how much a sender in SACK loss recovery
may send on each ACK, so that the data in flight falls smoothly from where it was to ssthresh
(instead of RFC 6675's "cwnd = ssthresh at once", which stops sending for half a round trip
and then bursts).  Windows 11 / Server 2022 turn it on (`netsh int tcp show global`:
"Proportional Rate Reduction : enabled"; Microsoft networking blog "Algorithmic improvements
boost TCP performance on the Internet", May 2021, lists PRR among Server 2022's loss recovery
improvements).

RFC 6937 section 3.1, in bytes:
  on entering recovery   RecoverFS = snd.nxt - snd.una; prr_delivered = prr_out = 0
  on every ACK           DeliveredData = change in snd.una + change in SACKed bytes
                         prr_delivered += DeliveredData
                         pipe > ssthresh:  sndcnt = CEIL(prr_delivered * ssthresh / RecoverFS) - prr_out
                         otherwise (PRR-SSRB, the RFC's recommended bound):
                             limit = MAX(prr_delivered - prr_out, DeliveredData) + MSS
                             sndcnt = MIN(ssthresh - pipe, limit)
                         cwnd = pipe + sndcnt
  on any (re)transmission prr_out += data sent
  at the end of recovery cwnd = ssthresh (RFC 6675, congestion.py)
This module follows RFC 6937 (Experimental, 2013), which is what Windows' blog names.  RFC 9937
(Proposed Standard, December 2025) obsoletes it and is NOT implemented here; its differences:
PRR-SSRB only on a "safe" ACK (one that advances SND.UNA and marks nothing newly lost), PRR-CRB
(limit = prr_delivered - prr_out) otherwise; RecoverFS excludes the bytes SACKed before recovery
(RFC 6675 pipe at the start).
One deliberate reading shared with Linux and ns-3: the ACK that starts recovery counts as delivered,
whichever rule (DupThresh or IsLost) started it (connection._prr_count_trigger).
pipe is RFC 6675's (scoreboard.py).  The connection sends while cwnd - pipe >= 1 SMSS, so a
fraction of a segment waits for the next ACK, as a packet-counting stack rounds down."""

from __future__ import annotations


class Prr:
    __slots__ = ("recover_fs", "prr_delivered", "prr_out", "sndcnt", "_una", "_sacked")

    def __init__(self) -> None:
        self.recover_fs = 0
        self.prr_delivered = 0
        self.prr_out = 0
        self.sndcnt = 0  # the last ACK's allowance, for the debugger
        self._una = 0
        self._sacked = 0

    def start(self, una: int, snd_nxt: int, sacked_bytes: int) -> None:
        """Recovery begins: RecoverFS is the flight size; the baselines for DeliveredData."""
        self.recover_fs = snd_nxt - una if snd_nxt > una else 1
        self.prr_delivered = self.prr_out = self.sndcnt = 0
        self._una = una
        self._sacked = sacked_bytes

    def rebase(self, una: int, sacked_bytes: int) -> None:
        """Measure the next ACK's DeliveredData from these (the state before the ACK that
        started recovery, so that ACK counts as delivered)."""
        self._una = una
        self._sacked = sacked_bytes

    def on_ack(self, una: int, sacked_bytes: int, pipe: int, ssthresh: int, mss: int) -> int:
        """One ACK during recovery (after the scoreboard took its SACK blocks): the new cwnd."""
        delivered = (una - self._una) + (sacked_bytes - self._sacked)
        self._una = una
        self._sacked = sacked_bytes
        if delivered < 0:
            delivered = 0  # SACKed data the cumulative ACK did not cover was reneged: nothing arrived
        self.prr_delivered += delivered
        if pipe > ssthresh:  # proportional rate reduction
            sndcnt = -(-self.prr_delivered * ssthresh // self.recover_fs) - self.prr_out
        else:  # slow start reduction bound (PRR-SSRB)
            limit = max(self.prr_delivered - self.prr_out, delivered) + mss
            sndcnt = min(ssthresh - pipe, limit)
        if sndcnt < 0:
            sndcnt = 0
        self.sndcnt = sndcnt
        return pipe + sndcnt

    def on_send(self, n: int) -> None:
        self.prr_out += n

    def snapshot(self) -> dict[str, int]:
        return {"recover_fs": self.recover_fs, "prr_delivered": self.prr_delivered, "prr_out": self.prr_out,
                "sndcnt": self.sndcnt}
