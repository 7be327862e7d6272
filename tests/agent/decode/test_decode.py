"""L2-L4 decoder: every layer on packets built by scapy (an independent encoder)."""
from __future__ import annotations

import random
import struct

import pytest
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import GRE, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether, Loopback
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.sctp import SCTP, SCTPChunkData, SCTPChunkSACK
from scapy.layers.vxlan import VXLAN

from otus_agent.decode import decoder as D
from tests.support import decode

SIP = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n"
U = UDP(sport=5060, dport=5062) / SIP
IP4 = IP(src="192.0.2.1", dst="192.0.2.2")
IP6 = IPv6(src="2001:db8::1", dst="2001:db8::2")
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def assert_udp(f: dict, ipver: int = 4) -> None:
    assert f["status"] == D.ST_L4, f
    assert f["ipver"] == ipver
    assert f["proto"] == 17
    assert (f["sport"], f["dport"]) == (5060, 5062)
    assert f["payload"] == SIP


def test_ethernet_ipv4_udp():
    f, c = decode(bytes(ETH / IP4 / U))
    assert_udp(f)
    assert f["vlan"] == -1 and f["tunnel"] == 0
    assert c == {"packets": 1, "ethernet": 1, "ipv4": 1, "udp": 1}


def test_ethernet_padding_is_not_payload():
    frame = bytes(ETH / IP4 / UDP(sport=5060, dport=5062) / b"x") + b"\0" * 20
    f, _ = decode(frame)
    assert f["payload"] == b"x"
    assert f["l3end"] == 14 + 20 + 8 + 1


def test_vlan_and_qinq():
    f, c = decode(bytes(ETH / Dot1Q(vlan=42) / IP4 / U))
    assert_udp(f)
    assert f["vlan"] == 42
    f, c = decode(bytes(ETH / Dot1AD(vlan=100) / Dot1Q(vlan=7) / IP4 / U))
    assert_udp(f)
    assert f["vlan"] == 100 and c["vlan"] == 2


def test_too_many_vlan_tags_dropped():
    pkt = ETH
    for v in range(5):
        pkt = pkt / Dot1Q(vlan=v + 1)
    f, c = decode(bytes(pkt / IP4 / U))
    assert f["status"] == D.ST_DROPPED and c["drop_vlan_too_deep"] == 1


def test_ipv4_options_and_checksum():
    f, _ = decode(bytes(ETH / IP(src="192.0.2.1", dst="192.0.2.2", options=b"\x94\x04\x00\x00") / U))
    assert_udp(f)
    assert f["l4off"] == 14 + 24
    raw = bytearray(bytes(ETH / IP4 / U))
    raw[14 + 10] ^= 0xFF  # break the header checksum
    f, c = decode(bytes(raw))
    assert f["status"] == D.ST_DROPPED and c["drop_ipv4_bad_checksum"] == 1
    f, c = decode(bytes(raw), verify=False)
    assert_udp(f)


def test_ipv6_extension_headers():
    pkt = ETH / IP6 / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting() / U
    f, c = decode(bytes(pkt))
    assert_udp(f, 6)
    assert f["l4off"] == 14 + 40 + 8 + 8 + 8


def test_ipv6_atomic_fragment_is_whole_packet():
    f, c = decode(bytes(ETH / IP6 / IPv6ExtHdrFragment(offset=0, m=0, id=5) / U))
    assert_udp(f, 6)
    assert "ipv6_fragment" not in c


def test_fragments_are_flagged_for_reassembly():
    frags = [bytes(ETH / p) for p in (IP4 / UDP(sport=1, dport=2) / (b"a" * 3000)).fragment(1000)]
    f, c = decode(frags[1])
    assert f["status"] == D.ST_FRAGMENT and c["ipv4_fragment"] == 1 and f["proto"] == 17
    f, c = decode(bytes(ETH / IP6 / IPv6ExtHdrFragment(offset=10, m=1, id=9, nh=17) / (b"b" * 16)))
    assert f["status"] == D.ST_FRAGMENT and f["fraghdr"] == 14 + 40 and f["proto"] == 17


