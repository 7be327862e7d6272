"""The fanout group's demux program (PACKET_FANOUT_CBPF): every SIP packet to one member, the rest by flow.

Why: the kernel's own hash (PACKET_FANOUT_HASH) puts each flow on one worker, and a call's SIP is often
more than one flow: through a proxy both legs carry its Call-ID (A <-> P and P <-> B), and requests and
responses may use other ports.  Hashed apart, each worker correlates the part it sees: two call records for
one call, and the two workers' SDP announcements of one call side replace each other's, so streams go
unreported.  With this program the whole of SIP (its ports, UDP, TCP and SCTP, and IPv6 fragments, which
the kernel does not reassemble before the demux: on a voice network those are SIP; with ``heuristic``, as
the SIP parser finds SIP on any port, UDP and TCP payloads whose first four bytes are a response's or a
known method's, ``SIP_WORDS``: RTP starts with a byte from 0x80, never one of them) goes to member 0, and
every other packet to ``hash % members``, where the hash is symmetric in the two endpoints (the sum of the
addresses plus the sum of the ports, scrambled by a multiplication), so both directions of a flow reach one
worker; a stream and its RTCP (another flow) share one only by chance, as with the kernel's hash.
IPv4 fragments are reassembled before the program runs (PACKET_FANOUT_FLAG_DEFRAG).  Other link
protocols (ARP, VLAN tags the NIC left in the frame) go to member 0.

Every load is relative to the network header (SKF_NET_OFF), not to where the packet's data starts:
the demux runs before the packet socket adjusts the buffer, and there an outgoing packet still starts at
its link header while an incoming one starts at its network header.  The link protocol comes from the
socket buffer (SKF_AD_PROTOCOL).  The kernel takes the returned value modulo the members in the group.
"""
from __future__ import annotations

MAX_PORTS = 40   # each port is two compares per IP version; a conditional jump reaches 255 instructions ahead

SKF_AD_PROTOCOL = -0x1000 + 0     # SKF_AD_OFF + SKF_AD_PROTOCOL: skb->protocol, host order
NET = -0x100000                   # SKF_NET_OFF: offsets from the network header
_LD_W_ABS, _LD_H_ABS, _LD_B_ABS = 0x20, 0x28, 0x30
_LD_W_IND, _LD_H_IND, _LD_B_IND = 0x40, 0x48, 0x50
_LD_IMM, _LDX_MEM, _ST, _TAX = 0x00, 0x61, 0x02, 0x07
_ADD_X, _ADD_K, _SUB_X, _MUL_K, _RSH_K, _AND_K, _LSH_K = 0x0C, 0x04, 0x1C, 0x24, 0x74, 0x54, 0x64
_JEQ_K, _JGE_K, _JSET_K, _JA = 0x15, 0x35, 0x45, 0x05
# the first four bytes of a SIP message: a response, or a request of RFC 3261's methods and the
# extensions' (PRACK, SUBSCRIBE, NOTIFY, PUBLISH, INFO, REFER, MESSAGE, UPDATE)
SIP_WORDS = tuple(int.from_bytes(w, "big") for w in (
    b"SIP/", b"INVI", b"ACK ", b"BYE ", b"CANC", b"OPTI", b"REGI", b"PRAC", b"SUBS", b"NOTI", b"PUBL", b"INFO",
    b"REFE", b"MESS", b"UPDA"))
_RET_K, _RET_A = 0x06, 0x16
GOLDEN = 0x9E3779B1


class _Prog:
    """Instructions with symbolic jump targets, resolved at the end (classic BPF jumps forward only)."""

    def __init__(self) -> None:
        self.code: list[list] = []
        self.labels: dict[str, int] = {}

    def op(self, code: int, k: int | str = 0, jt: str | int = 0, jf: str | int = 0) -> None:
        self.code.append([code, jt, jf, k])

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def resolve(self) -> list[tuple[int, int, int, int]]:
        out = []
        for i, (code, jt, jf, k) in enumerate(self.code):
            jt = self.labels[jt] - i - 1 if isinstance(jt, str) else jt
            jf = self.labels[jf] - i - 1 if isinstance(jf, str) else jf
            if isinstance(k, str):   # ja's target
                k = self.labels[k] - i - 1
            if not (0 <= jt <= 255 and 0 <= jf <= 255):
                raise ValueError("fanout program too long for a conditional jump")
            out.append((code, jt, jf, k & 0xFFFFFFFF))
        return out


def _ports(p: _Prog, ports: tuple[int, ...], sip: str) -> None:
    """The transport header at X: either port a SIP port jumps to ``sip``, else M[1] = their sum."""
    for at in (0, 2):
        p.op(_LD_H_IND, NET + at)
        for port in ports:
            p.op(_JEQ_K, port, sip, 0)
        if at == 0:
            p.op(_ST, 0)
    p.op(_LDX_MEM, 0)
    p.op(_ADD_X)
    p.op(_ST, 1)


