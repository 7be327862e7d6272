"""Which fanout demux a worker asks for, and the program's limits (its behaviour in the kernel:
tests/integration/test_fanout_affinity.py)."""
from __future__ import annotations

import pytest

from otus_agent.capture.fanout_bpf import MAX_PORTS, sip_affinity
from otus_agent.engine.live import fanout_program
from otus_agent.engine.pipeline import EngineConfig
from otus_agent.sip.framing import SipConfig


def test_sip_affinity_only_where_records_join_a_calls_messages():
    assert fanout_program(EngineConfig(parsers=("sip",))) is None            # per-message records: spread
    assert fanout_program(EngineConfig(parsers=("sip",), settings={"sip": SipConfig(call_summaries=True)}))
    assert fanout_program(EngineConfig(parsers=("sip", "rtp"))) == sip_affinity(SipConfig().ports, True)
    plain = SipConfig(call_summaries=True, heuristic=False)   # SIP on its ports only: no payload test
    assert fanout_program(EngineConfig(parsers=("sip",), settings={"sip": plain})) == sip_affinity(plain.ports)
    assert len(sip_affinity(plain.ports)) < len(sip_affinity(plain.ports, True))
    assert fanout_program(EngineConfig(parsers=("flow",))) is None
    many = SipConfig(call_summaries=True, ports=tuple(range(6000, 6001 + MAX_PORTS)))
    assert fanout_program(EngineConfig(parsers=("sip",), settings={"sip": many})) is None   # the kernel's hash


def test_the_program_refuses_what_it_cannot_test():
    with pytest.raises(ValueError):
        sip_affinity(())
    with pytest.raises(ValueError):
        sip_affinity(tuple(range(6000, 6001 + MAX_PORTS)))
    with pytest.raises(ValueError):
        sip_affinity((0,))
    for heuristic in (False, True):
        prog = sip_affinity(tuple(range(6000, 6000 + MAX_PORTS)), heuristic)   # the limit itself fits the jumps
        assert all(0 <= jt <= 255 and 0 <= jf <= 255 for _, jt, jf, _ in prog)
        assert prog[-1] == (0x06, 0, 0, 0)                       # the SIP exit: member 0
