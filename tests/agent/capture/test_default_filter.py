"""The default SIP filter, compiled by the real libpcap for every link type the agent may open, and run.

Each program is executed by libpcap's own interpreter (``bpf_filter``) on
frames built for its link type: SIP is kept, other UDP dropped, later IP
fragments kept, and on Ethernet a VLAN-tagged SIP frame kept too.
"""
from __future__ import annotations

import ctypes
import socket
import struct

import pytest

from otus_agent.capture import afpacket, bpf, linktypes
from otus_agent.daemon.task import check_filter
from otus_agent.sim.packets import ethernet, ipv4, ipv4_fragments, ipv6, udp
from otus_spec import TaskSpec

SRC4, DST4 = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
SRC6, DST6 = bytes(15) + b"\1", bytes(15) + b"\2"
SIP = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n"
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def _link(linktype: int, l3: bytes, v6: bool = False, vlans: tuple[int, ...] = ()) -> bytes:
    """``l3`` (an IP packet) behind ``linktype``'s header."""
    et = 0x86DD if v6 else 0x0800
    ppp = struct.pack("!H", 0x0057 if v6 else 0x0021)
    if linktype == linktypes.ETHERNET:
        return ethernet(MAC_A, MAC_B, et, l3, vlans)
    # NULL/LOOP: an AF_* number (libpcap's ``ip6`` matches this platform's AF_INET6)
    if linktype == linktypes.NULL:
        return struct.pack("=I", socket.AF_INET6 if v6 else 2) + l3     # host order
    if linktype == linktypes.LOOP:
        return struct.pack("!I", socket.AF_INET6 if v6 else 2) + l3     # network order
    if linktype in (9, 50):                                     # PPP, PPP in HDLC framing
        return b"\xff\x03" + ppp + l3
    if linktype == 51:                                          # PPPoE session
        return struct.pack("!BBHH", 0x11, 0, 1, len(l3) + 2) + ppp + l3
    if linktype == linktypes.LINUX_SLL:
        return struct.pack("!HHH8sH", 0, 1, 6, MAC_A, et) + l3
    if linktype == linktypes.LINUX_SLL2:
        return struct.pack("!HHIHBB8s", et, 0, 2, 1, 0, 6, MAC_A) + l3
    return l3                                                   # raw IP (12, 14, 101, 228, 229)


def _ip(v6: bool, payload: bytes, proto: int = 17) -> bytes:
    return ipv6(SRC6, DST6, proto, payload) if v6 else ipv4(SRC4, DST4, proto, payload)


def _udp(v6: bool, dport: int) -> bytes:
    return _ip(v6, udp(SRC6 if v6 else SRC4, DST6 if v6 else DST4, 40000, dport, SIP))


_lib = bpf._libpcap()
_lib.bpf_filter.restype = ctypes.c_uint
_lib.bpf_filter.argtypes = [ctypes.POINTER(bpf._Insn), ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint]


def _accepts(insns: list, frame: bytes) -> bool:
    """libpcap's interpreter on one frame (the same program the kernel would run)."""
    arr = (bpf._Insn * len(insns))(*[bpf._Insn(*i) for i in insns])
    return _lib.bpf_filter(arr, frame, len(frame), len(frame)) != 0


ALL_LINKTYPES = sorted(linktypes.LINKTYPE_NAMES)


@pytest.mark.parametrize("linktype", ALL_LINKTYPES, ids=[linktypes.LINKTYPE_NAMES[t] for t in ALL_LINKTYPES])
def test_default_filter_compiles_and_selects_sip_for_every_link_type(linktype):
    f = bpf.default_sip_filter((5060, 5070))
    insns = bpf.compile_filter(f, linktype)                      # the real libpcap, no exception
    assert insns and insns != bpf.DROP_ALL
    assert ("vlan" in bpf.for_linktype(f, linktype)) == (linktype in linktypes.VLAN_CAPABLE)
    families = [False] if linktype == 228 else [True] if linktype == 229 else [False, True]
    for v6 in families:
        assert _accepts(insns, _link(linktype, _udp(v6, 5060), v6)), (linktype, v6)
        assert _accepts(insns, _link(linktype, _udp(v6, 5070), v6)), (linktype, v6)
        assert not _accepts(insns, _link(linktype, _udp(v6, 53), v6)), (linktype, v6)
    if linktype != 229:
        frags = ipv4_fragments(SRC4, DST4, 17, udp(SRC4, DST4, 40000, 5060, SIP * 40), ident=7, mtu=576)
        assert len(frags) > 1
        assert _accepts(insns, _link(linktype, frags[-1]))    # no ports in a later fragment: kept
    if linktype in linktypes.VLAN_CAPABLE:
        assert _accepts(insns, _link(linktype, _udp(False, 5060), vlans=(42,)))
        assert not _accepts(insns, _link(linktype, _udp(False, 53), vlans=(42,)))


