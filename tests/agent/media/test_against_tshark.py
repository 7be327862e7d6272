"""Every stream's packets, lost, max delta, mean and max jitter agree with ``tshark -q -z rtp,streams``.

Counts must match exactly; times within 1% or 0.01 ms (tshark prints 3 decimals).  Truth comes
from tshark 4.0 run on the same file: generated captures with known loss, duplicates,
reordering, jitter, sequence/timestamp wrap and RFC 4733 events, and every corpus capture
with RTP (MANIFEST: heplify-rtp_rtcp_sip_ipv4_udp, heplify-sip_ipv4_tcp, wireshark-sample-aaa).
"""
from __future__ import annotations

import pytest

from otus_agent.media.stage import MediaConfig
from otus_agent.sim.rtpgen import RtpGenSpec, generate

from ...conftest import corpus_path
from .helpers import TSHARK, final_by_key, run_pcap, tshark_streams

needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed (scripts/bootstrap installs it)")

CORPUS_RTP = ["pcap/sip/heplify-rtp_rtcp_sip_ipv4_udp.pcap", "pcap/sip/heplify-sip_ipv4_tcp.pcap",
              "pcap/sip/wireshark-sample-aaa.pcap"]
# tshark learns this stream from MGCP's SDP, which Otus does not parse: only the heuristic finds it
MGCP_STREAM = ("200.57.7.202", 30000, "200.57.7.196", 40362, 0x2E3D)

SPECS = {
    "impaired": RtpGenSpec(calls=3, packets=600, seed=3),
    "heavy": RtpGenSpec(calls=2, packets=800, seed=7, loss=0.08, duplicate=0.03, reorder=0.05, jitter_ms=15),
    "pcma_no_events": RtpGenSpec(calls=2, packets=400, seed=11, payload_type=8, telephone_events=0, wrap=False),
    "clean": RtpGenSpec(calls=1, packets=300, seed=5, loss=0, duplicate=0, reorder=0, jitter_ms=0),
    "ipv6": RtpGenSpec(calls=2, packets=500, seed=13, ipv6=True),
    # through a proxy and a media relay: both legs' SDP, one SSRC on two streams each way
    "proxy_relay": RtpGenSpec(calls=3, packets=400, seed=17, proxy=True),
    # early media: RTP from 1 ms after the INVITE, before the answer; the offer alone announces both ways
    "early_media": RtpGenSpec(calls=3, packets=400, seed=19, media_after_ms=1),
}


def close(a: float, b: float) -> bool:
    return abs(a - b) <= max(0.01, 0.01 * abs(b)) + 0.0005   # + half of tshark's last printed digit


def assert_agree(records: list[dict], rows: list[dict], skip: tuple = ()) -> int:
    got = final_by_key(records)
    checked = 0
    for t in rows:
        k = (t["src_ip"], t["src_port"], t["dst_ip"], t["dst_port"], t["ssrc"])
        if k in skip:
            continue
        g = got.get(k)
        assert g is not None, f"tshark has a stream Otus did not report: {k}"
        assert (g["packets"], g["lost"]) == (t["packets"], t["lost"]), k
        for f in ("max_delta_ms", "mean_jitter_ms", "max_jitter_ms"):
            assert close(g[f], t[f]), (k, f, g[f], t[f])
        checked += 1
    assert checked == len(rows) - len(skip)
    return checked


@needs_tshark
@pytest.mark.parametrize("name", sorted(SPECS))
def test_generated_capture_matches_tshark(tmp_path, name):
    path = tmp_path / f"{name}.pcap"
    with open(path, "wb") as f:
        wl = generate(f, SPECS[name])
    records, stage, _ = run_pcap(path)
    rows = tshark_streams(path)
    assert len(rows) == len(wl.streams)
    assert assert_agree(records, rows) == len(wl.streams)
    assert len([r for r in records if r["final"]]) == len(wl.streams)


