"""IPv4/IPv6 fragment reassembly: orders, overlaps, limits, anomalies.

Each test runs against the compiled build and the pure-Python source.
"""
from __future__ import annotations

import random

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop

from otus_agent.decode import decoder as D
from otus_agent.reassembly import ipfrag_cy as compiled_ipfrag

SEC = 1_000_000_000


@pytest.fixture(params=["compiled", "pure"])
def R(request, pure_ipfrag):
    mod = compiled_ipfrag if request.param == "compiled" else pure_ipfrag
    return mod.FragmentReassembler


def v4_datagram(size: int = 3000, ident: int = 7, src: str = "192.0.2.1") -> IP:
    return IP(src=src, dst="192.0.2.2", id=ident) / UDP(sport=5060, dport=5060) / bytes(
        (i * 7) & 0xFF for i in range(size))


def v4_frags(dgram: IP, size: int = 800) -> list[bytes]:
    return [bytes(f) for f in dgram.fragment(size)]


def feed(r, frag: bytes, ts: int = 0):
    """Locate the fragment with the real decoder, then hand it over."""
    dec = D.Decoder(1)
    out = dec.decode_one(frag, 101)
    assert out[D.F_STATUS] == D.ST_FRAGMENT, dec.counters(nonzero=True)
    return r.add(frag, out[D.F_L3OFF], out[D.F_L3END], out[D.F_IPVER], out[D.F_FRAGHDR], ts)


def feed_all(r, frags, ts: int = 0):
    done = [x for x in (feed(r, f, ts) for f in frags) if x is not None]
    return done


def same_ipv4(got: bytes, dgram: IP) -> None:
    exp = IP(bytes(dgram))
    g = IP(got)
    assert bytes(g.payload) == bytes(exp.payload)
    assert g.len == len(got) and g.flags == 0 and g.frag == 0
    assert (g.src, g.dst, g.id, g.proto) == (exp.src, exp.dst, exp.id, exp.proto)
    g2 = IP(got)
    del g2.chksum
    assert IP(bytes(g2)).chksum == g.chksum, "header checksum not recomputed"


@pytest.mark.parametrize("order", ["in-order", "reverse", "shuffled", "last-first"])
def test_orders(R, order):
    dg = v4_datagram()
    frags = v4_frags(dg)
    if order == "reverse":
        frags.reverse()
    elif order == "shuffled":
        random.Random(3).shuffle(frags)
    elif order == "last-first":
        frags = frags[-1:] + frags[:-1]
    r = R()
    done = feed_all(r, frags)
    assert len(done) == 1
    same_ipv4(done[0], dg)
    c = r.counters()
    assert c["reassembled"] == 1 and c["fragments"] == len(frags) and c["in_flight"] == 0
    assert c["bytes_in_flight"] == 0


def test_duplicates_counted_and_ignored(R):
    dg = v4_datagram()
    frags = v4_frags(dg)
    r = R()
    done = feed_all(r, [frags[0], frags[0], frags[1], frags[1]] + frags[2:])
    assert len(done) == 1
    same_ipv4(done[0], dg)
    c = r.counters()
    assert c["duplicates"] == 2 and c["overlaps"] == 2 and c["inconsistent_overlaps"] == 0


def _raw_frag(payload: bytes, off: int, more: bool, ident: int = 1, proto: int = 17, df: bool = False) -> bytes:
    p = IP(src="198.51.100.1", dst="198.51.100.2", id=ident, proto=proto, frag=off // 8,
           flags=(1 if more else 0) | (2 if df else 0)) / payload
    return bytes(p)


def test_overlap_first_wins_and_inconsistency_counted(R):
    r = R()
    a = b"A" * 16
    assert feed(r, _raw_frag(a, 0, True)) is None
    # overlaps 8..24 with different bytes in 8..16: first wins there
    assert feed(r, _raw_frag(b"B" * 16, 8, True)) is None
    whole = feed(r, _raw_frag(b"C" * 8, 24, False))
    assert whole is not None
    assert whole[20:] == b"A" * 16 + b"B" * 8 + b"C" * 8
    c = r.counters()
    assert c["overlaps"] == 1 and c["inconsistent_overlaps"] == 1


def test_consistent_overlap_not_inconsistent(R):
    r = R()
    data = bytes(range(32))
    feed(r, _raw_frag(data[:16], 0, True))
    feed(r, _raw_frag(data[8:24], 8, True))
    whole = feed(r, _raw_frag(data[24:], 24, False))
    assert whole[20:] == data
    assert r.counters()["overlaps"] == 1 and r.counters()["inconsistent_overlaps"] == 0


def test_oversize_rejected_and_max_size_accepted(R):
    r = R()
    # a last fragment that would end past 65,535 bytes: ping of death
    assert feed(r, _raw_frag(b"x" * 200, 65528 - 8 * 10, False)) is None
    assert r.counters()["oversize"] == 1 and r.counters()["in_flight"] == 0
    # exactly 65,535 bytes is legal
    dg = IP(src="192.0.2.9", dst="192.0.2.10", id=3, proto=17) / (b"y" * (65535 - 20))
    done = feed_all(R(), [bytes(f) for f in dg.fragment(1480)])
    assert len(done) == 1 and len(done[0]) == 65535


def test_tiny_df_unaligned_and_malformed(R):
    r = R()
    feed(r, _raw_frag(b"t" * 18, 0, True, ident=2, df=True))  # tiny, DF, not a multiple of 8
    c = r.counters()
    assert c["tiny_fragments"] == 1 and c["df_fragments"] == 1 and c["unaligned"] == 1
    feed(r, _raw_frag(b"z" * 4, 8, True, ident=3))  # 4 bytes, non-last: nothing left once aligned
    assert r.counters()["malformed"] == 1


