"""The HTTP API and the UDS CLI are one implementation: the same task operations on one daemon give
the same answers (timestamps and counters, which move between two calls, left out)."""
from __future__ import annotations

from .conftest import free_port, task_yaml

MOVING = {"started", "finished", "packets", "kernel_drops", "sip_messages", "malformed", "stats", "uptime_s", "tap"}


def norm(v):
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items() if k not in MOVING}
    if isinstance(v, list):
        return [norm(x) for x in v]
    return v


def test_api_and_cli_agree(daemon, tmp_path):
    port = free_port()
    for tid in ("par-cli", "par-api"):
        (tmp_path / f"{tid}.yaml").write_text(task_yaml(tid, port))
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: par-bad\ninterfaces: [nosuch9]\n")

    cli = daemon.cli("task", "create", "-f", str(tmp_path / "par-cli.yaml"))
    code, api = daemon.request("POST", "/api/v1/tasks", (tmp_path / "par-api.yaml").read_bytes())
    assert cli["rc"] == 0 and code == 201
    assert norm({**cli["out"], "id": "x"}) == norm({**api, "id": "x"})

    # status of each task, asked both ways
    for tid in ("par-cli", "par-api"):
        c, a = daemon.cli("task", "status", tid), daemon.get(f"/api/v1/tasks/{tid}")
        assert norm(c["out"]) == norm(a) and a["spec"]["sip"]["ports"] == [port]
    assert norm(daemon.cli("task", "list")["out"]) == norm(daemon.get("/api/v1/tasks"))
    assert norm(daemon.cli("status")["out"]) == norm(daemon.get("/api/v1/status"))
    assert set(daemon.cli("stats")["out"]) == set(daemon.get("/api/v1/stats")["tasks"]) == {"par-cli", "par-api"}

    # the same refusals, with the same message
    c = daemon.cli("task", "create", "-f", str(tmp_path / "par-cli.yaml"))
    code, a = daemon.request("POST", "/api/v1/tasks", (tmp_path / "par-cli.yaml").read_bytes())
    assert c["rc"] != 0 and code == 409 and c["err"] == f"otus: error: {a['error']}"
    c = daemon.cli("task", "create", "-f", str(bad))
    code, a = daemon.request("POST", "/api/v1/tasks", bad.read_bytes())
    assert code == 400 and c["err"] == f"otus: error: {a['error']}" == "otus: error: no such interface: nosuch9"
    c = daemon.cli("task", "status", "nope")
    code, a = daemon.request("GET", "/api/v1/tasks/nope")
    assert code == 404 and c["err"] == f"otus: error: {a['error']}"

    # delete: one through each face, then both lists are empty
    c = daemon.cli("task", "delete", "par-cli")
    code, a = daemon.request("DELETE", "/api/v1/tasks/par-api")
    assert c["rc"] == 0 and code == 200 and norm({**c["out"], "id": "x"}) == norm({**a, "id": "x"})
    assert daemon.cli("task", "list")["out"] == daemon.get("/api/v1/tasks") == []
