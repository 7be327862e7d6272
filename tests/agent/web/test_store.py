"""The console's record store: limits and their counters, call state, retransmissions, filters, feed."""
from __future__ import annotations

import orjson

from otus_agent.web.store import RecordStore


def rec(cid: str, ts: int, method: str | None = None, code: int | None = None, cseq: str = "INVITE",
        src: tuple = ("10.0.0.1", 5060), dst: tuple = ("10.0.0.2", 5060), branch: str = "b1", **kw) -> dict:
    r = {"v": 1, "type": "sip", "ts": ts, "src_ip": src[0], "src_port": src[1], "dst_ip": dst[0], "dst_port": dst[1],
         "transport": "udp", "method": method, "status_code": code, "call_id": cid, "cseq_num": 1,
         "cseq_method": cseq, "via_branch": branch, "from_user": "alice", "to_user": "bob", "agent": "node-1",
         "task": "t1", **kw}
    return r


def dialog(store: RecordStore, cid: str, t0: int = 1_700_000_000_000_000_000, final: int = 200) -> None:
    a, b = ("10.0.0.1", 5060), ("10.0.0.2", 5060)
    seq = [rec(cid, t0, "INVITE", src=a, dst=b), rec(cid, t0 + 1, "INVITE", src=a, dst=b),
           rec(cid, t0 + 2, code=180, src=b, dst=a), rec(cid, t0 + 3, code=final, src=b, dst=a)]
    if final == 200:
        seq += [rec(cid, t0 + 4, "ACK", cseq="ACK", branch="b2"),
                rec(cid, t0 + 5_000_000_000, "BYE", cseq="BYE", branch="b3"),
                rec(cid, t0 + 5_000_000_001, code=200, cseq="BYE", branch="b3", src=b, dst=a)]
    for r in seq:
        store.add_line(orjson.dumps(r))


def test_call_state_retransmission_and_order():
    s = RecordStore()
    dialog(s, "c1")
    view = s.call("c1")
    assert view["state"] == "ended" and view["final_status"] == 200
    assert view["duration_s"] == 5.0 and view["agents"] == ["node-1"]
    msgs = s.messages("c1")
    assert [m["label"] for m in msgs] == ["INVITE", "INVITE", "180", "200", "ACK", "BYE", "200"]
    assert [m["retransmission"] for m in msgs] == [False, True, False, False, False, False, False]
    assert msgs[2]["src"] == "10.0.0.2:5060" and msgs[2]["dst"] == "10.0.0.1:5060"
    # the same INVITE captured by a second agent is not a retransmission
    s.add_line(orjson.dumps(rec("c1", 1_700_000_000_000_000_010, "INVITE", agent="node-2")))
    assert s.messages("c1")[-1]["retransmission"] is False and s.call("c1")["agents"] == ["node-1", "node-2"]
    dialog(s, "c2", final=486)
    assert s.call("c2")["state"] == "failed" and s.call("c2")["final_status"] == 486


def test_limits_evict_and_count():
    s = RecordStore(max_calls=3, messages_per_call=4)
    for i in range(5):
        dialog(s, f"c{i}", t0=1_700_000_000_000_000_000 + i)
    st = s.stats()
    assert st["calls"] == 3 and st["evicted_calls"] == 2
    assert [c["call_id"] for c in s.query()] == ["c4", "c3", "c2"]     # newest first, oldest evicted
    assert st["dropped_messages"] == 5 * 3 and s.call("c4")["messages"] == 4
    assert s.messages("c0") is None
    # the byte limit evicts as well, and the bytes held stay under it
    b = RecordStore(max_calls=1000, max_bytes=4000)
    for i in range(40):
        dialog(b, f"x{i}")
    assert b.stats()["bytes"] <= 4000 and b.stats()["evicted_calls"] > 0
    assert sum(len(m) for c in b.calls.values() for m in c.messages) == b.stats()["bytes"]


