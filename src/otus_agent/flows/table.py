"""The flow's names: TCP states as an observer sees them, TCP flags, protocol names.

The flow itself (one five-tuple's counters and the observer's TCP state machine) is ``Flow`` in
``flows/walk_cy.py``, compiled with the walk that updates it per packet. Direction ``ab`` is from the
initiator (``src``) to the responder (``dst``); the initiator is the sender of the first packet seen,
or the receiver of a first SYN-ACK (its SYN was missed).
"""
from __future__ import annotations

# TCP states as an observer sees them (not the endpoints' own states)
NONE, SYN_SENT, SYN_RECEIVED, ESTABLISHED, HALF_CLOSED, CLOSED, RESET = range(7)
STATE_NAMES = ("none", "syn_sent", "syn_received", "established", "half_closed", "closed", "reset")
TIMED_OUT = "timed_out"  # the state reported for a TCP flow ended by its idle timeout before closing

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
SEQ_MOD = 1 << 32
HALF_SEQ = 1 << 31

PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 132: "sctp"}
