"""Conformance on third-party fragment captures (../shared/corpus/pcap/frag).

Upstream expectations come from suricata-verify (test.yaml), Zeek (baselines),
PcapPlusPlus (hex dumps) and dnscap (gold output); see the corpus MANIFEST.
Where Otus deliberately differs from an upstream tool, the test says so.
"""
from __future__ import annotations

import base64
import random

import pytest
import yaml

from otus_agent.capture.pcapfile import open_capture
from otus_agent.decode import decoder as D
from otus_agent.reassembly.datagrams import Datagram, DatagramConfig, DatagramStage
from otus_agent.reassembly.ipfrag_cy import FragmentReassembler

from ...conftest import corpus_path

pytestmark = pytest.mark.corpus
FRAG = "pcap/frag/"


def frames(rel: str) -> list[tuple[bytes, int, int]]:
    """(packet bytes, link type, ts) of every record."""
    out = []
    with open_capture(corpus_path(rel)) as r:
        for b in r.batches():
            for i in range(b.n):
                out.append((b.packet(i), b.links[i], b.ts_ns[i]))
    return out


def reassemble(pkts, **limits) -> tuple[FragmentReassembler, list[bytes]]:
    """Feed fragments to a reassembler; return whole frames (first fragment's link header + datagram)."""
    dec = D.Decoder(1)
    inner = D.Decoder(1)
    ra = FragmentReassembler(**limits)
    whole = []
    for data, link, ts in pkts:
        out = dec.decode_one(data, link)
        prefix = data[:out[D.F_L3OFF]]
        for _ in range(3):
            if out[D.F_STATUS] != D.ST_FRAGMENT:
                break
            r = ra.add(data, out[D.F_L3OFF], out[D.F_L3END], out[D.F_IPVER], out[D.F_FRAGHDR], ts)
            if r is None:
                break
            whole.append(prefix + r)
            data, prefix = r, prefix
            out = inner.decode_one(r, 101)
    return ra, whole


def run_pipeline(rel: str, **cfg) -> tuple[DatagramStage, list[Datagram]]:
    got: list[Datagram] = []
    p = DatagramStage(DatagramConfig(**cfg), got.append)
    with open_capture(corpus_path(rel)) as r:
        p.run(r.batches())
    return p, got


def sv_packet(name: str) -> bytes:
    y = yaml.safe_load(corpus_path(f"{FRAG}expected/{name}.test.yaml").read_text())
    return base64.b64decode(y["checks"][0]["filter"]["match"]["packet"])


@pytest.mark.parametrize("name", ["sv-defrag-ipv4-tcp-syn", "sv-defrag-eth-vlan-ipv4-tcp-syn",
                                  "sv-defrag-ppp-ipv4-tcp-syn"])
def test_suricata_defrag_exact_bytes(name):
    ra, whole = reassemble(frames(f"{FRAG}{name}.pcap"))
    assert whole == [sv_packet(name)]
    p, got = run_pipeline(f"{FRAG}{name}.pcap")
    assert len(got) == 1 and got[0].transport == "tcp" and got[0].reassembled


def test_suricata_max_ip_packet_through_gre_ppp():
    """1024 fragments inside GRE/PPP rebuild a 65,535-byte datagram (the maximum, accepted)."""
    ra, whole = reassemble(frames(f"{FRAG}sv-defrag-gre-ppp-max-ip-packet.pcap"))
    assert len(whole) == 1
    p, got = run_pipeline(f"{FRAG}sv-defrag-gre-ppp-max-ip-packet.pcap")
    assert len(got) == 1
    assert got[0].transport == "udp" and len(got[0].payload) > 65000  # sid 1: dsize > 65000
    assert p.reasm.counters()["oversize"] == 0


def test_suricata_8550_nested_gre_fragment_no_hang():
    p, _ = run_pipeline(f"{FRAG}sv-security-8550-nested-gre-frag.pcap")
    c = p.reasm.counters()
    assert c["reassembled"] == 1 and c["fragments"] == 3


def test_suricata_8510_defrag_spray_no_crash():
    p, _ = run_pipeline(f"{FRAG}sv-security-8510-defrag-spray.pcap", frag_max_datagrams=8)
    assert p.summary()["packets"] == 16384
    c = p.reasm.counters()
    assert c["in_flight"] <= 8 and c["fragments"] == 16384


def test_suricata_ipv4frags_icmp():
    p, _ = run_pipeline(f"{FRAG}sv-ipv4frags.pcap")
    assert p.reasm.counters()["reassembled"] == 1
    assert p.inner.counters()["icmp"] == 1 and p.decoder.counters()["icmp"] == 1


def pcpp_hex(name: str) -> bytes:
    return bytes.fromhex(corpus_path(f"{FRAG}expected/{name}").read_text().strip())