def test_filters():
    s = RecordStore()
    dialog(s, "abc-1", t0=1_000_000_000_000_000_000)
    dialog(s, "abc-2", t0=2_000_000_000_000_000_000, final=486)
    s.add_line(orjson.dumps(rec("zzz", 3_000_000_000_000_000_000, "OPTIONS", cseq="OPTIONS", from_user="carol")))
    ids = lambda **kw: [c["call_id"] for c in s.query(**kw)]  # noqa: E731
    assert ids(call_id="ABC") == ["abc-2", "abc-1"]
    assert ids(status="486") == ["abc-2"] and ids(status="4xx") == ["abc-2"] and ids(status="ended") == ["abc-1"]
    assert ids(from_user="car") == ["zzz"]
    assert ids(since=1.5e9) == ["zzz", "abc-2"] and ids(until=1.5e9) == ["abc-1"]
    assert ids(q="options") == ["zzz"] and ids(limit=1) == ["zzz"]


def test_bad_lines_are_counted_and_feed_reports_gaps():
    s = RecordStore(feed_max=5)
    for line in (b"not json", b"[1]", b'{"type": "sip", "ts": "x"}', orjson.dumps({"v": 1, "type": "sip", "ts": 1})):
        s.add_line(line)
    assert s.stats()["bad_records"] == 3 and s.stats()["without_call_id"] == 1
    s.add_line(orjson.dumps({"v": 1, "type": "flow", "ts": 2}))     # another parser's record: not bad, not kept
    assert s.stats()["bad_records"] == 3 and s.stats()["other_records"] == 1 and s.stats()["records"] == 1
    seq, missed, items = s.since(0)
    assert missed == 0 and len(items) == 1
    for i in range(12):
        s.add_line(orjson.dumps(rec(f"f{i}", i + 10)))
    seq2, missed, items = s.since(seq)
    assert len(items) == 5 and missed == 12 - 5 and seq2 == s.seq
    assert s.since(seq2) == (seq2, 0, [])


def test_media_streams_join_their_calls(tmp_path):
    """The media records of `otus run --parsers sip,rtp` on generated calls with RTP land on their calls:
    each stream once (its final record), the call's worst MOS the lowest of its streams'."""
    import contextlib
    import io
    import json as _json

    from otus_agent.cli.main import main
    from otus_agent.sim.callgen import WorkloadSpec, generate
    from otus_agent.web.store import MEDIA_PER_CALL, RecordStore
    pcap, out = tmp_path / "rtp.pcap", tmp_path / "records.jsonl"
    with open(pcap, "wb") as f:
        generate(f, WorkloadSpec(calls=5, seed=3, rtp_packets=40, tcp_ratio=0, large_invite_ratio=0))
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(["run", "--pcap", str(pcap), "--parsers", "sip,rtp", "--output", str(out)]) == 0
    lines = out.read_bytes().splitlines()
    store = RecordStore()
    for line in lines:
        store.add_line(line)
    media = [_json.loads(x) for x in lines if b'"type":"media"' in x]
    assert media, "the generated calls carry RTP"
    for cid in {m["call_id"] for m in media}:
        c = store.call(cid)
        finals = [m for m in media if m["call_id"] == cid and m["final"]]
        assert len(c["media"]) == len(finals) and c["messages"] > 0
        assert {(m["ssrc"], m["packets"], m["lost"]) for m in c["media"]} == \
            {(m["ssrc"], m["packets"], m["lost"]) for m in finals}
        assert c["worst_mos"] == min(m["mos"] for m in finals)
    # a call's streams are bounded: more are counted, not kept
    base = {**media[0], "call_id": "many"}
    for i in range(MEDIA_PER_CALL + 3):
        store.add_line(_json.dumps({**base, "ssrc": i}).encode())
    assert len(store.call("many")["media"]) == MEDIA_PER_CALL and store.stats()["dropped_media"] == 3