def test_size_inconsistency(R):
    r = R()
    feed(r, _raw_frag(b"a" * 8, 24, False, ident=4))   # datagram ends at 32
    feed(r, _raw_frag(b"b" * 24, 16, True, ident=4))  # runs past 32: cut
    assert r.counters()["size_inconsistencies"] == 1
    whole = feed(r, _raw_frag(b"c" * 16, 0, True, ident=4))
    assert whole[20:] == b"c" * 16 + b"b" * 8 + b"a" * 8


def test_timeout(R):
    r = R(timeout_s=30)
    frags = v4_frags(v4_datagram())
    feed(r, frags[0], ts=0)
    assert r.counters()["in_flight"] == 1
    feed(r, frags[1], ts=31 * SEC)  # the datagram started 31 s ago: expired first
    c = r.counters()
    assert c["timeouts"] == 1 and c["in_flight"] == 1  # frags[1] started a new one
    r.expire(62 * SEC)
    assert r.counters()["timeouts"] == 2 and r.counters()["in_flight"] == 0


def test_datagram_limit_evicts_oldest(R):
    r = R(max_datagrams=10)
    for i in range(25):
        feed(r, v4_frags(v4_datagram(ident=i))[0])
    c = r.counters()
    assert c["in_flight"] == 10 and c["evictions"] == 15
    # the newest ones survive and still complete
    done = feed_all(r, v4_frags(v4_datagram(ident=24))[1:])
    assert len(done) == 1


def test_byte_limit_bounds_memory_under_flood(R):
    r = R(max_bytes=100_000, max_datagrams=100_000)
    rng = random.Random(1)
    for i in range(5000):
        payload = bytes(1000)
        feed(r, _raw_frag(payload, rng.randrange(1, 60) * 1000 // 8 * 8, True, ident=i & 0xFFFF,
                          proto=rng.choice([6, 17])), ts=i)
        assert r.counters()["bytes_in_flight"] <= 100_000 + 1000
    c = r.counters()
    assert c["evictions"] > 4000 and c["in_flight"] <= 101


def test_too_many_fragments(R):
    r = R(max_fragments=4)
    frags = v4_frags(v4_datagram(3000), 400)
    assert len(frags) > 5
    feed_all(r, frags)
    c = r.counters()
    assert c["too_many_fragments"] >= 1 and c["reassembled"] == 0


def test_limits_validated(R):
    for bad in ({"timeout_s": 0}, {"max_datagrams": 0}, {"max_bytes": 10}, {"max_fragments": 1}):
        with pytest.raises(ValueError):
            R(**bad)


def _v6_frags(ext: bool):
    payload = UDP(sport=5060, dport=5060) / (bytes(range(256)) * 12)
    base = IPv6(src="2001:db8::1", dst="2001:db8::2")
    if ext:
        base = base / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
    pkt = base / IPv6ExtHdrFragment(id=0x1234) / payload
    from scapy.layers.inet6 import fragment6
    return bytes(base / payload), [bytes(f) for f in fragment6(pkt, 1280)]


@pytest.mark.parametrize("ext", [False, True])
def test_ipv6_reassembly(R, ext):
    whole, frags = _v6_frags(ext)
    r = R()
    done = feed_all(r, list(reversed(frags)))
    assert len(done) == 1
    assert done[0] == whole
    d = D.Decoder(1)
    out = d.decode_one(done[0], 101)
    assert out[D.F_STATUS] == D.ST_L4 and out[D.F_DPORT] == 5060


def test_ipv6_overlap_discards_datagram(R):
    whole, frags = _v6_frags(False)
    r = R()
    feed(r, frags[0])
    f1 = IPv6(frags[1])
    f1[IPv6ExtHdrFragment].offset -= 1  # overlap the first fragment by 8 bytes
    assert feed(r, bytes(f1)) is None
    c = r.counters()
    assert c["ipv6_overlap_discards"] == 1 and c["in_flight"] == 0


def test_ipv4_and_ipv6_keys_are_distinct(R):
    """Same id, different protocol or address: separate datagrams (RFC 791 key)."""
    r = R()
    a = _raw_frag(b"a" * 8, 0, True, ident=9, proto=17)
    b = _raw_frag(b"b" * 8, 0, True, ident=9, proto=6)
    feed(r, a)
    feed(r, b)
    assert r.counters()["in_flight"] == 2 and r.counters()["overlaps"] == 0


def test_nested_reassembly_is_bounded():
    """An outer datagram whose payload is again a fragment (Suricata 8550 shape) ends."""
    from otus_agent.reassembly.datagrams import DatagramStage
    inner = _raw_frag(b"i" * 16, 0, True, ident=77)
    outer = IP(src="198.51.100.1", dst="198.51.100.2", id=77, proto=4) / inner
    frags = [bytes(f) for f in outer.fragment(24)]
    from array import array

    from otus_agent.capture.pcapfile import PacketBatch
    buf = b"".join(frags)
    offs, o = [], 0
    for f in frags:
        offs.append(o)
        o += len(f)
    n = len(frags)
    batch = PacketBatch(buf, n, array("q", offs), array("q", [len(f) for f in frags]), array("q", [0] * n),
                        array("q", range(n)), array("q", [101] * n))
    p = DatagramStage()
    p.feed(batch)
    c = p.reasm.counters()
    assert c["reassembled"] == 1 and c["fragments"] == n + 1 and c["in_flight"] == 1


