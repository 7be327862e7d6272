"""The flow table against tshark: packets and bytes per conversation match exactly.

Truth: tshark's per-stream fields (frame.len summed per tcp.stream / udp.stream and direction) and the
frame totals of ``-q -z conv,tcp`` / ``-z conv,udp`` (its byte column is rounded to kB, so bytes come
from the fields).
"""
from __future__ import annotations

import pathlib

import pytest

from otus_agent.flows import FlowConfig
from otus_agent.sim import flowgen

from ...conftest import corpus_path
from .tshark import otus_conversations, tshark_conv_frames, tshark_conversations, tshark_v6_form

CORPUS = [
    "pcap/sip/zeek-sip-junk-before-request.pcap",
    "pcap/sip/suricata-sip_compact_form.pcap",
    "pcap/sip/heplify-sip_ipv4_tcp.pcap",
    "pcap/sip/pcapplusplus-sip_reqs.pcap",
    "pcap/sip/zeek-sip-invalid-content-length.pcap",
    "pcap/sip/heplify-sip_ipv6_udp.pcap",
    "pcap/sip/sngrep-ipip.pcap",
    "pcap/sip/heplify-sip_ipv4_tcp_retrans.pcap",
    "pcap/sip/wireshark-sample-aaa.pcap",
    "pcap/sip/heplify-erspan_sip_ipv4_udp.pcapng",
    "pcap/sip/heplify-sip_tcp_websocket.pcap",
]
# IP fragments: tshark counts a datagram once, on the frame of the fragment that completes it, and so does
# the flow table (FlowConfig.reassemble_fragments). Left out: sv-security-8510-defrag-spray, whose tiny
# fragments the reassembler refuses by design (min_fragment), as the datagram stage does.
FRAGMENTED = [
    "pcap/sip/heplify-sip_ipv4_tcp_fragmented.pcap",
    "pcap/sip/sngrep-ipv6frag.pcap",
    "pcap/frag/zeek-fragmented-1.pcap",
    "pcap/frag/zeek-fragmented-2.pcap",
    "pcap/frag/zeek-fragmented-3.pcap",
    "pcap/frag/zeek-fragmented-4.pcap",
    "pcap/frag/zeek-fragmented-syn.pcap",
    "pcap/frag/pcapplusplus-frag_http_req.pcap",
    "pcap/frag/pcapplusplus-frag_with_padding.pcap",
    "pcap/frag/pcapplusplus-ip4_fragments.pcap",
    "pcap/frag/pcapplusplus-ip4_bad_fragment.pcap",
    "pcap/frag/dnscap-frags.pcap",
    "pcap/frag/sv-ipv4frags.pcap",
    "pcap/frag/sv-defrag-ipv4-tcp-syn.pcap",
    "pcap/frag/sv-defrag-eth-vlan-ipv4-tcp-syn.pcap",
    "pcap/frag/sv-defrag-ppp-ipv4-tcp-syn.pcap",
    "pcap/frag/sv-defrag-gre-ppp-max-ip-packet.pcap",
    "pcap/frag/sv-security-8550-nested-gre-frag.pcap",
]


# tshark itself has no idle timeout (and heplify-sip_ipv6_udp has timestamps years apart)
NO_TIMEOUTS = FlowConfig(tcp_syn_timeout_s=1e12, tcp_established_timeout_s=1e12, tcp_closed_timeout_s=1e12,
                         udp_timeout_s=1e12, icmp_timeout_s=1e12)


def _check(path: str, protos: tuple[str, ...] = ("tcp", "udp")) -> None:
    for proto in protos:
        ours, _ = otus_conversations(path, proto, NO_TIMEOUTS)
        assert ours == tshark_conversations(path, proto), proto
        frames = sorted((a, b, pab + pba) for a, b, pab, _, pba, _ in ours)
        assert frames == tshark_v6_form(tshark_conv_frames(path, proto)), proto


@pytest.mark.corpus
@pytest.mark.parametrize("rel", CORPUS, ids=lambda r: pathlib.Path(r).stem)
def test_corpus_conversations_match_tshark(rel: str) -> None:
    _check(str(corpus_path(rel)))


@pytest.mark.corpus
@pytest.mark.parametrize("rel", FRAGMENTED, ids=lambda r: pathlib.Path(r).stem)
def test_corpus_fragmented_conversations_match_tshark(rel: str) -> None:
    _check(str(corpus_path(rel)))


@pytest.mark.corpus
def test_corpus_rtp_capture_tcp_matches_tshark() -> None:
    """tshark 4.0 splits the SNMP conversations of this capture (its SNMP dissector keys them) into several
    udp.stream values of the same five-tuple, with no gap or packet to split on; only TCP is compared."""
    _check(str(corpus_path("pcap/sip/heplify-rtp_rtcp_sip_ipv4_udp.pcap")), ("tcp",))


def test_generated_mixed_conversations_match_tshark(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "mixed.pcap")
    flowgen.mixed_trace(seed=7).write(path)
    _check(path)


def test_generated_tcp_states_match_tshark(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "states.pcap")
    flowgen.tcp_states_trace()[0].write(path)
    _check(path)