def test_default_filter_text_is_the_ethernet_form_and_survives_pickling():
    import pickle
    f = bpf.default_sip_filter((5060,))
    assert isinstance(f, str) and f == bpf.default_sip_filter((5060,), linktypes.ETHERNET)
    assert "vlan" in f and "vlan" not in bpf.for_linktype(f, linktypes.RAW)
    g = pickle.loads(pickle.dumps(f))
    assert isinstance(g, bpf.DefaultFilter) and g.ports == (5060,) and g == f


def test_user_filter_is_compiled_as_given_and_refused_clearly_where_libpcap_cannot():
    assert bpf.for_linktype("vlan and udp port 5060", linktypes.RAW) == "vlan and udp port 5060"
    assert afpacket.compile_for("vlan and udp port 5060", "lo")     # Ethernet-framed: fine
    with pytest.raises(afpacket.CaptureError) as e:
        afpacket.compile_for("vlan and udp port 5060", "any")
    msg = str(e.value)
    assert msg.startswith("invalid filter 'vlan and udp port 5060' for interface any (link type 101 (RAW))")
    assert "no VLAN support for Raw IP" in msg
    # the agent's preflight and `otus validate` check each interface's link type
    check_filter(TaskSpec(id="t", interfaces=["any"]))              # the default: fine on any
    check_filter(TaskSpec(id="t", interfaces=["lo", "any"], bpf_filter="udp port 5060"))
    with pytest.raises(afpacket.CaptureError, match="for interface any .*no VLAN support"):
        check_filter(TaskSpec(id="t", interfaces=["lo", "any"], bpf_filter="vlan"))


def test_interface_link_types():
    assert afpacket.interface_linktype("any") == linktypes.RAW
    assert afpacket.interface_linktype("lo") == linktypes.ETHERNET
    assert afpacket.interface_linktype("no-such-if0") == linktypes.ETHERNET   # offline: checked elsewhere


def _rtp(v6: bool, dport: int, first: int = 0x80) -> bytes:
    rtp = bytes([first, 0]) + struct.pack("!HII", 1, 160, 0x1234) + b"\xff" * 160
    return _ip(v6, udp(SRC6 if v6 else SRC4, DST6 if v6 else DST4, 40000, dport, rtp))


def _tcp_syn(v6: bool, dport: int) -> bytes:
    hdr = struct.pack("!HHIIBBHHH", 40000, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    return _ip(v6, hdr, 6)


PARSER_SETS = [("sip",), ("sip", "rtp"), ("sip", "dns"), ("sip", "rtp", "dns"), ("sip", "flow"),
               ("sip", "rtp", "dns", "flow", "detect"), ("dns",), ("flow", "detect")]


@pytest.mark.parametrize("parsers", PARSER_SETS, ids=["+".join(p) for p in PARSER_SETS])
@pytest.mark.parametrize("linktype", [linktypes.ETHERNET, linktypes.LINUX_SLL2, linktypes.RAW],
                         ids=["ethernet", "sll2", "raw"])
def test_default_filter_widens_only_as_the_parsers_need(parsers, linktype):
    """Each combination compiled by libpcap and run: SIP always kept, RTP-shaped UDP with rtp, the DNS
    ports with dns, everything (no filter) with flow; nothing else."""
    from otus_agent.engine.parsers import capture_clauses
    f = bpf.default_filter((5060,), capture_clauses(parsers, {}))
    if "flow" in parsers:
        assert f == ""                       # the flow table counts every packet: no kernel filter
        return
    insns = bpf.compile_filter(bpf.for_linktype(f, linktype), linktype)
    for v6 in (False, True):
        assert _accepts(insns, _link(linktype, _udp(v6, 5060), v6))
        assert _accepts(insns, _link(linktype, _rtp(v6, 30000), v6)) == ("rtp" in parsers)
        assert not _accepts(insns, _link(linktype, _rtp(v6, 30000, first=0x40), v6))   # RTP version 1: not RTP
        assert _accepts(insns, _link(linktype, _udp(v6, 53), v6)) == ("dns" in parsers)
        assert _accepts(insns, _link(linktype, _tcp_syn(v6, 53), v6)) == ("dns" in parsers)
        assert not _accepts(insns, _link(linktype, _tcp_syn(v6, 443), v6))
    g = __import__("pickle").loads(__import__("pickle").dumps(f))
    assert g == f and g.for_linktype(linktype) == f.for_linktype(linktype)


def test_task_default_filter_follows_its_parsers():
    from otus_agent.daemon.task import configs
    live, _, _ = configs(TaskSpec(id="t", interfaces=["lo"], parsers=["sip", "rtp", "dns"]))
    assert "udp[8] & 0xc0 = 0x80" in live.filter_expr and "port 53" in live.filter_expr
    check_filter(TaskSpec(id="t", interfaces=["lo", "any"], parsers=["sip", "rtp", "dns"]))
    live, _, _ = configs(TaskSpec(id="t", interfaces=["lo"], parsers=["sip", "flow"]))
    assert live.filter_expr is None                                 # everything
    live, _, _ = configs(TaskSpec(id="t", interfaces=["lo"]))
    assert live.filter_expr == bpf.default_sip_filter((5060, 5061, 5080))
