"""Settings of the DNS parser and per-domain traffic, validated at the boundary."""
from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator


class DnsIgnore(BaseModel):
    """Traffic left out of DNS records and of per-domain attribution."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    ports: frozenset[int] = Field(default=frozenset(), description="L4 ports (either side) not attributed")
    addresses: tuple[str, ...] = Field(default=(), description="addresses or CIDR networks (either side) not attributed")
    localhost: bool = Field(default=True, description="ignore 127.0.0.0/8 and ::1")
    domains: tuple[str, ...] = Field(default=(), description="domains (and their subdomains) neither cached nor recorded")

    @field_validator("addresses")
    @classmethod
    def _networks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for a in v:
            try:
                ipaddress.ip_network(a, strict=False)
            except ValueError:
                raise ValueError(f"not an address or network: {a!r}") from None
        return v

    @field_validator("domains")
    @classmethod
    def _domains(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(d.strip(".").lower() for d in v if d.strip("."))


class DnsConfig(BaseModel):
    """Bounds: each table has a limit, a counter, and says what happens when full."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    ports: frozenset[int] = Field(default=frozenset({53, 5353}), description="DNS server ports (UDP and TCP)")
    max_pending: int = Field(default=16384, ge=1, description="queries awaiting a response; the oldest is dropped when full")
    query_timeout_s: float = Field(default=10.0, gt=0, description="a query unanswered this long is counted unanswered")
    cache_entries: int = Field(default=65536, ge=1, description="address -> domain entries; the oldest goes when full")
    ttl_floor_s: float = Field(default=30.0, ge=0, description="an answer is kept at least this long")
    ttl_cap_s: float = Field(default=86400.0, gt=0, description="and at most this long, whatever its TTL")
    top_domains: int = Field(default=100, ge=1, description="domains exported as metrics; the rest sum into 'other'")
    max_tracked_domains: int = Field(default=10000, ge=1, description="domains counted; beyond, traffic counts as 'other'")
    tcp_max_streams: int = Field(default=4096, ge=1, description="DNS-over-TCP streams followed")
    ignore: DnsIgnore = DnsIgnore()