def test_tcp_flags_seq_ack_options():
    t = TCP(sport=5060, dport=40000, seq=0xFFFFFFF0, ack=7, flags="PA",
            options=[("MSS", 1460), ("NOP", None), ("WScale", 7), ("Timestamp", (1, 2))])
    f, c = decode(bytes(ETH / IP4 / t / SIP))
    assert f["status"] == D.ST_L4 and f["proto"] == 6
    assert f["tcpseq"] == 0xFFFFFFF0 and f["tcpack"] == 7
    assert f["tcpflags"] == 0x18
    assert f["payload"] == SIP


def test_sctp_data_chunks():
    s = SCTP(sport=5060, dport=5060) / SCTPChunkSACK() / SCTPChunkData(data=SIP) / SCTPChunkData(data=b"x")
    f, c = decode(bytes(ETH / IP4 / s))
    assert f["status"] == D.ST_L4 and f["proto"] == 132 and f["sport"] == 5060
    assert c["sctp_data_chunks"] == 2
    raw = bytearray(bytes(ETH / IP4 / SCTP(sport=1, dport=2) / SCTPChunkData(data=SIP)))
    struct.pack_into("!H", raw, 14 + 20 + 12 + 2, 3)  # chunk length < 4
    f, c = decode(bytes(raw), verify=False)
    assert f["status"] == D.ST_DROPPED and c["drop_sctp_bad_chunk"] == 1


@pytest.mark.parametrize("inner", ["ip", "ipv6"])
def test_gre_carrying_ip(inner):
    payload = (IP4 if inner == "ip" else IP6) / U
    f, c = decode(bytes(ETH / IP(src="198.51.100.1", dst="198.51.100.2") / GRE(key_present=1, key=5,
                                                                                   seqnum_present=1, sequence_number=9) / payload))
    assert_udp(f, 4 if inner == "ip" else 6)
    assert f["tunnel"] & D.LAYOUT["TUN_GRE"]
    assert c["gre"] == 1


def test_gre_ppp_and_transparent_ethernet():
    f, _ = decode(bytes(ETH / IP4 / GRE(proto=0x880B) / PPP(proto=0x21) / IP4 / U))
    assert_udp(f)
    f, _ = decode(bytes(ETH / IP4 / GRE(proto=0x6558) / Ether() / Dot1Q(vlan=9) / IP4 / U))
    assert_udp(f)
    assert f["vlan"] == 9


def test_erspan_type2_and_type3():
    f, c = decode(bytes(ETH / IP4 / GRE(seqnum_present=1) / ERSPAN_II(session_id=3) / Ether() / IP4 / U))
    assert_udp(f)
    assert c["erspan"] == 1 and f["tunnel"] & D.LAYOUT["TUN_ERSPAN"]
    f, c = decode(bytes(ETH / IP4 / GRE(seqnum_present=1) / ERSPAN_III(o=0) / Ether() / IP6 / U))
    assert_udp(f, 6)
    f, c = decode(bytes(ETH / IP4 / GRE(seqnum_present=1) / ERSPAN_III(o=1) / ERSPAN_PlatformSpecific()
                        / Ether() / IP4 / U))
    assert_udp(f)


def test_ip_in_ip_and_ipv6_in_ipv4():
    f, c = decode(bytes(ETH / IP(src="203.0.113.1", dst="203.0.113.2") / IP4 / U))
    assert_udp(f)
    assert c["ipip"] == 1 and f["l3off"] == 14 + 20
    f, c = decode(bytes(ETH / IP4 / IP6 / U))
    assert_udp(f, 6)


def test_vxlan():
    pkt = ETH / IP4 / UDP(sport=1234, dport=4789) / VXLAN(vni=77) / Ether() / IP4 / U
    f, c = decode(bytes(pkt))
    assert_udp(f)
    assert c["vxlan"] == 1
    f, c = decode(bytes(pkt), vxlan=False)
    assert f["dport"] == 4789


