"""A call whose Call-ID comes again in a new INVITE while its BYE still lingers (a looped pcap replay, a
test tool with fixed Call-IDs, a broken UA): the old call's streams end at the new INVITE and the new
call's are counted whole.  Before, the old streams took the new call's first packets (the same ports and
SSRC, the sequence starting again) and the old call's end, at its linger, forgot the new call's addresses:
a 100K pps replay of bench_live_realistic's RTP file looped three times counted half its RTP."""
from __future__ import annotations

from otus_agent.capture.pcapfile import PcapWriter, open_capture
from otus_agent.sim.rtpgen import RtpGenSpec, generate

from .helpers import run_engine


def _looped(tmp_path, gap_ns: int, loops: int = 2):
    src = tmp_path / "once.pcap"
    with open(src, "wb") as f:
        wl = generate(f, RtpGenSpec(calls=2, packets=300, seed=23))
    frames = []
    with open_capture(str(src)) as r:
        for b in r.batches():
            frames += [(b.ts_ns[i], bytes(b.packet(i))) for i in range(b.n)]
    span = frames[-1][0] - frames[0][0] + gap_ns
    out = tmp_path / "looped.pcap"
    with open(out, "wb") as f:
        w = PcapWriter(f, 1, 65535, True)
        for k in range(loops):
            for ts, frame in frames:
                w.write(ts + k * span, frame)
        w.flush()
    return out, wl


def _counts(recs: list[dict]) -> dict[tuple, list[int]]:
    got: dict[tuple, list[int]] = {}
    for r in recs:
        if r["type"] == "media" and r["final"]:
            got.setdefault((r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["ssrc"]), []).append(
                (r["packets"], r["lost"], r["end_reason"]))
    return got


def test_a_reused_call_id_within_the_linger_is_a_new_call(tmp_path):
    path, wl = _looped(tmp_path, gap_ns=300_000_000, loops=3)   # each loop's first INVITE 0.3 s after the last BYE
    once = _counts(run_engine(tmp_path / "once.pcap")[0])
    recs, summary = run_engine(path)
    got = _counts(recs)
    assert len(got) == len(once) == len(wl.streams)
    for k, [want] in once.items():
        assert want[0] == next(t.sent + t.duplicated for t in wl.streams if k[4] == t.ssrc)
        assert got[k] == [want] * 3, (got[k], want)   # packets, loss, and how each ended: as the loop alone
    assert summary["rtp"]["call_id_reused"] == 2 * len(wl.call_ids)
    from otus_agent.observability.metrics import media_metrics
    [fam] = [f for f in media_metrics("t", summary["rtp"]) if f.name == "otus_media_call_id_reused"]
    assert [s.value for s in fam.samples] == [2 * len(wl.call_ids)]
    calls = [r for r in recs if r["type"] == "call"]
    assert len(calls) == 3 * len(wl.call_ids) and all(c["media"]["streams"] == 2 for c in calls)


def test_after_the_linger_nothing_is_reused(tmp_path):
    path, wl = _looped(tmp_path, gap_ns=5_000_000_000)
    recs, summary = run_engine(path)
    assert all(len(v) == 2 for v in _counts(recs).values())
    assert "call_id_reused" not in summary["rtp"]
