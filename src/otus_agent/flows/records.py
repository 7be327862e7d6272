"""The ``type: "flow"`` record: one flat JSON-ready dict per flow report.

Counters are cumulative since the flow began, in interval records as in the end record;
``src`` is the initiator. ``event`` is ``interval`` or ``end``; an end record has
``end_reason``: ``fin`` (FIN both ways), ``rst``, ``idle_timeout``, ``evicted`` (table full) or
``shutdown`` (capture ended). A closed TCP flow lingers ``tcp_closed_timeout_s`` (late ACKs and
retransmitted FIN/RST stay in it) unless a new SYN on the same ports ends it first.
"""
from __future__ import annotations

import socket

from otus_agent.flows.table import PROTO_NAMES
from otus_agent.flows.walk_cy import Flow

SCHEMA_VERSION = 1
_TCP_FLAG_LETTERS = ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "A"), (0x20, "U"), (0x40, "E"),
                     (0x80, "C"))


def address(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def flag_letters(flags: int) -> str:
    return "".join(c for bit, c in _TCP_FLAG_LETTERS if flags & bit)


def _type_counts(d: dict[tuple[int, int], int] | None) -> dict[str, int] | None:
    return {f"{t}/{c}": n for (t, c), n in sorted(d.items())} if d else None


def flow_record(f: Flow, event: str, ts_ns: int, end_reason: str | None = None) -> dict:
    rec: dict = {
        "v": SCHEMA_VERSION,
        "type": "flow",
        "event": event,
        "ts": ts_ns,
        "proto": PROTO_NAMES.get(f.proto, str(f.proto)),
        "ipver": f.ipver,
        "src_ip": address(f.src),
        "src_port": f.sport,
        "dst_ip": address(f.dst),
        "dst_port": f.dport,
        "first_ts": f.first_ns,
        "last_ts": f.last_ns,
        "src_packets": f.pk_ab,
        "src_bytes": f.by_ab,
        "dst_packets": f.pk_ba,
        "dst_bytes": f.by_ba,
    }
    if end_reason is not None:
        rec["end_reason"] = end_reason
    if f.proto == 6:
        rec["tcp_state"] = f.tcp_state_name(end_reason == "idle_timeout")
        rec["tcp_handshake"] = f.handshake
        rec["tcp_midstream"] = f.midstream
        rec["tcp_flags_src"] = flag_letters(f.flags_ab)
        rec["tcp_flags_dst"] = flag_letters(f.flags_ba)
        rec["tcp_retransmissions"] = f.retrans
        rec["tcp_zero_windows"] = f.zero_win
    if f.icmp:
        rec["icmp_types"] = _type_counts(f.icmp)
    if f.icmp_errors:
        rec["icmp_errors"] = _type_counts(f.icmp_errors)
    return rec
