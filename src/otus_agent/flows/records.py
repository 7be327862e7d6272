"""The ``type: "flow"`` record: one flat JSON-ready dict per flow report.

Counters are cumulative since the flow began, in interval records as in the end record;
``src`` is the initiator. ``event`` is ``interval`` or ``end``; an end record has
``end_reason``: ``fin`` (FIN both ways), ``rst``, ``idle_timeout``, ``evicted`` (table full) or
``shutdown`` (capture ended). A closed TCP flow lingers ``tcp_closed_timeout_s`` (late ACKs and
retransmitted FIN/RST stay in it) unless a new SYN on the same ports ends it first.

The record is built by ``flow_record`` in ``flows/walk_cy.py`` (compiled, beside the flow it reads);
this module names it and its helpers for the rest of the package. Its keys come in one order (the JSON
lines'): ``BASE_FIELDS``, then ``END_FIELDS`` (end records), ``TCP_FIELDS`` (TCP flows), then
``icmp_types`` and ``icmp_errors`` when counted.
"""
from __future__ import annotations

from otus_agent.flows.walk_cy import (
    BASE_FIELDS,
    END_FIELDS,
    FLAG_STRINGS,
    SCHEMA_VERSION,
    TCP_FIELDS,
    address,
    flag_letters,
    flow_record,
    type_counts,
)

__all__ = ["BASE_FIELDS", "END_FIELDS", "FLAG_STRINGS", "SCHEMA_VERSION", "TCP_FIELDS", "address", "flag_letters",
           "flow_record", "type_counts"]