def _payload(p: _Prog, v: str) -> None:
    """SIP on other ports (``heuristic``): the first four bytes of a UDP or TCP payload, one of
    ``SIP_WORDS``, jump to ``sip<v>``; anything else (no payload, a first byte from 0x80: RTP) to
    ``<v>addr``.  X and M[2] are free here (M[1], the ports' sum, is kept)."""
    p.label(f"{v}pay")
    if v == "v4":
        p.op(_LD_B_ABS, NET + 9)
    else:
        p.op(_LD_B_ABS, NET + 6)
    p.op(_JEQ_K, 17, f"{v}udp", 0)
    p.op(_JEQ_K, 6, f"{v}tcp", f"{v}addr")
    p.label(f"{v}udp")
    _l3(p, v)                             # X = the IP header's length
    p.op(_LD_H_IND, NET + 4)              # UDP length: a word of payload at least
    p.op(_JGE_K, 12, 0, f"{v}addr")
    p.op(_LD_W_IND, NET + 8)
    p.op(_JA, f"{v}words")
    p.label(f"{v}tcp")
    _l3(p, v)
    p.op(_LD_B_IND, NET + 12)             # data offset
    p.op(_RSH_K, 4)
    p.op(_LSH_K, 2)
    p.op(_ADD_X)
    p.op(_TAX)                            # X = IP header + TCP header
    if v == "v4":
        p.op(_LD_H_ABS, NET + 2)          # total length
    else:
        p.op(_LD_H_ABS, NET + 4)          # payload length, after the fixed header
        p.op(_ADD_K, 40)
    p.op(_SUB_X)
    p.op(_JGE_K, 4, 0, f"{v}addr")        # a pure ACK, SYN or FIN stays with its flow
    p.op(_LD_W_IND, NET + 0)
    p.label(f"{v}words")
    p.op(_JGE_K, 0x80000000, f"{v}addr", 0)
    for i, w in enumerate(SIP_WORDS):
        p.op(_JEQ_K, w, f"sip{v}", f"{v}addr" if i == len(SIP_WORDS) - 1 else 0)


def _l3(p: _Prog, v: str) -> None:
    """X = the IP header's length: IPv4's IHL, IPv6's fixed 40 (no extension headers)."""
    if v == "v4":
        p.op(_LD_B_ABS, NET + 0)
        p.op(_AND_K, 0x0F)
        p.op(_LSH_K, 2)
    else:
        p.op(_LD_IMM, 40)
    p.op(_TAX)


def sip_affinity(ports: tuple[int, ...], heuristic: bool = False) -> list[tuple[int, int, int, int]]:
    """The demux program for SIP on ``ports`` and, with ``heuristic`` (the SIP parser's: SIP found on
    any port), UDP and TCP payloads starting as a SIP message does; ValueError for more than MAX_PORTS
    ports."""
    ports = tuple(sorted(set(ports)))
    if not ports or len(ports) > MAX_PORTS or not all(0 < x < 65536 for x in ports):
        raise ValueError(f"fanout SIP affinity takes 1 to {MAX_PORTS} ports, got {len(ports)}")
    p = _Prog()
    p.op(_LD_IMM, 0)
    p.op(_ST, 1)                          # M[1]: the ports' sum (0 when there are no ports)
    p.op(_LD_W_ABS, SKF_AD_PROTOCOL)
    p.op(_JEQ_K, 0x0800, "v4", 0)
    p.op(_JEQ_K, 0x86DD, "v6", "sipv4")   # neither: member 0

    p.label("v4")
    p.op(_LD_B_ABS, NET + 9)              # protocol
    p.op(_JEQ_K, 17, "v4l4", 0)
    p.op(_JEQ_K, 6, "v4l4", 0)
    p.op(_JEQ_K, 132, "v4l4", "v4addr")
    p.label("v4l4")
    p.op(_LD_H_ABS, NET + 6)
    p.op(_JSET_K, 0x1FFF, "v4addr", 0)    # a later fragment (not reassembled): no ports in it
    _l3(p, "v4")                          # X = the IPv4 header's length
    _ports(p, ports, "sipv4")
    if heuristic:
        _payload(p, "v4")
    p.label("v4addr")
    p.op(_LD_W_ABS, NET + 12)
    p.op(_ST, 0)
    p.op(_LD_W_ABS, NET + 16)
    p.op(_LDX_MEM, 0)
    p.op(_ADD_X)
    p.op(_JA, "mix")
    p.label("sipv4")                      # here, not at the end: a conditional jump reaches 255 ahead
    p.op(_RET_K, 0)

    p.label("v6")
    p.op(_LD_B_ABS, NET + 6)              # next header
    p.op(_JEQ_K, 44, "sip", 0)            # a fragment: SIP's, most likely (RTP is small)
    p.op(_JEQ_K, 17, "v6l4", 0)
    p.op(_JEQ_K, 6, "v6l4", 0)
    p.op(_JEQ_K, 132, "v6l4", "v6addr")
    p.label("v6l4")
    _l3(p, "v6")                          # X = 40, the fixed header's length
    _ports(p, ports, "sipv6")
    if heuristic:
        _payload(p, "v6")
    p.label("v6addr")
    p.op(_LD_W_ABS, NET + 8)
    for off in range(12, 40, 4):          # the sum of the eight address words
        p.op(_ST, 0)
        p.op(_LD_W_ABS, NET + off)
        p.op(_LDX_MEM, 0)
        p.op(_ADD_X)

    p.label("mix")
    p.op(_LDX_MEM, 1)
    p.op(_ADD_X)
    p.op(_MUL_K, GOLDEN)
    p.op(_RSH_K, 16)
    p.op(_RET_A)
    p.label("sip")
    p.label("sipv6")
    p.op(_RET_K, 0)
    return p.resolve()
