"""A real `otus daemon` with the HTTP API on loopback, and SIP calls sent to loopback."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest

from tests.support import free_port, wait_for  # noqa: F401 - the web tests import them from here

from ...conftest import otus_bin

pytest.importorskip("fastapi", reason="the web extra (fastapi, uvicorn) is not installed")
TOKEN = "t0k3n-" + uuid.uuid4().hex


class DaemonRun:
    def __init__(self, tmp):
        self.tmp = tmp
        self.sock = str(tmp / "otus.sock")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        token_file = tmp / "token"
        token_file.write_text(TOKEN + "\n")
        token_file.chmod(0o600)
        (tmp / "otus.yaml").write_text(
            f"otus:\n  control:\n    socket: {self.sock}\n  metrics:\n    enabled: false\n"
            f"  http:\n    enabled: true\n    listen: \"127.0.0.1:{self.port}\"\n    token_file: {token_file}\n"
            f"    max_body_bytes: 65536\n  log:\n    level: info\n    format: json\n  state_dir: {tmp / 'state'}\n")
        self.log = tmp / "daemon.log"
        self.proc = subprocess.Popen([otus_bin(), "daemon", "-c", str(tmp / "otus.yaml")], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "ab"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                self.get("/api/v1/status")
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        self.stop()
        raise AssertionError("daemon with HTTP did not start: " + self.log.read_text()[-2000:])

    def request(self, method: str, path: str, body: bytes | None = None, token: str | None = TOKEN,
                ctype: str = "application/yaml") -> tuple[int, object]:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if body is not None:
            req.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def get(self, path: str) -> object:
        code, body = self.request("GET", path)
        assert code == 200, body
        return body

    def cli(self, *args: str) -> dict:
        """`otus ... -o json` against the daemon's socket: (exit code, reply or stderr)."""
        r = subprocess.run([otus_bin(), *args, "--socket", self.sock, "-o", "json"], capture_output=True, text=True,
                           timeout=60)
        return {"rc": r.returncode, "out": json.loads(r.stdout) if r.returncode == 0 else None,
                "err": r.stderr.strip()}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("capturing on loopback needs root (AF_PACKET)")
    d = DaemonRun(tmp_path_factory.mktemp("webd"))
    yield d
    d.stop()


def task_yaml(tid: str, port: int, out=None) -> str:
    rep = f"  - type: file\n    path: {out}\n" if out else "  - type: console\n"
    return (f"id: {tid}\ninterfaces: [lo]\nsip:\n  ports: [{port}]\n  heuristic: false\n"
            f"bpf_filter: \"udp port {port}\"\nreporters:\n{rep}")


def sip(first: str, call_id: str, cseq: str, caller: tuple, callee: tuple, from_user: str = "alice",
        to_user: str = "bob", branch: str = "z9hG4bK1", extra: str = "") -> bytes:
    ch, cp = caller
    eh, ep = callee
    return (f"{first}\r\nVia: SIP/2.0/UDP {ch}:{cp};branch={branch}\r\n"
            f"From: \"{from_user}\" <sip:{from_user}@{ch}>;tag=a1\r\nTo: <sip:{to_user}@{eh}>"
            f"{';tag=b2' if first.startswith('SIP/2.0') else ''}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n"
            f"{extra}Content-Length: 0\r\n\r\n").encode("utf-8", "surrogateescape")


def send_call(callee_port: int, call_id: str, from_user: str = "alice", to_user: str = "bob", retransmit: bool = True,
              extra: str = "") -> list[tuple[str, str, str]]:
    """One INVITE dialog over loopback, caller and callee each with its own socket: INVITE (sent twice:
    a retransmission), 100, 180, 200, ACK, BYE, 200.  Returns (src, dst, label) in the order sent."""
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", callee_port))
    try:
        caller, callee = a.getsockname(), b.getsockname()
        A, B = f"127.0.0.1:{caller[1]}", f"127.0.0.1:{callee[1]}"
        steps = [(a, callee, f"INVITE sip:{to_user}@127.0.0.1 SIP/2.0", "1 INVITE", "z9hG4bK1", "INVITE", A, B)]
        if retransmit:
            steps.append(steps[0])
        steps += [(b, caller, "SIP/2.0 100 Trying", "1 INVITE", "z9hG4bK1", "100 Trying", B, A),
                  (b, caller, "SIP/2.0 180 Ringing", "1 INVITE", "z9hG4bK1", "180 Ringing", B, A),
                  (b, caller, "SIP/2.0 200 OK", "1 INVITE", "z9hG4bK1", "200 OK", B, A),
                  (a, callee, f"ACK sip:{to_user}@127.0.0.1 SIP/2.0", "1 ACK", "z9hG4bK2", "ACK", A, B),
                  (a, callee, f"BYE sip:{to_user}@127.0.0.1 SIP/2.0", "2 BYE", "z9hG4bK3", "BYE", A, B),
                  (b, caller, "SIP/2.0 200 OK", "2 BYE", "z9hG4bK3", "200 OK", B, A)]
        sent = []
        for s, dst, first, cseq, branch, label, src_ep, dst_ep in steps:
            s.sendto(sip(first, call_id, cseq, caller, callee, from_user, to_user, branch, extra), dst)
            sent.append((src_ep, dst_ep, label))
            time.sleep(0.02)   # distinct capture times: the ladder's order is the capture order
        return sent
    finally:
        a.close()
        b.close()