@needs_tshark
def test_generated_truth_beyond_tshark(tmp_path):
    """What tshark does not print, against the generator's own truth."""
    path = tmp_path / "truth.pcap"
    with open(path, "wb") as f:
        wl = generate(f, RtpGenSpec(calls=3, packets=600, seed=3))
    records, stage, _ = run_pcap(path)
    got = final_by_key(records)
    for s in wl.streams:
        r = got[(s.src_ip, s.src_port, s.dst_ip, s.dst_port, s.ssrc)]
        assert r["call_id"] == s.call_id
        assert r["duplicates"] == s.duplicated
        assert r["packets"] == s.sent + s.duplicated
        assert r["telephone_events"] == s.telephone_events
        # tshark's lost: what was dropped minus what was duplicated (expected - received)
        assert r["lost"] == s.dropped - s.duplicated
        assert r["end_reason"] == "rtcp_bye"
        assert r["cname"] and r["cname"].startswith("rtpgen")
        # rtpgen's receivers answer 1 ms after the SR passes and report a DLSR 2 ms short: RTT 3 ms
        assert r["rtt_ms"] == pytest.approx(3.0, abs=0.05)
        assert r["rtcp_cumulative_lost"] is not None
        assert r["direction"] == ("to_callee" if s.src_ip.startswith("10.1.") else "to_caller")
        assert 1.0 <= r["mos"] <= 4.5
    assert sum(s.reordered for s in wl.streams) > 0
    assert any(r["out_of_order"] for r in got.values())
    assert stage.counters()["streams_active"] == 0


@needs_tshark
@pytest.mark.corpus
@pytest.mark.parametrize("rel", CORPUS_RTP)
def test_corpus_matches_tshark(rel):
    path = corpus_path(rel)
    records, _, _ = run_pcap(path)
    rows = tshark_streams(path)
    skip = tuple(k for k in (MGCP_STREAM,) if any((t["src_ip"], t["src_port"], t["dst_ip"], t["dst_port"],
                                                  t["ssrc"]) == k for t in rows))
    assert assert_agree(records, rows, skip) >= 1


@needs_tshark
@pytest.mark.corpus
def test_corpus_heuristic_matches_tshark_heuristic():
    """With the heuristic on, Otus finds the same five streams as tshark's rtp.heuristic_rtp."""
    path = corpus_path(CORPUS_RTP[0])
    records, stage, _ = run_pcap(path, MediaConfig(heuristic=True))
    rows = tshark_streams(path, "-o", "rtp.heuristic_rtp:TRUE")
    assert len(rows) == 5
    assert assert_agree(records, rows) == 5
    assert stage.counters()["discovery_heuristic_streams"] == 3
    assert final_by_key(records)[MGCP_STREAM]["heuristic"] is True


def test_pure_and_compiled_streams_agree(tmp_path):
    """The pure-Python source of rtp_cy (what runs without a compiler) gives the same statistics."""
    from otus_agent.media import rtp_cy
    from otus_agent.sim.rtpgen import RtpGenSpec as Spec

    from ...conftest import load_pure
    pure = load_pure("media/rtp_cy.py", "otus_pure_rtp_cy")
    path = tmp_path / "p.pcap"
    with open(path, "wb") as f:
        generate(f, Spec(calls=2, packets=400, seed=9, loss=0.05, duplicate=0.02, reorder=0.03))
    from otus_agent.capture.pcapfile import open_capture
    from otus_agent.reassembly.datagrams import DatagramStage
    pkts: dict = {}
    with open_capture(path) as r:
        DatagramStage(sink=lambda d: pkts.setdefault((d.src_port, d.dst_port), []).append((d.ts_ns, d.payload))
                      if d.src_port >= 40000 and d.src_port % 2 == 0 and d.dst_port % 2 == 0 else None
                      ).run(r.batches())
    fields = ("packets", "octets", "expected", "lost", "duplicates", "out_of_order", "seq_errors", "max_delta",
              "mean_jitter", "max_jitter", "markers", "ts_jumps", "te_events", "payload_types")
    assert len(pkts) == 4
    for flow in pkts.values():
        ssrc = int.from_bytes(flow[0][1][8:12], "big")
        a = rtp_cy.RtpStream(ssrc, {0: "PCMU/8000", 101: "telephone-event/8000"})
        b = pure.RtpStream(ssrc, {0: "PCMU/8000", 101: "telephone-event/8000"})
        for ts, p in flow:
            assert a.add_packet(ts, p) == b.add_packet(ts, p) == 0
        assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]


def test_rtpgen_command_line(tmp_path, capsys):
    from otus_agent.sim.rtpgen import main
    out = tmp_path / "cli.pcap"
    assert main([str(out), "--calls", "2", "--packets", "50", "--loss", "0", "--wrap", "false"]) == 0
    assert "2 calls, 4 streams" in capsys.readouterr().out and out.stat().st_size > 0
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing" / "x.pcap")])
