"""Interrupt moderation rate: Intel's "Interrupt Moderation Rate" (ITR) settings and the Adaptive algorithm.

The NIC (nic.py) spaces its interrupts at least ``interrupt_throttle_ns``
apart (the ITR: the shortest interval between two interrupts) beside its
moderation delay after a packet.  What sets that interval is the adapter's
"Interrupt Moderation Rate" advanced property:

- a fixed setting - Off (no throttle), Minimal, Low, Medium, High, Extreme -
  or a rate in interrupts per second (`!nic itr 0n10000`: the debugger reads
  numbers in its radix, 16 unless `n` changed it);
- Adaptive, Intel's default: at every interrupt the driver classifies the
  traffic since the previous one (packets, bytes, their average size) into
  one of three latency classes and throttles to that class's rate.  A few
  small packets mean someone waits for an answer (``lowest_latency``, 70,000
  interrupts/s); a stream of full frames is a bulk transfer (``bulk_latency``,
  4,000/s on a 1 Gb/s NIC, 12,000/s - 83.3 us apart - on a 10 Gb/s one, so one DPC
  drains a batch and RSC builds large units); in between ``low_latency`` (20,000/s).

Windows itself only knows on or off: the standardized keyword
``*InterruptModeration`` (0 Disabled, 1 Enabled) and OID_GEN_INTERRUPT_MODERATION
with NDIS_INTERRUPT_MODERATION_PARAMETERS (NdisInterruptModerationEnabled /
Disabled); "the hardware vendor specifies the ... interrupt moderation
algorithm" (MS Learn, "Interrupt Moderation").  The keyword reads Disabled only when
neither a rate nor the NIC's moderation delay holds interrupts back (`!udpload /nomod`);
rate Off with the usual 10 us delay is still Enabled.

Sources (learned from, not copied):
- Intel Ethernet Adapters and Devices User Guide, "Interrupt Moderation Rate":
  the settings Adaptive (default), Extreme, High, Medium, Low, Minimal, Off.
- The manual of an Intel-controller adapter (StarTech ST2000SPEXI, "Interrupt
  Moderation"): the settings' ITR values Minimal 200, Low 400, Medium 950, High
  2000, Extreme 3600 (Adaptive -1, Off 0).  Read here, as in the 8254x ITR
  register, as the interval between interrupts in units of 256 ns: a higher value
  is fewer interrupts, as Intel's guide says of higher settings.
- Linux ixgbe (Intel's 10 GbE driver), old ``ixgbe_set_itr``: the same three classes, mapped
  lowest/low/bulk to IXGBE_100K_ITR (40), IXGBE_20K_ITR (200) and IXGBE_12K_ITR (336), "microsecond
  values ... shifted by 2": bulk_latency is 336 >> 2 = 84 us apart, about 11,900 interrupts/s.
  That 12K floor held from commit 8ac34f10a5ea4 ("ixgbe: Limit lowest interrupt rate for adaptive
  interrupt moderation to 12K", A. Duyck, 2015) until b4ded8327fea ("ixgbe: Update adaptive ITR
  algorithm", 2018), which replaced the classes with a per-interrupt delay between
  IXGBE_ITR_ADAPTIVE_MIN_USECS (10) and IXGBE_ITR_ADAPTIVE_MAX_USECS (126).  (The 2015 reason, as
  its ixgbevf copy words it, is about transmit: netperf "will starve for memory in the time from
  one Tx interrupt to the next".)  A receive-side reason is in a later patch posted to intel-wired-lan
  ("ixgbe: lower IXGBE_ITR_ADAPTIVE_MAX_USECS to prevent RX starvation", iwl-next v2 1/8; posted, not
  known to be merged): at 126 us "under sustained full-line-rate bulk RX traffic ... descriptor ring
  starvation can occur before the next interrupt fires", so it lowers the maximum to 84 us, ~11,905/s.
- So the lab's Adaptive is a hybrid: igb's classifier and its 70K / 20K rates, with ixgbe's
  2015-2018 bulk rate, taken by the macro's name as 12,000/s (83.3 us apart) rather than the
  register's 84 us.  Choosing the bulk rate by link speed (a NIC at 10 Gb/s or faster takes
  12,000/s, a slower one igb's 4,000/s) is the lab's model, not a driver's rule: the lab's links
  are 10 Gb/s, where igb's 250 us would let up to 208 line-rate frames arrive between interrupts
  and, with buffers out at tcpip, overran winsrv's 512-buffer ring under HyStart++'s L = 8.
- Linux igb ``igb_update_itr`` / e1000e ``e1000_update_itr`` (the three classes,
  their rates and thresholds; each interrupt applies at most one rule of the current
  class's row, and each row has its own thresholds - the hysteresis) and
  ``e1000_set_itr`` (a falling rate applies at once, a rising one in steps of
  a quarter: the algorithm leans towards bulk); the driver classifies receive
  and transmit apart and takes the more moderated class.
"""

