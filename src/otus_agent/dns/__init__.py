"""DNS (parser ``dns``): messages, latency, the address -> domain cache and per-domain traffic."""
from __future__ import annotations

from otus_agent.dns.config import DnsConfig, DnsIgnore
from otus_agent.dns.stage import DnsStage

__all__ = ["DnsConfig", "DnsIgnore", "DnsStage"]
