"""sim/flowgen.mixed_trace at bench sizes: every generated address and port is valid, or it says no."""
from __future__ import annotations

import pytest

from otus_agent.sim import flowgen


def test_many_flows_have_valid_distinct_endpoints(tmp_path):
    # 4,200 UDP flows reach i = 0x1000, where the old "fd00::a{i:x}" made a 5-digit (invalid) hextet
    path = tmp_path / "m.pcap"
    flowgen.mixed_trace(seed=1, tcp_conns=4200, udp_flows=4200).write(str(path))
    from otus_agent.capture.pcapfile import open_capture
    cap = open_capture(str(path))
    try:
        n = sum(b.n for b in cap.batches())
    finally:
        cap.close()
    assert n > 4 * 4200     # handshakes, data, closes and datagrams of all of them


def test_too_many_flows_is_a_clear_error():
    with pytest.raises(ValueError, match="at most 10000"):
        flowgen.mixed_trace(tcp_conns=flowgen.MAX_MIXED + 1)
