"""Detectors (``type: "alert"`` records): network attacks from flow events, SIP attacks from SIP records."""
from __future__ import annotations

from otus_agent.detect.config import DetectConfig
from otus_agent.detect.network import NetworkDetector
from otus_agent.detect.sip import SipDetector

__all__ = ["DetectConfig", "NetworkDetector", "SipDetector"]
