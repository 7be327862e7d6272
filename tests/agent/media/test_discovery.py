"""SDP offer/answer -> expected addresses, from SIP record dicts shaped as sip/records.py makes them."""
from __future__ import annotations

from otus_agent.media.discovery import MediaDiscovery


def rec(method=None, status=None, sdp=None, src="10.0.0.1", dst="10.0.0.2", cid="c1", ftag="a", ttag=None, ts=0):
    return {"v": 1, "type": "sip", "ts": ts, "src_ip": src, "src_port": 5060, "dst_ip": dst, "dst_port": 5060,
            "transport": "udp", "method": method, "status_code": status, "call_id": cid, "from_tag": ftag,
            "to_tag": ttag, "sdp": sdp}


def sdp(conn="10.0.0.1", port=4000, media_conn=None, **attrs):
    m = {"type": "audio", "port": port, "proto": "RTP/AVP", "payloads": ["0", "101"],
         "rtpmap": {"0": "PCMU/8000", "101": "telephone-event/8000"}}
    if media_conn:
        m["connection"] = media_conn
    m.update(attrs)
    out = {"media": [m]}
    if conn:
        out["connection"] = conn
    return out


def test_offer_answer_both_sides_with_rtcp_port_plus_one():
    d = MediaDiscovery()
    d.on_sip_record(rec("INVITE", sdp=sdp("10.0.0.1", 4000)))
    d.on_sip_record(rec(None, 200, sdp("10.0.0.2", 6000), src="10.0.0.2", dst="10.0.0.1", ttag="b"))
    e = d.expected
    assert set(e) == {("10.0.0.1", 4000), ("10.0.0.1", 4001), ("10.0.0.2", 6000), ("10.0.0.2", 6001)}
    assert e[("10.0.0.1", 4000)].side == "caller" and not e[("10.0.0.1", 4000)].rtcp
    assert e[("10.0.0.2", 6001)].side == "callee" and e[("10.0.0.2", 6001)].rtcp
    assert e[("10.0.0.2", 6000)].rtpmap == {0: "PCMU/8000", 101: "telephone-event/8000"}


def test_media_level_connection_wins_and_every_m_line_counts():
    d = MediaDiscovery()
    s = sdp("10.0.0.1", 4000, media_conn="192.0.2.9")
    s["media"].append({"type": "video", "port": 4002, "proto": "RTP/AVP", "payloads": ["96"],
                       "rtpmap": {"96": "H264/90000"}})
    d.on_sip_record(rec("INVITE", sdp=s))
    assert ("192.0.2.9", 4000) in d.expected and ("10.0.0.1", 4000) not in d.expected
    assert d.expected[("10.0.0.1", 4002)].media == "video"


def test_reinvite_and_update_replace_that_side_only():
    d = MediaDiscovery()
    d.on_sip_record(rec("INVITE", sdp=sdp("10.0.0.1", 4000)))
    d.on_sip_record(rec(None, 200, sdp("10.0.0.2", 6000), src="10.0.0.2", dst="10.0.0.1", ttag="b"))
    d.on_sip_record(rec("INVITE", sdp=sdp("10.0.0.1", 4100), ttag="b"))                   # re-INVITE
    assert ("10.0.0.1", 4000) not in d.expected and ("10.0.0.1", 4100) in d.expected
    d.on_sip_record(rec("UPDATE", sdp=sdp("10.0.0.2", 6200), src="10.0.0.2", dst="10.0.0.1", ftag="b", ttag="a"))
    assert ("10.0.0.2", 6000) not in d.expected and ("10.0.0.2", 6200) in d.expected
    assert ("10.0.0.1", 4100) in d.expected


def test_hold_zero_address_withdraws_and_sendonly_marks_held():
    d = MediaDiscovery()
    d.on_sip_record(rec("INVITE", sdp=sdp("10.0.0.1", 4000)))
    d.on_sip_record(rec("INVITE", sdp=sdp("0.0.0.0", 4000), ttag="b"))
    assert not d.expected and d.counters["hold_zero_address"] == 1
    d.on_sip_record(rec("INVITE", sdp=sdp("10.0.0.1", 4000, direction="sendonly"), ttag="b"))
    assert d.expected[("10.0.0.1", 4000)].held
    s = sdp("10.0.0.1", 4000)
    s["direction"] = "inactive"                       # session-level attribute
    d.on_sip_record(rec("INVITE", sdp=s, ttag="b"))
    assert d.expected[("10.0.0.1", 4000)].held and d.counters["hold_direction"] == 2


def test_rtcp_attribute_and_rtcp_mux():
    d = MediaDiscovery()
    d.on_sip_record(rec("INVITE", sdp=sdp("10.0.0.1", 4000, rtcp="5005 IN IP4 10.0.0.9")))
    assert d.expected[("10.0.0.9", 5005)].rtcp and ("10.0.0.1", 4001) not in d.expected
    d.on_sip_record(rec(None, 200, sdp("10.0.0.2", 6000, rtcp_mux=True), src="10.0.0.2", dst="10.0.0.1", ttag="b"))
    assert d.expected[("10.0.0.2", 6000)].mux and ("10.0.0.2", 6001) not in d.expected