from __future__ import annotations

from typing import Any, NamedTuple

LOWEST_LATENCY = "lowest_latency"
LOW_LATENCY = "low_latency"
BULK_LATENCY = "bulk_latency"

# interrupts per second each class throttles to (igb/e1000e: 70K, 20K and 4K ITR)
CLASS_RATES: dict[str, int] = {LOWEST_LATENCY: 70_000, LOW_LATENCY: 20_000, BULK_LATENCY: 4_000}
# ixgbe_set_itr's bulk_latency (IXGBE_12K_ITR, 2015-2018) for NICs at 10 Gb/s and faster: the lab's model (docstring)
BULK_RATE_10G = 12_000
TEN_GBPS = 10_000_000_000


def class_rates(link_speed_bps: int) -> dict[str, int]:
    """The classes' rates for a NIC at this link speed: igb's below 10 Gb/s, ixgbe's bulk rate at 10 Gb/s."""
    if link_speed_bps >= TEN_GBPS:
        return {**CLASS_RATES, BULK_LATENCY: BULK_RATE_10G}
    return CLASS_RATES


# the more moderated class wins when receive and transmit disagree
_MODERATION_ORDER = {LOWEST_LATENCY: 0, LOW_LATENCY: 1, BULK_LATENCY: 2}

_NONE = 1 << 62


class Rule(NamedTuple):
    """Move to `to` when the traffic since the last interrupt lies strictly inside every bound."""

    to: str
    bytes_over: int = -1
    bytes_under: int = _NONE
    packets_over: int = -1
    packets_under: int = _NONE
    avg_over: int = -1  # average bytes per packet
    avg_under: int = _NONE

    def matches(self, packets: int, nbytes: int, avg: int) -> bool:
        return (self.bytes_over < nbytes < self.bytes_under and self.packets_over < packets < self.packets_under
                and self.avg_over < avg < self.avg_under)


# From each class, the first rule that matches decides; none matching keeps the class.  Each row
# has its own thresholds, so it takes more to leave a class than to stay in it (hysteresis).
TRANSITIONS: dict[str, tuple[Rule, ...]] = {
    LOWEST_LATENCY: (
        Rule(BULK_LATENCY, avg_over=8000),  # large sends / jumbo frames
        Rule(LOW_LATENCY, packets_under=5, bytes_over=512),
        # igb needs no more: 10 KB cannot arrive in its 14 us at 1 Gb/s.  At the lab's 10 Gb/s a
        # burst of full frames can, and it is a step towards bulk, not the lowest latency.
        Rule(LOW_LATENCY, bytes_over=10_000, avg_over=1200),
    ),
    LOW_LATENCY: (
        Rule(BULK_LATENCY, bytes_over=10_000, packets_under=10),
        Rule(BULK_LATENCY, bytes_over=10_000, avg_over=1200),
        Rule(LOWEST_LATENCY, bytes_over=10_000, packets_over=35),  # many small packets
        Rule(BULK_LATENCY, bytes_under=10_001, avg_over=2000),
        Rule(LOWEST_LATENCY, packets_under=3, bytes_under=512),
    ),
    BULK_LATENCY: (
        # igb asks only for > 35 packets: on its 1 Gb/s wire 35 full frames cannot arrive in
        # 250 us, so the rule catches small packets at line rate.  The lab's links run at 10 Gb/s,
        # so the rule says "small" outright, or a bulk stream would flap between two classes.
        Rule(LOW_LATENCY, bytes_over=25_000, packets_over=35, avg_under=1201),
        Rule(LOW_LATENCY, bytes_under=1500),  # traffic has died down
    ),
}


def next_class(current: str, packets: int, nbytes: int) -> str:
    """The class after an interval with `packets` packets of `nbytes` bytes (no packets: unchanged)."""
    if packets <= 0:
        return current
    avg = nbytes // packets
    for rule in TRANSITIONS[current]:
        if rule.matches(packets, nbytes, avg):
            return rule.to
    return current


def next_rate(current_rate: int, target_rate: int) -> int:
    """e1000_set_itr's smoothing: fewer interrupts at once, more only a quarter of the target at a time."""
    if target_rate > current_rate:
        return min(current_rate + (target_rate >> 2), target_rate)
    return target_rate