def test_tunnel_depth_is_bounded():
    pkt = IP4 / U
    for _ in range(8):
        pkt = IP(src="203.0.113.1", dst="203.0.113.2") / pkt
    f, c = decode(bytes(ETH / pkt))
    assert f["status"] == D.ST_DROPPED and c["drop_tunnel_too_deep"] == 1


def test_mpls_pppoe_and_other_links():
    f, _ = decode(bytes(ETH / MPLS(label=16, s=0) / MPLS(label=17, s=1) / IP4 / U))
    assert_udp(f)
    f, c = decode(bytes(ETH / PPPoE(sessionid=1) / PPP(proto=0x21) / IP4 / U))
    assert_udp(f)
    assert c["pppoe"] == 1
    f, c = decode(bytes(CookedLinux(proto=0x0800) / IP4 / U), 113)
    assert_udp(f)
    f, c = decode(bytes(CookedLinuxV2(proto=0x86DD) / IP6 / U), 276)
    assert_udp(f, 6)
    f, c = decode(bytes(IP4 / U), 101)
    assert_udp(f)
    f, c = decode(bytes(IP6 / U), 229)
    assert_udp(f, 6)
    f, c = decode(bytes(Loopback(type=2) / IP4 / U), 0)
    assert_udp(f)
    f, c = decode(bytes(PPP(proto=0x57) / IP6 / U), 9)
    assert_udp(f, 6)


def test_non_ip_and_unsupported_linktype():
    f, c = decode(bytes(Ether(type=0x0806) / (b"\0" * 28)))
    assert f["status"] == D.ST_NON_IP and c["non_ip"] == 1
    f, c = decode(bytes(ETH / IP4 / U), 147)
    assert f["status"] == D.ST_DROPPED and c["drop_unsupported_linktype"] == 1


@pytest.mark.parametrize("name,frame,link", [
    ("udp", bytes(ETH / Dot1Q(vlan=3) / IP4 / U), 1),
    ("tcp", bytes(ETH / IP6 / IPv6ExtHdrHopByHop() / TCP(sport=1, dport=2, options=[("MSS", 1)]) / SIP), 1),
    ("gre-erspan", bytes(ETH / IP4 / GRE(seqnum_present=1) / ERSPAN_II() / Ether() / IP4 / U), 1),
    ("vxlan", bytes(ETH / IP4 / UDP(dport=4789) / VXLAN() / Ether() / IP6 / U), 1),
    ("sctp", bytes(CookedLinux(proto=0x800) / IP4 / SCTP() / SCTPChunkData(data=SIP)), 113),
    ("mpls", bytes(ETH / MPLS(s=1) / IP4 / U), 1),
])
def test_every_truncation_is_a_counted_drop(name, frame, link):
    """Cut the frame at every length: never an exception, never a bogus L4 result."""
    for cut in range(len(frame)):
        f, c = decode(frame[:cut], link)
        assert f["status"] in (D.ST_DROPPED, D.ST_NON_IP), (name, cut, f)
        if f["status"] == D.ST_DROPPED:
            assert sum(v for k, v in c.items() if k.startswith("drop_")) == 1


def test_compiled_and_pure_builds_agree(pure_fastpath, workload_pcap):
    """The compiled module is the same source: same fields, same counters."""
    from array import array

    from otus_agent.capture.pcapfile import open_capture
    from otus_agent.decode import l2l4_cy as fastpath
    nf = D.LAYOUT["NF"]
    nc = D.LAYOUT["NCOUNTERS"]
    with open_capture(workload_pcap[0]) as r:
        for b in r.batches():
            outs = []
            for mod in (fastpath, pure_fastpath):
                out, cnt = array("q", bytes(8 * nf * b.n)), array("q", bytes(8 * nc))
                mod.decode_batch(b.buf, b.n, b.offs, b.caplens, b.links, out, cnt, 3)
                outs.append((out, cnt))
            assert outs[0] == outs[1]


