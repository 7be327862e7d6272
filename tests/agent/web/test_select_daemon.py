"""A selector through the daemon (issue 18): a task with sip.match captures live on loopback and
reports exactly the matching dialogs, whole; the rest shows in its counters."""
from __future__ import annotations

import json
import uuid

from ...support import poll
from .conftest import free_port, send_call, task_yaml, wait_for


def test_daemon_task_reports_only_the_selected_dialogs(daemon, tmp_path):
    port = free_port(udp=True)
    tid = "sel-" + uuid.uuid4().hex[:6]
    out = tmp_path / "records.jsonl"
    spec = task_yaml(tid, port, out).replace("  heuristic: false\n", "  heuristic: false\n  match:\n"
                                             "    headers: [{name: X-Tenant, equals: acme}]\n")
    code, body = daemon.request("POST", "/api/v1/tasks", spec.encode())
    assert code == 201, body
    try:
        def lines() -> list[dict]:
            return [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
        # the capture starts a moment after the task is created: a first call proves it is on
        for attempt in range(8):
            probe = f"probe-{attempt}-{uuid.uuid4().hex}@t"
            send_call(port, probe, extra="X-Tenant: acme\r\n")
            if poll(lambda: any(r["call_id"] == probe for r in lines()), 3):
                break
        acme, other = f"acme-{uuid.uuid4().hex}@t", f"other-{uuid.uuid4().hex}@t"
        sent_acme = send_call(port, acme, extra="X-Tenant: acme\r\n")
        wait_for(lambda: sum(r["call_id"] == acme for r in lines()) == len(sent_acme), 15,
                 what="every message of the selected call")

        def select_stats() -> dict:
            return daemon.get(f"/api/v1/tasks/{tid}")["stats"].get("sip", {}).get("select", {})
        # the counters reach the daemon a moment after the records: settled once they count every record
        wait_for(lambda: select_stats().get("matched_messages", -1) == len(lines()), 20, what="the counters")
        before = select_stats()["unmatched"]
        sent = send_call(port, other, extra="X-Tenant: globex\r\n")
        wait_for(lambda: select_stats()["unmatched"] >= before + len(sent), 20, what="the unmatched count")
        assert select_stats()["unmatched"] == before + len(sent)
        got = lines()
        assert not [r for r in got if r["call_id"] == other]
        assert [(r["method"] or r["status_code"]) for r in got if r["call_id"] == acme] == \
            ["INVITE", "INVITE", 100, 180, 200, "ACK", "BYE", 200]
    finally:
        daemon.request("DELETE", f"/api/v1/tasks/{tid}")
