"""The API fuzzed against its own OpenAPI document (schemathesis): no 5xx, and every error is JSON
with an "error" message.  In process, on the control socket's real dispatch and a real TaskManager
(a generated task that names an existing interface really starts, and is shut down afterwards).
The live stream is left out: it is endless by design (tests/agent/web/test_api.py reads it)."""
from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")
from hypothesis import HealthCheck, settings  # noqa: E402

from otus_agent.daemon.manager import TaskManager  # noqa: E402
from otus_agent.daemon.uds import ControlServer  # noqa: E402
from otus_agent.web.app import create_app  # noqa: E402
from otus_agent.web.store import RecordStore  # noqa: E402

from .test_store import dialog  # noqa: E402

TOKEN = "fuzz-token"
VALIDATED = {"/api/v1/connections", "/api/v1/icmp", "/api/v1/stats"}
_state: dict = {}


def _app():
    import tempfile
    tmp = tempfile.mkdtemp(prefix="otus-fuzz-")
    m = TaskManager(f"{tmp}/state")
    ctl = ControlServer(f"{tmp}/c.sock", 0o600, None, m, lambda: {"version": "x"}, lambda: {}, lambda: {},
                        lambda: None)
    ctl.start()
    import os
    if os.geteuid() == 0:    # a live flow table for /api/v1/connections and /api/v1/icmp to read
        from otus_spec import TaskSpec
        m.create(TaskSpec(id="fuzz-flow", interfaces=["lo"], parsers=["flow"], bpf_filter="icmp or udp port 9",
                          reporters=[{"type": "file", "path": os.devnull}]))
        import socket
        import time
        time.sleep(0.5)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:    # a row, and a port unreachable
            u.sendto(b"fuzz", ("127.0.0.1", 9))
    store = RecordStore(max_calls=100)
    dialog(store, "fuzz-call")
    _state.update(manager=m, control=ctl)
    return create_app(store, ctl.dispatch, lambda: TOKEN, max_body=16384)


schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", _app())


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    _state["manager"].shutdown(5)
    _state["control"].close()


@schema.exclude(path="/api/v1/stream").parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_fuzz(case):
    for headers in ({"Authorization": f"Bearer {TOKEN}"}, {}):
        r = case.call(headers=headers)
        assert r.status_code < 500, (r.status_code, r.text)
        if r.status_code == 200 and case.path in VALIDATED:
            case.validate_response(r)           # the answer is what the OpenAPI document says
        if r.status_code >= 400:
            ct = {k.lower(): v for k, v in r.headers.items()}.get("content-type", "")
            ct = ct[0] if isinstance(ct, list) else ct
            assert ct.startswith("application/json"), (r.status_code, ct, r.text)
            body = r.json()
            assert isinstance(body.get("error"), str) and body["error"], body