def test_rejected_m_line_port_zero_and_non_sdp_records():
    d = MediaDiscovery()
    d.on_sip_record(rec("INVITE", sdp=sdp("10.0.0.1", 0)))
    d.on_sip_record(rec("OPTIONS", cid="other"))
    d.on_sip_record({"type": "call", "call_id": "c1"})
    assert not d.expected and d.counters["media_rejected_or_no_address"] == 1
    assert "other" not in d.calls


def test_endpoint_table_full_refuses_and_counts():
    d = MediaDiscovery(max_endpoints=3)
    d.on_sip_record(rec("INVITE", sdp=sdp("10.0.0.1", 4000), cid="a"))
    d.on_sip_record(rec("INVITE", sdp=sdp("10.0.0.3", 4000), cid="b"))
    assert len(d.expected) == 3 and d.counters["endpoints_refused_full"] == 1
    d.end_call("a")
    assert len(d.expected) == 1 and "a" not in d.calls


def test_heuristic_off_by_default_and_bounded():
    assert MediaDiscovery().heuristic is False
    d = MediaDiscovery(heuristic=True, max_candidates=1)
    pkt = bytes((0x80, 0)) + (1).to_bytes(2, "big") + bytes(4) + (9).to_bytes(4, "big")
    assert d.heuristic_match(0, "1.1.1.1", 1, "2.2.2.2", 2, pkt) is None
    assert d.heuristic_match(0, "1.1.1.1", 3, "2.2.2.2", 4, pkt) is None
    assert d.counters["heuristic_refused_full"] == 1
    found = None
    for s in range(2, 5):
        found = d.heuristic_match(s, "1.1.1.1", 1, "2.2.2.2", 2, pkt[:2] + s.to_bytes(2, "big") + pkt[4:])
    assert found is not None and [p[1] for p in found] == [1, 2, 3, 4]
    assert d.counters["heuristic_streams"] == 1
    rtcp = bytes((0x80, 200)) + bytes(10)            # payload type 72: RTCP SR, never RTP
    assert d.heuristic_match(0, "1.1.1.1", 5, "2.2.2.2", 6, rtcp) is None and len(d.candidates) == 0


def test_media_bpf_passes_exactly_rtp_and_rtcp(tmp_path):
    """The static live filter for the media socket, applied by tcpdump (libpcap) to a generated capture."""
    import os
    import shutil
    import subprocess

    import pytest

    from otus_agent.media.discovery import MEDIA_BPF
    from otus_agent.sim.rtpgen import RtpGenSpec, generate
    tcpdump = shutil.which("tcpdump") or ("/usr/sbin/tcpdump" if os.path.exists("/usr/sbin/tcpdump") else None)
    if tcpdump is None:
        pytest.skip("tcpdump not installed (scripts/bootstrap installs it)")
    path = tmp_path / "f.pcap"
    with open(path, "wb") as f:
        wl = generate(f, RtpGenSpec(calls=2, packets=200, seed=4))
    out = subprocess.run([tcpdump, "-nn", "-r", str(path), MEDIA_BPF], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    assert len(out.splitlines()) == wl.rtp_packets + wl.rtcp_packets   # and none of the SIP


def test_sdp_addresses_normalised_as_the_decoder_writes_them_and_names_counted():
    d = MediaDiscovery()
    d.on_sip_record(rec("INVITE", sdp=sdp("FD00:0:0:0::0001", 4000)))
    assert ("fd00::1", 4000) in d.expected and ("fd00::1", 4001) in d.expected
    d.on_sip_record(rec("INVITE", sdp=sdp("media.example.com", 4000), cid="c2"))
    assert d.counters["connection_not_an_address"] == 1
    d.on_sip_record(rec("INVITE", sdp=sdp("0:0::0", 4000), cid="c3"))
    assert d.counters["hold_zero_address"] == 1


def test_the_sdp_attributes_reach_discovery_from_parsed_bodies():
    """a=rtcp:, a=rtcp-mux and a=sendonly as the SIP record carries them (sdp_cy's scanner, both emitters),
    not hand-made dicts: RTCP on the announced port, on the RTP port when muxed, a held side marked."""
    from otus_agent.sip.sdp_cy import parse_sdp
    offer = parse_sdp(b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
                      b"m=audio 4000 RTP/AVP 0\r\na=rtcp:5005 IN IP4 10.0.0.7\r\na=sendonly\r\n")
    answer = parse_sdp(b"v=0\r\no=- 2 2 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
                       b"m=audio 6000 RTP/AVP 0\r\na=rtcp-mux\r\na=recvonly\r\n")
    assert offer["media"][0]["rtcp"] == "5005 IN IP4 10.0.0.7" and offer["media"][0]["direction"] == "sendonly"
    assert answer["media"][0]["rtcp_mux"] is True
    d = MediaDiscovery()
    d.on_sip_record(rec("INVITE", sdp=offer))
    d.on_sip_record(rec(None, 200, answer, src="10.0.0.2", dst="10.0.0.1", ttag="b"))
    e = d.expected
    assert set(e) == {("10.0.0.1", 4000), ("10.0.0.7", 5005), ("10.0.0.2", 6000)}
    assert e[("10.0.0.7", 5005)].rtcp and e[("10.0.0.2", 6000)].mux
    assert e[("10.0.0.1", 4000)].held and not e[("10.0.0.2", 6000)].held
