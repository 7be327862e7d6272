"""The HTTP API in process, on the control socket's real dispatch (a real TaskManager): auth, body limit,
errors as JSON, task validation per field, calls and messages from the store, the live stream."""
from __future__ import annotations

import json
import os
import threading

import pytest

pytest.importorskip("fastapi", reason="the web extra (fastapi, uvicorn) is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from otus_agent.daemon.manager import TaskManager  # noqa: E402
from otus_agent.daemon.uds import ControlServer  # noqa: E402
from otus_agent.web.app import create_app  # noqa: E402
from otus_agent.web.store import RecordStore  # noqa: E402

from .test_store import dialog  # noqa: E402

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def api(tmp_path):
    m = TaskManager(str(tmp_path / "state"))
    ctl = ControlServer(str(tmp_path / "c.sock"), 0o600, None, m, lambda: {"version": "x"}, lambda: {},
                        lambda: {}, lambda: None)
    ctl.start()
    store = RecordStore(max_calls=50)
    app = create_app(store, ctl.dispatch, lambda: TOKEN, max_body=4096)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.store = store
        yield c
    m.shutdown(5)
    ctl.close()


def test_mutations_need_the_token(api, tmp_path):
    y = "id: t1\ninterfaces: [lo]\n"
    r = api.post("/api/v1/tasks", content=y, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 401 and "bearer token" in r.json()["error"] and r.headers["www-authenticate"] == "Bearer"
    r = api.post("/api/v1/tasks", content=y, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    r = api.delete("/api/v1/tasks/t1")
    assert r.status_code == 401
    # no token configured at all: refused, never open
    store = RecordStore()
    with TestClient(create_app(store, lambda b: {"ok": True, "result": []}, lambda: None)) as c:
        r = c.delete("/api/v1/tasks/x", headers=AUTH)
        assert r.status_code == 403 and "no token configured" in r.json()["error"]
    assert "access-control-allow-origin" not in {k.lower() for k in r.headers}


def test_errors_are_json_with_fields(api):
    r = api.post("/api/v1/tasks/validate", content="id: Bad_Id\ninterfaces: [lo]\nsnaplen: 3\nbogus: 1\n",
                 headers={"Content-Type": "application/yaml"})
    assert r.status_code == 422
    fields = {f["field"]: f["message"] for f in r.json()["fields"]}
    assert set(fields) == {"id", "snaplen", "bogus"} and fields["bogus"] == "unknown field"
    r = api.post("/api/v1/tasks/validate", content="id: [unclosed", headers={"Content-Type": "application/yaml"})
    assert r.status_code == 422 and "not valid YAML" in r.json()["error"]
    r = api.post("/api/v1/tasks/validate", content="{", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["error"]
    r = api.post("/api/v1/tasks/validate", content=b"\xff\xfe", headers={"Content-Type": "application/yaml"})
    assert r.status_code == 422 and "UTF-8" in r.json()["error"]
    r = api.get("/api/v1/tasks/nope")
    assert r.status_code == 404 and r.json() == {"error": "no such task: nope"}
    assert api.get("/api/v1/nowhere").json() == {"error": "Not Found"}
    r = api.get("/api/v1/calls?limit=0")
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "query.limit"
    r = api.get("/api/v1/messages?call_id=unknown")
    assert r.status_code == 404 and "no such call" in r.json()["error"]
    # a task on an interface that does not exist: the manager's own refusal, as JSON
    r = api.post("/api/v1/tasks", content="id: t2\ninterfaces: [nosuch0]\n", headers=AUTH)
    assert r.status_code == 400 and r.json() == {"error": "no such interface: nosuch0"}


def test_body_limit(api):
    big = "id: t1\ninterfaces: [lo]\n#" + "x" * 5000
    r = api.post("/api/v1/tasks/validate", content=big, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 413 and "too large" in r.json()["error"]

    def chunks():               # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b"#" + b"x" * 1000 + b"\n"
    r = api.post("/api/v1/tasks/validate", content=chunks(), headers={"Content-Type": "application/yaml"})
    assert r.status_code == 413


def test_calls_messages_and_page(api):
    dialog(api.store, "c-1")
    dialog(api.store, "c-2", final=486)
    r = api.get("/api/v1/calls", params={"status": "4xx"})
    assert [c["call_id"] for c in r.json()] == ["c-2"]
    m = api.get("/api/v1/messages", params={"call_id": "c-1"}).json()
    assert m["call"]["state"] == "ended" and [x["label"] for x in m["messages"]][:3] == ["INVITE", "INVITE", "180"]
    assert m["messages"][1]["retransmission"] is True and m["messages"][0]["record"]["from_user"] == "alice"
    page = api.get("/")
    assert page.status_code == 200 and "console.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    js = api.get("/static/console.js").text
    assert ".innerHTML" not in js and "http" not in js.replace("http://www.w3.org/2000/svg", "")  # no CDN
    assert api.get("/static/../app.py").status_code == 404
    doc = api.get("/api/v1/openapi.json").json()
    assert {"/api/v1/tasks", "/api/v1/calls", "/api/v1/messages", "/api/v1/stream"} <= set(doc["paths"])
    assert "otus_console_records_total 11" in api.get("/api/v1/metrics").text


def test_stream_sends_new_records_and_calls(tmp_path):
    store = RecordStore()
    app = create_app(store, None, lambda: None)
    got: list[str] = []

    def feed():
        import time
        time.sleep(0.5)
        dialog(store, "s-1")
    with TestClient(app) as c:
        threading.Thread(target=feed, daemon=True).start()
        with c.stream("GET", "/api/v1/stream") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                got.append(line)
                if len(got) > 1 and got[-2] == "event: call" and sum(1 for x in got if x == "event: record") >= 7:
                    break
    recs = [json.loads(got[i + 1][6:]) for i, x in enumerate(got) if x == "event: record"]
    assert [r.get("method") or r["status_code"] for r in recs] == ["INVITE", "INVITE", 180, 200, "ACK", "BYE", 200]
    call = json.loads(got[got.index("event: call") + 1][6:])
    assert call["call_id"] == "s-1"
    # a read-only console refuses task changes with a clear message
    with TestClient(app) as c:
        r = c.get("/api/v1/tasks/x")
        assert r.status_code == 405 and "read-only" in r.json()["error"]


@pytest.mark.skipif(os.geteuid() != 0, reason="capturing on loopback needs root")
def test_task_lifecycle_on_loopback(api):
    r = api.post("/api/v1/tasks", content=json.dumps({"id": "lo-t", "interfaces": ["lo"]}),
                 headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    assert r.json()["id"] == "lo-t" and r.json()["status"] == "running"
    assert [t["id"] for t in api.get("/api/v1/tasks").json()] == ["lo-t"]
    assert api.get("/api/v1/tasks/lo-t").json()["spec"]["interfaces"] == ["lo"]
    r = api.post("/api/v1/tasks", content="id: lo-t\ninterfaces: [lo]\n", headers=AUTH)
    assert r.status_code == 409 and "already exists" in r.json()["error"]
    assert api.delete("/api/v1/tasks/lo-t", headers=AUTH).json()["status"] in ("stopped", "completed")
    assert api.get("/api/v1/tasks").json() == []




def test_a_crash_is_a_json_500_without_traceback():
    def broken(_: bytes) -> dict:
        raise RuntimeError("secret internals /etc/x")
    with TestClient(create_app(RecordStore(), broken, lambda: TOKEN), raise_server_exceptions=False) as c:
        r = c.get("/api/v1/tasks")
    assert r.status_code == 500 and r.json() == {"error": "internal error: RuntimeError"}


def test_daemon_refuses_a_taken_port_clearly(tmp_path):
    import socket
    import subprocess

    from ...conftest import otus_bin
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    cfg = tmp_path / "otus.yaml"
    cfg.write_text(f"otus:\n  control:\n    socket: {tmp_path / 'c.sock'}\n  metrics:\n    enabled: false\n"
                   f"  http:\n    enabled: true\n    listen: \"127.0.0.1:{s.getsockname()[1]}\"\n"
                   f"  state_dir: {tmp_path / 'state'}\n")
    try:
        r = subprocess.run([otus_bin(), "daemon", "-c", str(cfg)], capture_output=True, text=True, timeout=60)
    finally:
        s.close()
    assert r.returncode == 2 and "http listen 127.0.0.1:" in r.stderr and "Address already in use" in r.stderr
    assert "Traceback" not in r.stderr
