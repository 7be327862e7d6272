"""The E-model estimate of a stream's quality (simplified ITU-T G.107), and where the statistics live.

The per-stream statistics (Wireshark-compatible) are ``rtp_cy.RtpStream``: the hot path,
compiled when Cython is available.  This module keeps what is computed once per record.
"""
from __future__ import annotations

from otus_agent.media.rtp_cy import RtpStream

__all__ = ["RtpStream", "r_factor", "mos_from_r", "one_way_delay_ms"]

# ---------------------------------------------------------------- E-model

# ITU-T G.113 Appendix I equipment impairment (Ie) and packet-loss robustness (Bpl) per codec
EMODEL_CODECS = {
    "pcmu": (0.0, 25.1), "pcma": (0.0, 25.1), "g711": (0.0, 25.1), "g722": (0.0, 25.1),
    "g729": (11.0, 19.0), "g723": (15.0, 16.1), "gsm": (20.0, 10.0), "gsm-efr": (5.0, 10.0),
    "ilbc": (10.0, 32.0), "amr": (5.0, 10.0), "amr-wb": (5.0, 10.0), "opus": (0.0, 25.1),
}
DEFAULT_IE_BPL = (0.0, 25.1)
R0 = 93.2            # G.107 default basic signal-to-noise ratio with the default Is


def r_factor(loss_ratio: float, one_way_delay_ms: float, codec: str | None) -> float:
    """Simplified G.107 E-model: R = R0 - Id - Ie,eff (Is and A at their defaults, A = 0).

    - Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3), d the one-way mouth-to-ear delay (ms)
      (the Cole-Rosenbluth fit of G.107's Idd/Idte for echo-cancelled paths);
    - Ie,eff = Ie + (95 - Ie) Ppl / (Ppl / BurstR + Bpl), Ppl the loss in percent, BurstR = 1
      (random loss), Ie and Bpl the codec's G.113 values (G.711 with PLC when unknown).
    """
    ie, bpl = EMODEL_CODECS.get((codec or "").lower(), DEFAULT_IE_BPL)
    ppl = max(0.0, min(100.0, loss_ratio * 100.0))
    ie_eff = ie + (95.0 - ie) * ppl / (ppl + bpl)
    d = max(0.0, one_way_delay_ms)
    idd = 0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)
    return R0 - idd - ie_eff


def mos_from_r(r: float) -> float:
    """G.107 Annex B: MOS_CQE from R (clamped at 1: the cubic dips just below it for R < 6.5)."""
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return max(1.0, 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6)


def one_way_delay_ms(rtt_ms: float | None, jitter_ms: float, ptime_ms: float = 20.0) -> float:
    """The E-model's delay input: half the RTCP round trip (0 when unknown), a jitter buffer of
    twice the mean jitter, and one packetisation interval."""
    return (rtt_ms / 2.0 if rtt_ms else 0.0) + 2.0 * jitter_ms + ptime_ms
