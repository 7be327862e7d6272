"""Thresholds and windows of the detectors: the task's own ``detect`` section (``otus_spec.DetectOptions``),
the one definition of the fields and their defaults; the detectors take it as it is."""
from __future__ import annotations

from otus_spec import (
    DetectOptions as DetectConfig,
)
from otus_spec import (
    IcmpFloodOptions as IcmpFlood,
)
from otus_spec import (
    InviteFloodOptions as InviteFlood,
)
from otus_spec import (
    PortScanOptions as PortScan,
)
from otus_spec import (
    RegisterBruteForceOptions as RegisterBruteForce,
)
from otus_spec import (
    SipScanOptions as SipScan,
)
from otus_spec import (
    SynFloodOptions as SynFlood,
)
from otus_spec import (
    TollFraudOptions as TollFraud,
)

__all__ = ["DetectConfig", "IcmpFlood", "InviteFlood", "PortScan", "RegisterBruteForce", "SipScan", "SynFlood",
           "TollFraud"]
