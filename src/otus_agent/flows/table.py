"""The flow: one five-tuple's counters and TCP state, and the observer's TCP state machine.

Direction ``ab`` is from the initiator (``src``) to the responder (``dst``); the initiator is the
sender of the first packet seen, or the receiver of a first SYN-ACK (its SYN was missed).
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


class Flow:
    """Counters of one flow; the stage updates them in place (no allocation per packet)."""
    __slots__ = ("key", "ipver", "proto", "src", "dst", "sport", "dport", "first_ns", "last_ns",
                 "pk_ab", "by_ab", "pk_ba", "by_ba", "state", "fins", "flags_ab", "flags_ba", "nxt_ab", "nxt_ba",
                 "retrans", "zero_win", "handshake", "midstream", "isn", "icmp", "icmp_errors", "reported_ns",
                 "seq", "xq", "rq")

    def __init__(self, key: tuple, ipver: int, proto: int, src: bytes, dst: bytes, sport: int, dport: int,
                 ts_ns: int):
        self.key = key
        self.ipver = ipver
        self.proto = proto
        self.src = src
        self.dst = dst
        self.sport = sport
        self.dport = dport
        self.first_ns = ts_ns
        self.last_ns = ts_ns
        self.pk_ab = self.by_ab = self.pk_ba = self.by_ba = 0
        self.state = NONE
        self.fins = 0  # bit 1: FIN from src, bit 2: FIN from dst
        self.flags_ab = self.flags_ba = 0  # TCP flags seen, OR-ed per direction
        self.nxt_ab = self.nxt_ba = -1  # next expected sequence number per direction; -1: none yet
        self.retrans = 0
        self.zero_win = 0
        self.handshake = False
        self.midstream = False
        self.isn = -1  # the initiator's SYN sequence number: a SYN repeating it is the same connection
        self.icmp: dict[tuple[int, int], int] | None = None  # (type, code) -> packets, ICMP flows
        self.icmp_errors: dict[tuple[int, int], int] | None = None  # ICMP errors quoting this flow
        self.reported_ns = ts_ns
        self.seq = 0  # the table's creation count: its order (the dict's) among flows due at the same sweep
        self.xq = -1  # the expiry wheel's bucket holding this flow's live entry; -1: none (ended)
        self.rq = -1  # the same for the interval-report wheel

    def tcp(self, d: int, flags: int, seq: int, paylen: int, window: int) -> None:
        """Advance the TCP state and the retransmission and zero-window counts for one segment.

        A retransmission is a segment carrying data (or SYN/FIN) that starts before the next
        expected sequence number of its direction, keep-alives excepted (as Wireshark's analysis)."""
        st = self.state
        if d == 0:
            self.flags_ab |= flags
        else:
            self.flags_ba |= flags
        if flags & RST:
            st = RESET
        elif flags & SYN:
            if flags & ACK:
                if st == SYN_SENT or st == NONE:
                    st = SYN_RECEIVED
            elif st == NONE:
                st = SYN_SENT
            if d == 0 and not flags & ACK:
                self.isn = seq
        elif st == SYN_RECEIVED and d == 0 and flags & ACK:
            st = ESTABLISHED
            self.handshake = True
        if flags & FIN and st != RESET:
            self.fins |= 1 << d
            st = CLOSED if self.fins == 3 else HALF_CLOSED
        self.state = st
        seglen = paylen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        if window == 0 and not flags & (SYN | FIN | RST):
            self.zero_win += 1
        if seglen == 0 or flags & RST:
            return
        nxt = self.nxt_ab if d == 0 else self.nxt_ba
        end = (seq + seglen) % SEQ_MOD
        if nxt >= 0:
            behind = (nxt - seq) % SEQ_MOD
            if 0 < behind < HALF_SEQ:
                if not (seglen == 1 and behind == 1 and not flags & (SYN | FIN)):
                    self.retrans += 1
                if not 0 < (end - nxt) % SEQ_MOD < HALF_SEQ:
                    return
            elif not 0 < (end - nxt) % SEQ_MOD < HALF_SEQ:
                return
        if d == 0:
            self.nxt_ab = end
        else:
            self.nxt_ba = end

    def tcp_state_name(self, timed_out: bool = False) -> str:
        if timed_out and self.state not in (CLOSED, RESET):
            return TIMED_OUT
        return STATE_NAMES[self.state]

    def reopen(self) -> None:
        """The initiator repeated its SYN (same ISN) after the close: the same connection tries again."""
        self.state = NONE
        self.fins = 0

    def closed(self) -> bool:
        return self.state == CLOSED or self.state == RESET
