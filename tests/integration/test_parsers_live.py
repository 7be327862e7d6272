"""Live: a daemon task with ``parsers: [sip, rtp, flow, dns]`` on a veth in a namespace, then a scrape.

Namespace a sends an INVITE with SDP, the RTP it announced, and a DNS query to b's address; the
daemon in b captures on its veth end with the default filter (widened for those parsers) and its
/metrics must show the media, flow, DNS and interface counters of what was sent.
"""
from __future__ import annotations

import json
import os
import time

import pytest

from ..netns import require_root_and, veth_pair
from .test_daemon import DaemonRun, otus, wait_for

pytestmark = pytest.mark.netns

RTP_PACKETS = 60
RTP_PORT_A, RTP_PORT_B = 40000, 30000

INVITE = ("INVITE sip:b@{b} SIP/2.0\r\nVia: SIP/2.0/UDP {a}:5060;branch=z9hG4bKlive1\r\nMax-Forwards: 70\r\n"
          "From: <sip:a@{a}>;tag=la\r\nTo: <sip:b@{b}>\r\nCall-ID: live-media-1\r\nCSeq: 1 INVITE\r\n"
          "Contact: <sip:a@{a}:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {n}\r\n\r\n{sdp}")
SDP = ("v=0\r\no=a 1 1 IN IP4 {a}\r\ns=-\r\nc=IN IP4 {a}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"
       "a=rtpmap:0 PCMU/8000\r\n")

SENDER = """
import socket, struct, sys, time
a, b = sys.argv[1], sys.argv[2]
sdp = {sdp!r}.format(a=a, port={pa})
sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sip.bind((a, 5060))
sip.sendto({invite!r}.format(a=a, b=b, n=len(sdp), sdp=sdp).encode(), (b, 5060))
time.sleep(0.2)
rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rtp.bind((a, {pa}))
for i in range({count}):   # bounded: {count} packets, 20 ms apart
    rtp.sendto(struct.pack("!BBHII", 0x80, 0, 1000 + i, 160 * i, 0xABCD) + b"\\xff" * 160, (b, {pb}))
    time.sleep(0.02)
q = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\\x07example\\x03com\\x00" + struct.pack("!HH", 1, 1)
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(q, (b, 53))
""".format(sdp=SDP, invite=INVITE, pa=RTP_PORT_A, pb=RTP_PORT_B, count=RTP_PACKETS)


def test_media_flow_dns_and_interface_metrics_after_a_live_capture(tmp_path):
    require_root_and()
    with veth_pair("pm1", subnet=86) as p:
        d = DaemonRun(tmp_path, p.ns_b, 19800 + os.getpid() % 150)
        d.start()
        try:
            out = tmp_path / "m.jsonl"
            task = tmp_path / "m.yaml"
            task.write_text(f"id: m\ninterface: {p.if_b}\nparsers: [sip, rtp, flow, dns]\n"
                            f"media:\n  interim_s: 1\nreporters:\n  - type: file\n    path: {out}\n")
            otus(d.sock, "task", "create", "-f", str(task))
            time.sleep(0.5)
            p.run(p.ns_a, "python3", "-c", SENDER, p.ip_a, p.ip_b)
            want = (f'otus_media_rtp_packets_total{{task="m"}} {RTP_PACKETS}.0',
                    'otus_dns_messages_total{kind="query",task="m"} 1.0',
                    'otus_media_streams_total{task="m"} 1.0')
            m = wait_for(lambda: (lambda t: t if all(w in t for w in want) else None)(d.metrics()), timeout=20)
            assert 'otus_media_streams_active{task="m"} 1.0' in m
            assert 'otus_flows_created_total{task="m"}' in m
            assert f'otus_interface_receive_packets_total{{interface="{p.if_b}"}}' in m
            recs = [json.loads(x) for x in out.read_text().splitlines()]
            kinds = {r["type"] for r in recs}
            assert {"sip", "dns"} <= kinds, kinds
            interim = wait_for(lambda: [json.loads(x) for x in out.read_text().splitlines()
                                        if '"type":"media"' in x], timeout=10)
            assert interim[0]["call_id"] == "live-media-1" and interim[0]["packets"] <= RTP_PACKETS
        finally:
            d.stop()
