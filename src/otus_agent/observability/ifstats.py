"""Interface counters from sysfs (``/sys/class/net/<if>/statistics``): rx/tx packets, bytes, errors and
drops per interface, with rates between two reads, as Prometheus counters and gauges."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

SYS_NET = "/sys/class/net"
# sysfs file -> (metric name without _total, help)
COUNTERS: dict[str, tuple[str, str]] = {
    "rx_packets": ("otus_interface_receive_packets", "Packets the interface received (kernel counter)"),
    "tx_packets": ("otus_interface_transmit_packets", "Packets the interface sent (kernel counter)"),
    "rx_bytes": ("otus_interface_receive_bytes", "Bytes the interface received (kernel counter)"),
    "tx_bytes": ("otus_interface_transmit_bytes", "Bytes the interface sent (kernel counter)"),
    "rx_errors": ("otus_interface_receive_errors", "Receive errors of the interface (kernel counter)"),
    "tx_errors": ("otus_interface_transmit_errors", "Transmit errors of the interface (kernel counter)"),
    "rx_dropped": ("otus_interface_receive_drops", "Received packets the kernel dropped (kernel counter)"),
    "tx_dropped": ("otus_interface_transmit_drops", "Packets the kernel dropped on transmit (kernel counter)"),
}


class InterfaceError(Exception):
    """An interface that cannot be read; the message is meant for users."""


def read_counters(interface: str, root: str = SYS_NET) -> dict[str, int]:
    """The kernel's counters of one interface; a missing counter file reads as absent."""
    if not interface or "/" in interface or interface in (".", ".."):
        raise InterfaceError(f"not an interface name: {interface!r}")
    base = os.path.join(root, interface, "statistics")
    if not os.path.isdir(base):
        raise InterfaceError(f"{interface}: no such interface (no {base})")
    out: dict[str, int] = {}
    for name in COUNTERS:
        try:
            with open(os.path.join(base, name)) as f:
                out[name] = int(f.read().strip() or 0)
        except (OSError, ValueError):
            continue
    return out


def all_interfaces(root: str = SYS_NET) -> list[str]:
    try:
        return sorted(n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n, "statistics")))
    except OSError:
        return []


@dataclass
class _Last:
    t: float
    values: dict[str, int]
    rates: dict[str, float] = field(default_factory=dict)


class InterfaceStats:
    """Reads the named interfaces (or all, ``interfaces=None``) and keeps per-second rates between reads.

    Tracks at most ``max_interfaces`` (sorted names; the rest are skipped and counted in ``skipped``).
    An interface that disappears is forgotten; a counter that goes backwards (reset) restarts its rate."""

    def __init__(self, interfaces: Iterable[str] | None = None, root: str = SYS_NET, max_interfaces: int = 256):
        self.names = list(interfaces) if interfaces is not None else None
        self.root = root
        self.max_interfaces = max_interfaces
        self._last: dict[str, _Last] = {}
        self.skipped = 0

    def poll(self, now: float | None = None) -> dict[str, dict]:
        """Read every interface; returns ``{if: {"counters": {...}, "rates": {...}}}``."""
        now = time.monotonic() if now is None else now
        names = self.names if self.names is not None else all_interfaces(self.root)
        self.skipped = max(0, len(names) - self.max_interfaces)
        out: dict[str, dict] = {}
        for name in names[:self.max_interfaces]:
            try:
                values = read_counters(name, self.root)
            except InterfaceError:
                self._last.pop(name, None)
                continue
            prev = self._last.get(name)
            rates: dict[str, float] = {}
            if prev is not None and now > prev.t:
                for k, v in values.items():
                    p = prev.values.get(k)
                    if p is not None and v >= p:
                        rates[k] = (v - p) / (now - prev.t)
            self._last[name] = _Last(now, values, rates)
            out[name] = {"counters": values, "rates": rates}
        for gone in set(self._last) - set(out):
            del self._last[gone]
        return out

    def metrics(self, now: float | None = None) -> list[Metric]:
        """One poll as Prometheus families: ``*_total`` counters and ``*_per_second`` rate gauges."""
        snap = self.poll(now)
        fams: list[Metric] = []
        for key, (name, help_) in COUNTERS.items():
            c = CounterMetricFamily(name, help_, labels=["interface"])
            g = GaugeMetricFamily(name + "_per_second", help_.replace("(kernel counter)", "per second, between the "
                                                                      "last two reads"), labels=["interface"])
            for ifname, s in snap.items():
                if key in s["counters"]:
                    c.add_metric([ifname], s["counters"][key])
                if key in s["rates"]:
                    g.add_metric([ifname], s["rates"][key])
            fams += [c, g]
        return fams


class InterfaceCollector:
    """A prometheus_client collector: ``registry.register(InterfaceCollector(InterfaceStats([...])))``."""

    def __init__(self, stats: InterfaceStats):
        self.stats = stats

    def collect(self) -> Iterable[Metric]:
        return self.stats.metrics()
