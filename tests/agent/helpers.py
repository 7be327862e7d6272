"""Decode one frame and return its fields by name (test convenience)."""
from __future__ import annotations

from otus_agent.decode import decoder as D

FIELD_NAMES = [k for k in D.LAYOUT if k.startswith("F_")]


def decode(frame: bytes, linktype: int = 1, verify: bool = True, vxlan: bool = True) -> tuple[dict, dict]:
    dec = D.Decoder(1, verify_ipv4_checksum=verify, decode_vxlan=vxlan)
    out = dec.decode_one(bytes(frame), linktype)
    fields = {k[2:].lower(): out[D.LAYOUT[k]] for k in FIELD_NAMES}
    fields["payload"] = bytes(frame)[fields["payoff"]:fields["payoff"] + fields["paylen"]]
    return fields, dec.counters(nonzero=True)
