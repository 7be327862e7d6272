"""SIP conformance on the third-party corpus.

- RFC 4475 / RFC 5118 torture messages, scored on the MANIFEST's expected column;
- the same messages as UDP packets (torture-udp.pcap) against tshark's fields;
- 15 real captures against tshark 4.0.17 field dumps (truth/*.csv);
- Zeek's baselines for junk before a request and bad Content-Length.
"""
from __future__ import annotations

import csv
import json
from collections import Counter

import jsonschema
import pytest

from otus_agent.capture.pcapfile import open_capture
from otus_agent.reassembly.datagrams import DatagramStage
from otus_agent.sip import message_cy as sip
from otus_agent.sip.framing import SipConfig, SipStage

from ...conftest import ROOT, corpus_path

pytestmark = pytest.mark.corpus

# Where Otus's verdict differs from the MANIFEST's expected column, and why.
DIFFERENT = {
    # RFC 4475 3.3.1 calls it syntactically well-formed but missing To, From, Call-ID and
    # CSeq; without Call-ID and CSeq a record cannot be correlated, so Otus reports it as
    # an error record (missing_call_id, missing_from, missing_to).
    "sip-torture/invalid/insuf.msg": "malformed",
}
SCHEMA = json.loads((ROOT / "schemas" / "sip-record.v1.json").read_text())


def manifest() -> list[dict]:
    path = corpus_path("MANIFEST.tsv")
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def torture_rows() -> list[dict]:
    return [r for r in manifest() if r["file"].startswith("sip-torture/") and r["file"].endswith(".msg")
            and r["category"] in ("sip-torture-valid", "sip-torture-invalid")]


def test_torture_scoring():
    rows = torture_rows()
    assert len(rows) == 61
    score = 0
    wrong = {}
    for r in rows:
        m = sip.parse(corpus_path(r["file"]).read_bytes())
        expected = "malformed" if r["expected"].startswith("malformed") else "well-formed"
        got = "malformed" if m.defects else "well-formed"
        want = DIFFERENT.get(r["file"], expected)
        if got == want:
            score += 1
        else:
            wrong[r["file"]] = (want, got, m.defects)
    assert not wrong, wrong
    assert score == len(rows)


def test_torture_fields_match_tshark():
    """Well-formed torture messages: method/status, Call-ID and CSeq method as tshark reads them."""
    truth = {row["name"]: row for row in csv.DictReader(open(corpus_path("truth/torture.csv"), newline=""))}
    checked = 0
    for r in torture_rows():
        name = r["file"].rsplit("/", 1)[1][:-4]
        t = truth.get(name)
        if t is None or t["tshark_sip"] != "yes" or t["rfc_syntax"] != "well-formed":
            continue
        m = sip.parse(corpus_path(r["file"]).read_bytes())
        if t["tshark_method"]:
            assert m.method == t["tshark_method"], name
        if t["tshark_status"]:
            assert str(m.status_code) == t["tshark_status"], name
        if t["tshark_call_id"]:
            assert m.call_id == t["tshark_call_id"], name
        if t["tshark_cseq_method"]:
            assert m.cseq_method == t["tshark_cseq_method"], name
        checked += 1
    assert checked >= 30


def run_file(rel: str, **cfg) -> tuple[list[dict], SipStage]:
    recs: list[dict] = []
    st = SipStage(SipConfig(**cfg), recs.append)
    p = DatagramStage(sink=st.on_datagram)
    with open_capture(corpus_path(rel)) as r:
        p.run(r.batches())
    st.finish()
    return recs, st


def test_torture_pcap_every_frame_reported():
    recs, st = run_file("sip-torture/torture-udp.pcap")
    truth = list(csv.DictReader(open(corpus_path("truth/torture.csv"), newline="")))
    assert len(recs) == len(truth)  # one record (message or error) per datagram, none lost
    for rec, t in zip(recs, truth):
        jsonschema.validate(rec, SCHEMA)
        expected_bad = t["rfc_syntax"].startswith("malformed") or t["name"] in ("insuf",)
        if t["class"] != "extra":
            assert ("error" in rec) == expected_bad, (t["name"], rec.get("defects"))


def _tshark_text(s: str) -> str:
    """Our text as tshark 4.0 prints it: invalid UTF-8 as U+FFFD, form feed as '\\f'."""
    try:
        raw = s.encode("latin-1")
    except UnicodeEncodeError:
        return s
    return raw.decode("utf-8", "replace").replace("\x0c", "\\f")


