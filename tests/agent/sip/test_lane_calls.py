"""Call summaries (``--calls``) from the compiled lane equal the general path's, byte for byte and in order.

The lane feeds the stage's call table (sip/dialogs_cy.py ``CallTable.step``) from the scanner's offsets
and writes each summary's JSON itself; the general path feeds the same table from parsed messages or the
fast path's records and serialises the summary dict with orjson.  Compared: lane on vs the Python fast path vs the full parser (``fast_path=False``, the
path every ``--calls`` message took before), over generated workloads, the PBX workload (long calls that
overlap, TCP, fragments) and every capture of the corpus; also with a tiny table (evictions) and Kafka pairs.
The table's own semantics: tests/agent/sip/test_dialogs.py.
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
