"""Call summaries (``--calls``) from the compiled lane equal the general path's, byte for byte and in order.

The lane feeds ``DialogTracker.observe_fields`` from the scanner's offsets; the general path feeds it from
parsed messages.  Compared: lane on vs the Python fast path vs the full parser (``fast_path=False``, the
path every ``--calls`` message took before), over generated workloads, the PBX workload (long calls that
overlap, TCP, fragments) and every capture of the corpus; also with a tiny table (evictions) and Kafka pairs.
"""
from __future__ import annotations

import pytest

from otus_agent.sip.framing import LANE_COMPILED

from ...conftest import corpus_path
from .test_udplane import run as run_stage

pytestmark = pytest.mark.skipif(not LANE_COMPILED, reason="the lane exists only in the compiled build")


def run(path, lane: bool, fast: bool = True, kafka: bool = False, max_calls: int = 100_000):
    return run_stage(path, lane, kafka=kafka, call_summaries=True, fast_path=fast, max_calls=max_calls)


def calls(out: bytes) -> list[bytes]:
    return [line for line in out.splitlines() if line.startswith(b'{"v":1,"type":"call"')]


def same(path, **kw):
    general = run(path, False, fast=False, **kw)
    python_fast = run(path, False, **kw)
    lane = run(path, True, **kw)
    assert calls(lane[0]) == calls(general[0]), "call summaries differ from the general parser's"
    assert lane[0] == python_fast[0], "records differ (lane vs Python fast path)"
    assert lane[1] == python_fast[1], "counters differ"
    assert lane[1]["calls"] == general[1]["calls"]
    assert lane[2] == python_fast[2], "Kafka pairs differ"
    return lane


def test_generated_workload(workload_pcap):
    path, wl = workload_pcap
    out, summary, _ = same(path)
    assert summary["fast_path"] > 0.8 * wl.sip_messages      # the messages did stay in the lane
    assert len(calls(out)) == len(wl.calls) and summary["calls"]["started"] == len(wl.calls)
    _, _, pairs = same(path, kafka=True)
    assert sum(v.startswith(b'{"v":1,"type":"call"') for _, v in pairs) == len(wl.calls)


@pytest.fixture(scope="module")
def pbx_pcap(tmp_path_factory):
    from otus_agent.sim.callgen import WorkloadSpec, generate
    path = tmp_path_factory.mktemp("pbx") / "pbx.pcap"
    with open(path, "wb") as f:
        wl = generate(f, WorkloadSpec(profile="pbx", calls=400, seed=15))
    return path, wl


def test_pbx_workload(pbx_pcap):
    path, wl = pbx_pcap
    out, summary, _ = same(path)
    assert summary["fast_path"] > 0.8 * wl.sip_messages
    states = {line.split(b'"state":')[1] for line in calls(out)}
    assert len(calls(out)) == len(wl.calls) and states == {b"\"ended\"}"}   # every pbx call is answered, then hung up
    _, summary, _ = same(path, max_calls=20)        # calls overlap: a small table evicts, alike on both paths
    assert summary["calls"]["evictions"] > 0


@pytest.mark.corpus
def test_every_corpus_capture():
    root = corpus_path("pcap")
    files = sorted(p for p in root.rglob("*") if p.suffix in (".pcap", ".pcapng", ".cap"))
    assert files
    compared = with_calls = 0
    for f in files:
        try:
            general = run(f, False, fast=False)
        except Exception:
            continue              # captures the reader refuses are covered elsewhere
        lane = run(f, True)
        assert calls(lane[0]) == calls(general[0]), f
        assert lane[1]["calls"] == general[1]["calls"], f
        assert lane[0] == run(f, False)[0], f
        compared += 1
        with_calls += bool(calls(lane[0]))
    assert compared >= 15 and with_calls >= 5


def _invite(t, cid: str, ts: int):
    return t.observe_fields(ts, cid, "INVITE", "INVITE", 0, "ft", "a", "b", None)