@pytest.mark.parametrize("order", ["as-captured", "swapped", "last-first", "reversed", "shuffled"])
def test_pcapplusplus_http_request_any_order(order):
    pkts = frames(f"{FRAG}pcapplusplus-frag_http_req.pcap")
    if order == "swapped":
        pkts[1], pkts[2] = pkts[2], pkts[1]
    elif order == "last-first":
        pkts = pkts[-1:] + pkts[:-1]
    elif order == "reversed":
        pkts.reverse()
    elif order == "shuffled":
        random.Random(11).shuffle(pkts)
    ra, whole = reassemble(pkts)
    assert whole == [pcpp_hex("pcapplusplus-frag_http_req_reassembled.txt")]


def test_pcapplusplus_interleaved_datagrams():
    ra, whole = reassemble(frames(f"{FRAG}pcapplusplus-ip4_fragments.pcap"))
    for k in (1, 4, 6):
        assert pcpp_hex(f"pcapplusplus-ip4_fragments_packet{k}.txt") in whole
    p, _ = run_pipeline(f"{FRAG}pcapplusplus-ip4_fragments.pcap")
    assert p.decoder.counters()["udp"] == 3  # the NON_FRAGMENT packets pass straight through


def test_pcapplusplus_padding_not_copied():
    ra, whole = reassemble(frames(f"{FRAG}pcapplusplus-frag_with_padding.pcap"))
    assert whole == [pcpp_hex("pcapplusplus-frag_with_padding_defragmented.dat")]


def test_pcapplusplus_bad_fragment_counted_not_reassembled():
    """PcapPlusPlus reports MALFORMED_FRAGMENT; Otus drops it at decode: its IPv4 total
    length (3841) exceeds the 60-byte frame, counted as drop_ipv4_truncated."""
    p, got = run_pipeline(f"{FRAG}pcapplusplus-ip4_bad_fragment.pcap")
    assert p.decoder.drops() == {"ipv4_truncated": 1}
    assert p.reasm.counters()["reassembled"] == 0 and not got


def test_dnscap_82_messages_with_64_fragment_limit():
    """dnscap test3: 495 fragments carry 82 DNS messages (max 64 fragments per packet)."""
    p, got = run_pipeline(f"{FRAG}dnscap-frags.pcap", frag_max_fragments=64)
    assert len(got) == 82
    assert all(d.transport == "udp" and 53 in (d.src_port, d.dst_port) for d in got)
    gold = corpus_path(f"{FRAG}expected/dnscap-dns.gold").read_text()
    ids = [int(line.split(",")[2]) for line in gold.splitlines() if line.strip().startswith("dns ")]
    assert len(ids) == 82
    assert [int.from_bytes(d.payload[:2], "big") for d in got] == ids
    # the unfragmented reference capture carries the same DNS payloads
    ref = []
    with open_capture(corpus_path(f"{FRAG}expected/dnscap-dns-unfragmented-reference.pcap")) as r:
        pr = DatagramStage(sink=ref.append)
        pr.run(r.batches())
    assert [d.payload for d in got] == [d.payload for d in ref]


def test_zeek_weirds_are_counted():
    """Zeek's weird names map onto Otus counters:
    excessively_small_fragment -> tiny_fragments, fragment_size_inconsistency ->
    size_inconsistencies, fragment_inconsistency -> inconsistent_overlaps,
    fragment_overlap -> overlaps, fragment_with_DF -> df_fragments."""
    ra1, _ = reassemble(frames(f"{FRAG}zeek-fragmented-1.pcap"))
    c = ra1.counters()
    assert c["tiny_fragments"] >= 1 and c["size_inconsistencies"] >= 1 and c["inconsistent_overlaps"] >= 1
    ra2, whole2 = reassemble(frames(f"{FRAG}zeek-fragmented-2.pcap"))
    c = ra2.counters()
    assert c["tiny_fragments"] == 2 and c["overlaps"] >= 1 and not whole2  # gap never filled
    ra3, whole3 = reassemble(frames(f"{FRAG}zeek-fragmented-3.pcap"))
    assert ra3.counters()["df_fragments"] == 5 and not whole3
    ra4, _ = reassemble(frames(f"{FRAG}zeek-fragmented-4.pcap"))
    c = ra4.counters()
    assert c["tiny_fragments"] >= 2 and c["inconsistent_overlaps"] >= 1


def test_zeek_fragmented_syn_header():
    """Baseline: reassembled SYN 192.168.1.100:12345 -> 10.0.0.5:80, IP len 60, TCP hl 40, seq 1000."""
    p, got = run_pipeline(f"{FRAG}zeek-fragmented-syn.pcap")
    assert len(got) == 1
    d = got[0]
    assert (d.src_ip, d.src_port, d.dst_ip, d.dst_port) == ("192.168.1.100", 12345, "10.0.0.5", 80)
    assert d.tcp_seq == 1000 and d.tcp_flags == 2 and d.payload == b""


def test_no_corpus_file_raises():
    """Every capture in the corpus decodes without an exception escaping."""
    root = corpus_path("pcap")
    for path in sorted(root.rglob("*.pcap*")):
        p = DatagramStage(sink=lambda d: None)
        with open_capture(path) as r:
            p.run(r.batches())
        assert p.summary()["packets"] > 0, path