SIP_CAPTURES = [
    "heplify-erspan_sip_ipv4_udp.pcapng", "heplify-rtp_rtcp_sip_ipv4_udp.pcap", "heplify-sip_ipv4_tcp.pcap",
    "heplify-sip_ipv4_tcp_fragmented.pcap", "heplify-sip_ipv4_tcp_retrans.pcap", "heplify-sip_ipv6_udp.pcap",
    "heplify-sip_sctp.pcap", "heplify-sip_tcp_websocket.pcap", "pcapplusplus-sip_reqs.pcap", "sngrep-ipip.pcap",
    "sngrep-ipv6frag.pcap", "suricata-sip_compact_form.pcap", "wireshark-sample-aaa.pcap",
    "zeek-sip-invalid-content-length.pcap", "zeek-sip-junk-before-request.pcap",
]
# heplify-sip_ipv6_udp writes IPv6 addresses without brackets in Via (invalid per RFC 5118);
# tshark then gives no Via branch at all, Otus reads it (and flags the message): compare
# the branch only where tshark has one.
TSHARK_MISSES_BRANCH = {"heplify-sip_ipv6_udp.pcap"}


@pytest.mark.parametrize("name", SIP_CAPTURES)
def test_real_captures_match_tshark(name):
    """Same Call-ID, CSeq, method/status, tags and Via branch for every message tshark finds
    (heplify-sip_ipv4_tcp_fragmented's truth was made with -d tcp.port==6060,sip: tshark does not
    find SIP on that port by itself; Otus does, by content)."""
    stem = name.rsplit(".", 1)[0]
    rows = list(csv.DictReader(open(corpus_path(f"truth/{stem}.csv"), newline="")))
    cols = ["sip.Call-ID", "sip.CSeq.seq", "sip.Method", "sip.Status-Code", "sip.from.tag", "sip.to.tag",
            "sip.Via.branch"]
    no_branch = name in TSHARK_MISSES_BRANCH
    expected: Counter = Counter()
    for row in rows:
        n = len(row["sip.Call-ID"].split(",")) if row["sip.Call-ID"] else 1
        vals = [row[c].split(",") if row[c] else [""] * n for c in cols]
        for i in range(n):
            k = tuple(v[i] if i < len(v) else v[0] for v in vals)
            expected[k[:6] + (("",) if no_branch else k[6:])] += 1
    recs, st = run_file(f"pcap/sip/{name}")
    got: Counter = Counter()
    for r in recs:
        jsonschema.validate(r, SCHEMA)
        k = tuple(_tshark_text(str(v)) if v is not None else "" for v in (
            r["call_id"], r["cseq_num"], r["method"], r["status_code"], r["from_tag"], r["to_tag"],
            "" if no_branch else r["via_branch"]))
        got[k] += 1
    assert got == expected, (expected - got, got - expected)


def test_zeek_junk_before_request():
    recs, st = run_file("pcap/sip/zeek-sip-junk-before-request.pcap")
    assert len(recs) == 1
    r = recs[0]
    assert r["method"] == "REGISTER" and r["request_uri"] == "sip:1.1.1.1:5060"
    # the four NUL bytes arrive in a datagram of their own: skipped and counted as junk
    assert st.junk_bytes == 4 and st.junk_datagrams == 1
    # the REGISTER carries only Expires: reported, flagged for its missing headers
    assert r["error"] == "missing_call_id"
    # junk inside the same datagram is skipped too
    m = sip.parse(b"\0\0\0\0REGISTER sip:1.1.1.1:5060 SIP/2.0\r\nExpires: 3600\r\n\r\n")
    assert m.method == "REGISTER" and m.junk == 4 and "junk_before_message" in m.defects


def test_zeek_invalid_content_length():
    recs, st = run_file("pcap/sip/zeek-sip-invalid-content-length.pcap")
    assert [r["method"] or r["status_code"] for r in recs] == ["INVITE", 200]
    assert all(r["error"] == "bad_content_length" for r in recs)
    assert st.malformed["bad_content_length"] == 2


def test_tcp_retransmissions_not_duplicated_by_otus():
    """The capture holds TCP retransmissions (counted, not reported again) and each REGISTER
    transaction twice: on the TCP leg to the proxy and on its UDP leg onwards."""
    recs, st = run_file("pcap/sip/heplify-sip_ipv4_tcp_retrans.pcap")
    assert st.tcp.retransmissions >= 1
    keys = {(r["call_id"], r["cseq_num"], r["method"], r["status_code"], r["transport"]) for r in recs}
    assert len(recs) == 8 and len(keys) == 8
    assert {r["transport"] for r in recs} == {"tcp", "udp"}


def test_call_summaries_on_real_capture():
    recs, st = run_file("pcap/sip/heplify-sip_ipv4_tcp.pcap", call_summaries=True)
    calls = [r for r in recs if r["type"] == "call"]
    assert len(calls) == 1
    c = calls[0]
    jsonschema.validate(c, SCHEMA)
    assert c["state"] == "ended" and c["final_status"] == 200 and c["ended_by"] in ("caller", "callee")
    assert c["answer_ms"] > 0 and c["duration_ms"] > 0