def test_eviction_and_expiry_take_the_oldest_call_still_open():
    """The insertion-order queue beside the table (dialogs._order) picks what next(iter(calls)) picked."""
    from otus_agent.sip.dialogs import DialogTracker
    t = DialogTracker(max_calls=3, timeout_s=10)
    for i in range(3):
        _invite(t, f"c{i}", i)
    assert [s["state"] for s in t.observe_fields(3, "c0", "INVITE", None, 486, None, None, None, "tt")] == ["failed"]
    _invite(t, "c0", 4)                        # the same Call-ID again: a new call, now the newest
    _invite(t, "c3", 5)                        # table full: c1, the oldest still open, goes
    assert list(t.calls) == ["c2", "c0", "c3"] and t.evictions == 1
    t.observe_fields(6, "c2", "INVITE", None, 180, None, None, None, None)   # activity does not reorder
    ended = t.observe_fields(int(14.5e9), "x", "OPTIONS", "OPTIONS", 0, None, None, None, None)
    assert [s["call_id"] for s in ended] == ["c2", "c0", "c3"] and t.timeouts == 3 and not t.calls
    for i in range(5000):                      # calls that end keep the queue bounded
        _invite(t, f"d{i}", int(20e9) + i)
        t.observe_fields(int(20e9) + i, f"d{i}", "INVITE", None, 603, None, None, None, None)
    assert len(t._order) <= 1026      # rebuilt once it exceeds 1024 + twice the open calls (one, at the INVITE)


@pytest.mark.parametrize("seed", range(4))
def test_compiled_call_table_equals_dialog_tracker(seed):
    """writer_cy.CallTable (what the lane and its stage use) against dialogs.DialogTracker (the pure build's
    and the general path's): the same summaries in the same order and the same counters, over random message
    sequences -- re-INVITEs, CANCEL, BYE from either side, failures, unknown Call-IDs, evictions, timeouts."""
    import random

    from otus_agent.sip.dialogs import DialogTracker
    from otus_agent.sip.writer_cy import CallTable
    rnd = random.Random(seed)
    ref, got = DialogTracker(max_calls=8, timeout_s=30), CallTable(max_calls=8, timeout_s=30)
    ts = 1_700_000_000 * 10**9
    for i in range(20_000):
        ts += rnd.choice((0, 1, 1000, 10**6, 10**8, 10**9, 5 * 10**9)) if rnd.random() < 0.999 else 40 * 10**9
        cid = rnd.choice((None, "", *(f"call-{k}" for k in range(14))))
        csm = rnd.choice((None, "INVITE", "INVITE", "BYE", "CANCEL", "ACK", "OPTIONS"))
        method = rnd.choice((None, None, None, "INVITE", "BYE", "CANCEL", "ACK", "INFO"))
        code = 0 if method else rnd.choice((100, 180, 183, 200, 202, 299, 300, 404, 486, 487, 500, 603))
        tags = (rnd.choice((None, "ft1", "ft2")), rnd.choice((None, "alice")), rnd.choice((None, "bob")),
                rnd.choice((None, "tt1", "tt2")))
        a = ref.observe_fields(ts, cid, csm, method, code, *tags)
        b = got.observe_fields(ts, cid, csm, method, code, *tags)
        assert a == b, (i, a, b)
        assert [list(x) for x in a] == [list(x) for x in b]      # key order too: the JSON is compared byte for byte
    assert ref.counters() == got.counters() and ref.evictions and ref.timeouts and ref.completed
    assert ref.flush() == got.flush() and got.counters()["active"] == 0


def test_summary_milliseconds_written_as_orjson_writes_round():
    """The lane writes a summary's *_ms itself: equal to orjson.dumps(dialogs._ms(a, b)) for every span,
    including the ones it leaves to Python (ending in 500 ns: the double decides; negative; huge)."""
    import random

    import orjson

    from otus_agent.sip.dialogs import _ms
    from otus_agent.sip.writer_cy import ms_json
    rnd = random.Random(7)
    spans = [*range(0, 30_000), *(rnd.randrange(0, 10**15) for _ in range(100_000)),
             *(rnd.randrange(0, 10**10) for _ in range(100_000)), *(k * 1000 + 500 for k in range(2000)),
             -1, -1500, 10**15 - 1, 10**15, 10**15 + 1, 10**18, *(10**k for k in range(16)), *(10**k - 1 for k in range(1, 16))]
    a = 1_700_000_000 * 10**9
    for d in spans:
        assert ms_json(a, a + d) == orjson.dumps(_ms(a, a + d)), d
    assert ms_json(None, a) == ms_json(a, None) == b"null"
