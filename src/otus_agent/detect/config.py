"""Thresholds and windows of the detectors, validated at the boundary; defaults sit well above what
ordinary traffic does (the clean-workload tests hold them to that)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PortScan(_Strict):
    window_s: float = Field(default=60.0, gt=0)
    distinct_ports: int = Field(default=100, ge=2, description="ports of one host probed by one source")
    distinct_hosts: int = Field(default=100, ge=2, description="hosts probed on one port by one source")


class SynFlood(_Strict):
    window_s: float = Field(default=10.0, gt=0)
    incomplete: int = Field(default=500, ge=1, description="SYNs to one destination without a completed handshake")
    ratio: float = Field(default=0.8, gt=0, le=1, description="share of that destination's SYNs left incomplete")


class IcmpFlood(_Strict):
    window_s: float = Field(default=10.0, gt=0)
    packets: int = Field(default=1000, ge=1, description="ICMP packets to one destination")


class SipScan(_Strict):
    window_s: float = Field(default=60.0, gt=0)
    user_agents: tuple[str, ...] = Field(default=("friendly-scanner", "sipvicious", "sipcli", "sip-scan", "sipsak-scan",
                                          "vaxsipuseragent", "sundayddr", "iwar", "smap", "pplsip", "siparator",
                                          "voipbuster"),
                                         description="User-Agent substrings of known scanners (case-insensitive)")
    options_targets: int = Field(default=50, ge=2, description="distinct hosts or users one source sends OPTIONS to")
    trusted_sources: tuple[str, ...] = Field(default=(), description="sources whose OPTIONS are not a sweep: a proxy "
                                             "pinging more registered contacts than options_targets a window")


class RegisterBruteForce(_Strict):
    window_s: float = Field(default=60.0, gt=0)
    per_source: int = Field(default=20, ge=1, description="401/403 answers to REGISTERs of one source")
    per_user: int = Field(default=10, ge=1, description="401/403 answers to REGISTERs of one user")
    failure_ratio: float = Field(default=0.8, gt=0, le=1, description="failures over all final answers (a challenge "
                                 "followed by 200 is normal)")


class InviteFlood(_Strict):
    window_s: float = Field(default=10.0, gt=0)
    invites: int = Field(default=50, ge=1, description="new INVITE transactions (distinct Call-IDs) from one source")


class TollFraud(_Strict):
    window_s: float = Field(default=600.0, gt=0)
    calls: int = Field(default=10, ge=1, description="short international calls from one account")
    short_call_s: float = Field(default=30.0, gt=0, description="a call shorter than this (or unanswered) is short")
    international_prefixes: tuple[str, ...] = Field(default=("+", "00", "011"))
    home_prefixes: tuple[str, ...] = Field(default=(), description="prefixes that are not international here (e.g. +1)")


class DetectConfig(_Strict):
    port_scan: PortScan = PortScan()
    syn_flood: SynFlood = SynFlood()
    icmp_flood: IcmpFlood = IcmpFlood()
    sip_scan: SipScan = SipScan()
    register_brute_force: RegisterBruteForce = RegisterBruteForce()
    invite_flood: InviteFlood = InviteFlood()
    toll_fraud: TollFraud = TollFraud()
    max_keys: int = Field(default=16384, ge=1, description="sources/destinations/users tracked per detector; the oldest "
                          "goes when full (counted in evictions)")
    cooldown_s: float = Field(default=300.0, ge=0, description="an alert for the same detector and key repeats at most this "
                              "often")
