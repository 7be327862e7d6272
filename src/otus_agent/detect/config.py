"""Thresholds and windows of the detectors: the task's own ``detect`` section (``otus_spec.DetectOptions``),
the one definition of the fields and their defaults; the detectors take it as it is."""
from __future__ import annotations

import otus_spec

DetectConfig = otus_spec.DetectOptions
PortScan = otus_spec.PortScanOptions
SynFlood = otus_spec.SynFloodOptions
IcmpFlood = otus_spec.IcmpFloodOptions
SipScan = otus_spec.SipScanOptions
RegisterBruteForce = otus_spec.RegisterBruteForceOptions
InviteFlood = otus_spec.InviteFloodOptions
TollFraud = otus_spec.TollFraudOptions
