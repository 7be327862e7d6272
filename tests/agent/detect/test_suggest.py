"""``otus filter suggest`` (otus_agent.suggest) against a local server speaking the OpenAI chat-completions
protocol: no model can run here, so the server returns scripted answers (the feature works with any
compatible server). libpcap compiles the BPF for real."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Iterator

import pytest

from otus_agent.suggest import SuggestError, SuggestSettings, confirm_and_apply, suggest_filter, validate_answer

GOOD = {"bpf": "tcp and src net 10.1.0.0/16 and port 5060", "sip": {"ports": [5060]},
        "explanation": "SIP over TCP from 10.1.0.0/16"}


class Server:
    def __init__(self) -> None:
        self.answer: object = {"choices": [{"message": {"role": "assistant", "content": json.dumps(GOOD)}}]}
        self.status = 200
        self.requests: list[tuple[dict, dict]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length", 0))
                outer.requests.append((dict(self.headers), json.loads(self.rfile.read(n))))
                body = outer.answer if isinstance(outer.answer, bytes) else json.dumps(outer.answer).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: object) -> None:
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def say(self, content: str) -> None:
        self.answer = {"choices": [{"message": {"role": "assistant", "content": content}}]}


@pytest.fixture()
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def settings(s: Server) -> SuggestSettings:
    return SuggestSettings(url=s.url, model="any-model", timeout_s=10)


def test_good_answer_is_validated_and_sent_properly(server: Server) -> None:
    sug = suggest_filter("SIP INVITEs from 10.1.0.0/16 over TCP", settings(server), env={"OTUS_LLM_API_KEY": "k1"})
    assert sug.bpf == GOOD["bpf"] and sug.sip.ports == [5060]
    headers, body = server.requests[0]
    assert headers["Authorization"] == "Bearer k1"
    assert body["model"] == "any-model" and body["messages"][-1]["content"].startswith("SIP INVITEs")


def test_fenced_json_is_accepted(server: Server) -> None:
    server.say("```json\n" + json.dumps(GOOD) + "\n```")
    assert suggest_filter("x", settings(server), env={}).bpf == GOOD["bpf"]


@pytest.mark.parametrize("content, message", [
    ("Sure! Capture port 5060.", "not answer with a JSON object"),
    (json.dumps({"bpf": "tcp and port 5060 and", "sip": {}}), "does not compile"),
    (json.dumps({"bpf": "port 5060", "sip": {"ports": [70000]}}), "SIP selectors are not valid"),
    (json.dumps({"bpf": "port 5060", "run": "rm -rf /"}), "wrong shape"),
    (json.dumps({"bpf": "port 5060\nor port 22"}), "control characters"),
    (json.dumps({"bpf": "x" * 5000}), "wrong shape"),
    (json.dumps([GOOD]), "not answer with a JSON object"),
])
def test_bad_or_hostile_answers_are_clear_errors(server: Server, content: str, message: str) -> None:
    server.say(content)
    with pytest.raises(SuggestError, match=message):
        suggest_filter("x", settings(server), env={})


def test_endpoint_errors(server: Server) -> None:
    server.status = 401
    server.answer = {"error": "no key"}
    with pytest.raises(SuggestError, match="HTTP 401"):
        suggest_filter("x", settings(server), env={})
    server.status = 200
    server.answer = b"<html>"
    with pytest.raises(SuggestError, match="not a chat completion"):
        suggest_filter("x", settings(server), env={})
    with pytest.raises(SuggestError, match="cannot reach"):
        suggest_filter("x", SuggestSettings(url="http://127.0.0.1:9/v1", model="m", timeout_s=2), env={})
    with pytest.raises(SuggestError, match="describe the traffic"):
        suggest_filter("  ", settings(server), env={})


def test_never_applied_without_confirmation() -> None:
    sug = validate_answer(json.dumps(GOOD))
    applied: list = []
    shown: list[str] = []
    assert not confirm_and_apply(sug, lambda text: shown.append(text) is not None, applied.append)
    assert applied == [] and GOOD["bpf"] in shown[0]
    assert confirm_and_apply(sug, lambda text: True, applied.append) and applied == [sug]


def _cli(args: list[str], env_key: str | None = "k-123", stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTUS_LLM")}
    if env_key is not None:
        env["OTUS_LLM_API_KEY"] = env_key
    return subprocess.run([sys.executable, "-m", "otus_agent.cli.main", "filter", "suggest", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=60)


def test_cli_shows_the_checked_suggestion_and_changes_nothing(server):
    r = _cli(["SIP over TCP from 10.1.0.0/16", "--url", server.url, "--model", "m"])
    assert r.returncode == 0, r.stderr
    assert "bpf_filter: tcp and src net 10.1.0.0/16 and port 5060" in r.stdout
    headers, _body = server.requests[-1]
    assert headers.get("Authorization") == "Bearer k-123"     # the key from the environment
    assert "k-123" not in r.stdout + r.stderr


def test_cli_applies_to_a_task_file_only_on_yes(server, tmp_path):
    import yaml
    task = tmp_path / "task.yaml"
    task.write_text("id: t1\ninterfaces: [lo]\nsip:\n  heuristic: false\n")
    before = task.read_text()
    r = _cli(["SIP over TCP", "--url", server.url, "--model", "m", "--apply", str(task)], stdin="n\n")
    assert r.returncode == 1 and "not applied" in r.stdout
    assert task.read_text() == before
    r = _cli(["SIP over TCP", "--url", server.url, "--model", "m", "--apply", str(task)], stdin="y\n")
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(task.read_text())
    assert doc["bpf_filter"] == GOOD["bpf"]
    assert doc["sip"] == {"heuristic": False, "ports": [5060]}


def test_cli_hostile_answer_and_missing_endpoint_are_one_line_errors(server, tmp_path):
    server.say("rm -rf / ; {\"bpf\": \"not a (filter\"}")
    r = _cli(["anything", "--url", server.url, "--model", "m"])
    assert r.returncode == 2 and r.stderr.startswith("otus: error: ") and "Traceback" not in r.stderr
    r = _cli(["anything"])
    assert r.returncode == 2 and "--url and --model" in r.stderr