def test_counter_names_match_constants(pure_fastpath):
    for i, name in enumerate(D.COUNTER_NAMES):
        assert getattr(pure_fastpath, "C_" + name.upper()) == i
    assert len(D.COUNTER_NAMES) == pure_fastpath.NCOUNTERS
    assert D.COUNTER_NAMES[pure_fastpath.FIRST_DROP].startswith("drop_")
    assert not D.COUNTER_NAMES[pure_fastpath.FIRST_DROP - 1].startswith("drop_")


def test_random_bytes_never_raise(pure_fastpath):
    """Fuzz the pure build: a missing length check shows up as IndexError there."""
    from array import array

    from hypothesis import given, settings
    from hypothesis import strategies as st

    nf, nc = pure_fastpath.NF, pure_fastpath.NCOUNTERS
    seeds = [bytes(ETH / Dot1Q() / IP4 / U), bytes(ETH / IP6 / IPv6ExtHdrRouting() / TCP() / SIP),
             bytes(ETH / IP4 / GRE(seqnum_present=1) / ERSPAN_III(o=1) / ERSPAN_PlatformSpecific() / Ether() / IP4 / U),
             bytes(ETH / IP4 / SCTP() / SCTPChunkData(data=SIP)), bytes(ETH / MPLS(s=1) / IP6 / U)]

    @settings(max_examples=400, deadline=None)
    @given(st.integers(0, len(seeds) - 1), st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=6),
           st.integers(0, 4000), st.sampled_from([0, 1, 9, 101, 113, 228, 229, 276, 7]))
    def run(i, muts, cut, link):
        data = bytearray(seeds[i])
        for pos, val in muts:
            if data:
                data[pos % len(data)] = val
        data = bytes(data[:cut])
        out, cnt = array("q", bytes(8 * nf)), array("q", bytes(8 * nc))
        pure_fastpath.decode_batch(data, 1, array("q", [0]), array("q", [len(data)]), array("q", [link]), out, cnt, 3)
        assert sum(cnt) >= 1
    run()


def test_random_garbage_batch_compiled():
    """Same idea on the compiled build (a bad read there would crash the process)."""
    from array import array

    from otus_agent.decode import l2l4_cy as fastpath
    rng = random.Random(5)
    nf, nc = D.LAYOUT["NF"], D.LAYOUT["NCOUNTERS"]
    buf = bytes(rng.getrandbits(8) for _ in range(200_000))
    n = 5000
    offs = array("q", [rng.randrange(0, len(buf)) for _ in range(n)])
    caps = array("q", [min(rng.randrange(0, 300), len(buf) - o) for o in offs])
    links = array("q", [rng.choice([1, 113, 276, 101, 9, 0]) for _ in range(n)])
    out, cnt = array("q", bytes(8 * nf * n)), array("q", bytes(8 * nc))
    fastpath.decode_batch(buf, n, offs, caps, links, out, cnt, 3)
    assert cnt[0] == n
    bad = array("q", [len(buf) - 1] * 2)
    fastpath.decode_batch(buf, 2, bad, array("q", [10, 10]), links, out, cnt, 3)  # record past the buffer
    assert dict(zip(D.COUNTER_NAMES, cnt))["drop_bad_record"] == 2


def test_address_text_cache_is_bounded():
    """The cache of address text never holds more than ADDR_CACHE_MAX pairs and stays correct when full."""
    import socket
    import struct

    from otus_agent.decode import decoder as D
    D._addr_cache.clear()
    for i in range(D.ADDR_CACHE_MAX * 2 + 5):
        hdr = bytes(12) + struct.pack("!II", 0x0A000000 + i, 0xC0A80001)
        assert D.ip_addresses(hdr, 4, 0) == (socket.inet_ntoa(struct.pack("!I", 0x0A000000 + i)), "192.168.0.1")
        assert len(D._addr_cache) <= D.ADDR_CACHE_MAX
