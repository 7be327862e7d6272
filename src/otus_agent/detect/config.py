"""Thresholds and windows of the detectors: the task's own ``detect`` section (``otus_spec.DetectOptions``),
the one definition of the fields and their defaults; the detectors take it as it is."""
from __future__ import annotations

from otus_spec import (
    DetectOptions as DetectConfig,
    IcmpFloodOptions as IcmpFlood,
    InviteFloodOptions as InviteFlood,
    PortScanOptions as PortScan,
    RegisterBruteForceOptions as RegisterBruteForce,
    SipScanOptions as SipScan,
    SynFloodOptions as SynFlood,
    TollFraudOptions as TollFraud,
)

__all__ = ["DetectConfig", "IcmpFlood", "InviteFlood", "PortScan", "RegisterBruteForce", "SipScan", "SynFlood",
           "TollFraud"]
