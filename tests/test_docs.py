"""Docs that are generated from the code stay in step with it."""
from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_reference_matches_the_models():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_reference.py")], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert (ROOT / "docs" / "reference.md").read_text() == out, \
        "regenerate: python scripts/gen_reference.py > docs/reference.md"
    for needle in ("`reporters[].type`", "`target.pods.selector`", "`webhook.certManager.enabled`",
                   "`otus_capture_drops_total`"):
        assert needle in out


def test_readme_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```sh") + 1: lines.index("```sh") + 3]
    assert block[0].startswith("./scripts/demo") and block[1].startswith("./scripts/test")
    assert "bash scripts/test" in (ROOT / ".ci" / "run").read_text() or "scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_reference_lists_every_family_a_task_process_exports():
    """The metrics a task with the flow, dns and detect parsers exports through the agent's endpoint (the
    summaries built by the real stages, turned into families the way /metrics does), and the interface
    counters, all have a row in docs/reference.md: a family added to an exporter but not to
    gen_reference's list fails here, not only in review."""
    import re
    import tempfile

    from otus_agent.dns.stage import DnsStage
    from otus_agent.flows.stage import FlowStage
    from otus_agent.observability.ifstats import InterfaceStats
    from otus_agent.observability.metrics import _stage_metrics
    documented = set(re.findall(r"^\| `(otus_[a-z_]+)` \|", (ROOT / "docs" / "reference.md").read_text(), re.M))
    summary = {"flow": FlowStage().summary(), "dns": DnsStage().summary(), "detect": {"sip": {}, "network": {}}}
    families = _stage_metrics("t", summary)
    with tempfile.TemporaryDirectory() as empty:
        families += InterfaceStats([], root=empty).metrics()
    exported = {m.name + ("_total" if m.type == "counter" else "") for m in families}
    assert {"otus_flows_active", "otus_domain_bytes_sent_total", "otus_dns_messages_total",
            "otus_interface_receive_packets_total", "otus_alerts_total"} <= exported
    assert exported - documented == set(), "regenerate: python scripts/gen_reference.py > docs/reference.md"
