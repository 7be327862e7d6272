"""The ``type: "flow"`` record: one flat JSON-ready dict per flow report.

Counters are cumulative since the flow began, in interval records as in the end record;
``src`` is the initiator. ``event`` is ``interval`` or ``end``; an end record has
``end_reason``: ``fin`` (FIN both ways), ``rst``, ``idle_timeout``, ``evicted`` (table full) or
``shutdown`` (capture ended). A closed TCP flow lingers ``tcp_closed_timeout_s`` (late ACKs and
retransmitted FIN/RST stay in it) unless a new SYN on the same ports ends it first.

The record is built by ``flow_record`` in ``flows/walk_cy.py`` (compiled, beside the flow it reads);
this module holds its names and helpers.
"""
from __future__ import annotations

import socket

SCHEMA_VERSION = 1
_TCP_FLAG_LETTERS = ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "A"), (0x20, "U"), (0x40, "E"),
                     (0x80, "C"))


def address(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def flag_letters(flags: int) -> str:
    return "".join(c for bit, c in _TCP_FLAG_LETTERS if flags & bit)


FLAG_STRINGS = tuple(flag_letters(i) for i in range(256))  # flag_letters of every 8-bit flags value


def type_counts(d: dict[tuple[int, int], int] | None) -> dict[str, int] | None:
    return {f"{t}/{c}": n for (t, c), n in sorted(d.items())} if d else None
