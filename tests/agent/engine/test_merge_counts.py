"""Fanout workers' counters merge by adding, except ratios, which are made again from the sums."""
from __future__ import annotations

from otus_agent.engine.live import merge_counts


def test_counts_add_and_the_loss_ratio_is_recomputed():
    w1 = {"packets": 10, "rtp": {"lost_total": 1, "expected_total": 100, "loss_ratio": 0.01, "codec": "PCMU"}}
    w2 = {"packets": 5, "rtp": {"lost_total": 9, "expected_total": 100, "loss_ratio": 0.09, "codec": "PCMA"}}
    m = merge_counts(merge_counts({}, w1), w2)
    assert m["packets"] == 15 and m["rtp"]["lost_total"] == 10 and m["rtp"]["expected_total"] == 200
    assert m["rtp"]["loss_ratio"] == 0.05            # 10 / 200, not 0.01 + 0.09
    assert m["rtp"]["codec"] == "PCMA"
    assert merge_counts({}, {"rtp": {"lost_total": 0, "expected_total": 0, "loss_ratio": 0.0}})["rtp"]["loss_ratio"] == 0
