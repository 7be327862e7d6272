"""The media schema file is generated from media/fields.py (drift test); the E-model's formula."""
from __future__ import annotations

import pytest

from otus_agent.media.fields import NAMES, schema_text
from otus_agent.media.streams import mos_from_r, one_way_delay_ms, r_factor

from ...conftest import ROOT


def test_schema_file_is_generated_from_fields():
    path = ROOT / "schemas" / "media-record.v1.json"
    assert path.read_text() == schema_text(), "run: python -m otus_agent.media.fields > schemas/media-record.v1.json"


def test_issue_fields_present():
    want = {"call_id", "src_ip", "src_port", "dst_ip", "dst_port", "ssrc", "payload_type", "codec", "packets", "lost",
            "duplicates", "out_of_order", "max_delta_ms", "mean_jitter_ms", "max_jitter_ms", "rtt_ms", "mos",
            "r_factor", "start_ts", "end_ts"}
    assert want <= set(NAMES)


def test_emodel_reference_points():
    # no loss, no delay, G.711: R = R0 = 93.2, the G.107 default, MOS about 4.41
    assert r_factor(0.0, 0.0, "PCMU") == pytest.approx(93.2)
    assert mos_from_r(93.2) == pytest.approx(1 + 0.035 * 93.2 + 93.2 * 33.2 * 6.8 * 7e-6)
    # G.729: Ie = 11; 1% random loss on G.711 (Bpl 25.1): Ie,eff = 95 * 1 / 26.1
    assert r_factor(0.0, 0.0, "G729") == pytest.approx(82.2)
    assert r_factor(0.01, 0.0, "PCMA") == pytest.approx(93.2 - 95 / 26.1)
    # delay past 177.3 ms costs the extra 0.11 per ms
    assert r_factor(0, 200, None) == pytest.approx(93.2 - 0.024 * 200 - 0.11 * (200 - 177.3))
    assert mos_from_r(-5) == 1.0 and mos_from_r(120) == 4.5
    assert one_way_delay_ms(40.0, 2.0) == pytest.approx(20 + 4 + 20)


def test_emodel_monotonic():
    rs = [r_factor(p / 100, 0, "PCMU") for p in range(0, 30)]
    assert rs == sorted(rs, reverse=True)
    ms = [mos_from_r(r) for r in range(0, 101)]
    assert ms == sorted(ms)