class AdaptiveItr:
    """The Adaptive setting's state on one NIC: a class for receive, one for transmit, the rate now."""

    __slots__ = ("rx_class", "tx_class", "rate", "changes", "_seen", "rates", "link_speed_bps")

    def __init__(self, link_speed_bps: int = 1_000_000_000) -> None:
        self.link_speed_bps = link_speed_bps
        self.rates = class_rates(link_speed_bps)
        self.rx_class = LOWEST_LATENCY  # a quiet link
        self.tx_class = LOWEST_LATENCY
        self.rate = self.rates[LOWEST_LATENCY]
        self.changes = 0  # how often the rate moved
        self._seen = (0, 0, 0, 0)  # _seen(counters) at the last interrupt

    @property
    def latency_class(self) -> str:
        rx, tx = self.rx_class, self.tx_class
        return rx if _MODERATION_ORDER[rx] >= _MODERATION_ORDER[tx] else tx

    def interval_ns(self) -> int:
        return 1_000_000_000 // self.rate

    def update(self, counters: Any) -> int:
        """At an interrupt: classify the traffic since the last one; the interval until the next may fire.

        Packets are wire frames, both ways, as igb and e1000e count them (a TSO skb as its gso_segs):
        a 2 KB reply, one large send or one RSC unit of two segments, is two packets of a kilobyte
        - request/response traffic - not one bulk-sized packet."""
        fi, bi, fo, bo = _seen(counters)
        sfi, sbi, sfo, sbo = self._seen
        self._seen = (fi, bi, fo, bo)
        self.rx_class = next_class(self.rx_class, fi - sfi, bi - sbi)
        self.tx_class = next_class(self.tx_class, fo - sfo, bo - sbo)
        rate = next_rate(self.rate, self.rates[self.latency_class])
        if rate != self.rate:
            self.rate = rate
            self.changes += 1
        return 1_000_000_000 // rate

    def set_link_speed(self, link_speed_bps: int) -> None:
        """The link speed changed: the classes' rates follow it; the current class takes its new rate
        at once (the next interrupt would move to it anyway)."""
        self.link_speed_bps = link_speed_bps
        self.rates = class_rates(link_speed_bps)
        self.rate = self.rates[self.latency_class]

    def restart(self, counters: Any) -> None:
        """Adaptive switched on (again): start from a quiet link, counting from now."""
        self.__init__(self.link_speed_bps)
        self._seen = _seen(counters)


def _seen(counters: Any) -> tuple[int, int, int, int]:
    """Frames and bytes received, frames and bytes sent so far (NicCounters)."""
    return counters.frames_in, counters.bytes_in, counters.frames_out, counters.bytes_out


# -- the settings ------------------------------------------------------------------------------------
ADAPTIVE = "Adaptive"
OFF = "Off"
ITR_UNIT_NS = 256  # the ITR register's unit
# display name -> registry ITR value (interval in 256 ns units)
FIXED_SETTINGS: dict[str, int] = {"Minimal": 200, "Low": 400, "Medium": 950, "High": 2000, "Extreme": 3600}
RATE_RANGE = (100, 100_000)  # interrupts per second a numeric setting may ask for
DEFAULT_SETTING = ADAPTIVE  # what a new lab NIC ships with, as Intel's adapters do


def setting_name(text: str) -> str | None:
    """The setting a word names (any case), or None."""
    for name in (ADAPTIVE, OFF, *FIXED_SETTINGS):
        if text.lower() == name.lower():
            return name
    return None


def fixed_interval_ns(setting: str | int) -> int:
    """The throttle interval of a fixed setting (a name other than Adaptive, or interrupts per second)."""
    if isinstance(setting, int):
        if not RATE_RANGE[0] <= setting <= RATE_RANGE[1]:
            raise ValueError(f"the rate must be between {RATE_RANGE[0]} and {RATE_RANGE[1]} interrupts per second")
        return 1_000_000_000 // setting
    if setting == OFF:
        return 0
    if setting in FIXED_SETTINGS:
        return FIXED_SETTINGS[setting] * ITR_UNIT_NS
    raise ValueError(f"unknown interrupt moderation rate {setting!r}")


__all__ = ["BULK_RATE_10G", "class_rates", "ADAPTIVE", "OFF", "FIXED_SETTINGS", "DEFAULT_SETTING", "CLASS_RATES", "TRANSITIONS", "Rule",
           "AdaptiveItr", "next_class", "next_rate", "setting_name", "fixed_interval_ns",
           "LOWEST_LATENCY", "LOW_LATENCY", "BULK_LATENCY", "RATE_RANGE"]
