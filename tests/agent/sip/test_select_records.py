"""Selectors end to end: generated calls where a known share matches, through `otus run --task`.

Exactly the matching dialogs are reported, every message of each (the same records, byte for byte,
as a run without the selector), and the rest is counted, in the compiled and general paths alike.
"""
from __future__ import annotations

import contextlib
import io
import json
import pathlib

import pytest
import yaml

from otus_agent.cli.main import main
from otus_agent.sim.callgen import WorkloadSpec, generate

CALLS = 300


@pytest.fixture(scope="module")
def workload(tmp_path_factory) -> tuple[pathlib.Path, list]:
    d = tmp_path_factory.mktemp("select")
    pcap = d / "calls.pcap"
    with open(pcap, "wb") as f:
        w = generate(f, WorkloadSpec(calls=CALLS, seed=23, large_invite_ratio=0.2, tcp_ratio=0.2,
                                                 vlan_ratio=0.1, ipv6_ratio=0.2))
    return pcap, w.calls


def _run(tmp: pathlib.Path, pcap: pathlib.Path, sip: dict | None, *extra: str) -> tuple[list[bytes], dict]:
    args = ["run", "--pcap", str(pcap), "--output", str(tmp / "out.jsonl"), *extra]
    if sip is not None:
        task = tmp / "task.yaml"
        task.write_text(yaml.safe_dump({"id": "sel", "interfaces": ["eth0"], "sip": sip}))
        args += ["--task", str(task)]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(args) == 0
    return (tmp / "out.jsonl").read_bytes().splitlines(), json.loads(err.getvalue().strip().splitlines()[-1])


def _by_call(lines: list[bytes]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for line in lines:
        out.setdefault(json.loads(line)["call_id"], []).append(line)
    return out


# the fast path (the scanner's fields) and the general parser (another correlation header turns the
# scanner off); without a selector the compiled lane writes the records
@pytest.mark.parametrize("extra,base", [((), None), (("--calls",), None),
                                        ((), {"correlation_headers": ["X-Other"]})], ids=["plain", "calls", "general"])
def test_exactly_the_matching_dialogs_whole(tmp_path, workload, extra, base):
    pcap, calls = workload
    chosen = [c.call_id for c in calls[::7]]
    everything, _ = _run(tmp_path, pcap, base, *extra)
    lines, summary = _run(tmp_path, pcap, {**(base or {}), "match": {"call_id": chosen}}, *extra)
    want = [line for line in everything if json.loads(line)["call_id"] in set(chosen)]
    assert lines == want                                   # same records, same order, nothing else
    assert set(_by_call(lines)) == set(chosen)
    sel = summary["sip"]["select"]
    sip_records = [line for line in everything if json.loads(line).get("type") == "sip"]
    assert sel["matched_dialogs"] == len(chosen)
    assert sel["unmatched"] == len(sip_records) - sum(1 for x in want if json.loads(x).get("type") == "sip")


def test_users_and_uri_prefix_with_and(tmp_path, workload):
    pcap, calls = workload
    # callgen's call n goes from user 1<n:06d> to 2<n:06d>: the prefix takes n = 100..199, the
    # users list every third call of 90..209: together (AND), the calls in both
    users = [f"2{n:06d}" for n in range(90, 210, 3)]     # 40: the lists hold at most 64
    everything, _ = _run(tmp_path, pcap, None)
    lines, summary = _run(tmp_path, pcap, {"match": {"methods": ["INVITE"], "to_user": users,
                                                     "request_uri_prefix": ["sip:20001"]}})
    expect = {c.call_id for n, c in enumerate(calls) if 100 <= n <= 199 and n % 3 == 0}
    assert set(_by_call(lines)) == expect and len(expect) == 33
    assert lines == [line for line in everything if json.loads(line)["call_id"] in expect]
    assert summary["sip"]["select"]["matched_dialogs"] == len(expect)


def test_a_bad_selector_is_a_clear_error(tmp_path, workload, capsys):
    pcap, _ = workload
    task = tmp_path / "task.yaml"
    task.write_text(yaml.safe_dump({"id": "sel", "interfaces": ["eth0"], "sip": {"match": {"methods": ["IN VITE"]}}}))
    rc = main(["run", "--pcap", str(pcap), "--task", str(task), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc != 0 and "sip.match.methods" in err and "bad method" in err and "Traceback" not in err


def test_matched_calls_reach_the_capturetask_status(tmp_path, workload):
    """The agent's status entry counts the admitted dialogs and the operator's roll-up sums the agents."""
    from datetime import datetime, timezone

    from otus_agent.kube.status import entry
    from otus_operator.crd import CaptureTaskSpec
    from otus_operator.status import roll_up
    pcap, calls = workload
    _, stats = _run(tmp_path, pcap, {"match": {"call_id": [c.call_id for c in calls[:5]]}})
    e = entry({"status": "running", "packets": stats["packets"]}, stats, "node-1", None)
    assert e["matchedCalls"] == 5
    spec = CaptureTaskSpec.model_validate({"target": {"nodes": {}}, "sip": {"match": {"callId": ["x"]}}})
    st = roll_up(spec, {"a1": {**e, "lastReport": "2026-12-02T00:00:00Z"},
                        "a2": {**e, "matchedCalls": 2, "lastReport": "2026-12-02T00:00:00Z"}}, 1,
                 datetime(2026, 12, 2, tzinfo=timezone.utc))
    assert st["totals"]["matchedCalls"] == 7
