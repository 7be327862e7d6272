"""`otus-operator`: the console script exists, and bad settings are one clear line, not a traceback."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys


def _bin() -> str:
    found = shutil.which("otus-operator", path=os.path.dirname(sys.executable))
    assert found, "the otus-operator console script is installed with the package"
    return found


def test_help_names_the_options():
    out = subprocess.run([_bin(), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for opt in ("--namespace", "--no-webhook", "--webhook-cert-dir", "--sidecar", "--status-interval"):
        assert opt in out.stdout


def test_missing_credentials_is_one_line(tmp_path):
    out = subprocess.run([_bin(), "--kubeconfig", str(tmp_path / "nope")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert out.stderr.startswith("otus-operator: error: no Kubernetes credentials") and "Traceback" not in out.stderr


def test_bad_interval_is_refused():
    out = subprocess.run([_bin(), "--status-interval", "0.1"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "at least 1 second" in out.stderr


def test_the_console_script_runs_the_operator(tmp_path):
    """`otus-operator` as a user starts it, against an emulator of its own (no other operator on it): a
    CaptureTask becomes a DaemonSet, metrics are served, the webhook listens, SIGTERM stops it."""
    from emulator import Cluster
    cluster = Cluster().start()
    try:
        _run_console_script(cluster, tmp_path)
    finally:
        cluster.stop()


def _run_console_script(cluster, tmp_path):
    import signal
    import socket
    import urllib.request
    import uuid

    from emulator import wait_for
    from kubernetes import client

    def port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    metrics, hook = port(), port()
    ns = f"e-{uuid.uuid4().hex[:6]}"
    # all namespaces: with --namespace kopf lists /api/v1/namespaces, a path kmock 0.8 cannot parse
    proc = subprocess.Popen([_bin(), "--kubeconfig", cluster.kubeconfig, "--no-events",
                             "--status-interval", "1", "--liveness", "", "--metrics-port", str(metrics),
                             "--webhook-port", str(hook), "--webhook-namespace", "otus-system",
                             "--agent-image", "registry.example/otus-agent:9.9"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        api = client.CustomObjectsApi(cluster.client())
        apps = client.AppsV1Api(cluster.client())
        api.create_namespaced_custom_object("otus.io", "v1alpha1", ns, "capturetasks", {
            "apiVersion": "otus.io/v1alpha1", "kind": "CaptureTask", "metadata": {"name": "cli", "namespace": ns},
            "spec": {"target": {"nodes": {}}}})
        ds = wait_for(lambda: apps.read_namespaced_daemon_set("otus-cli", ns), timeout=30, what="the DaemonSet")
        assert ds.spec.template.spec.containers[0].image == "registry.example/otus-agent:9.9"
        wait_for(lambda: (api.get_namespaced_custom_object("otus.io", "v1alpha1", ns, "capturetasks", "cli")
                          .get("status") or {}).get("phase") == "Pending", timeout=30, what="status")
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
        assert 'otus_operator_reconciles_total{result="ok"}' in text
        with socket.create_connection(("127.0.0.1", hook), timeout=5):
            pass                                   # the webhook server listens (TLS, self-signed)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out.decode()[-3000:]
    assert b"Traceback" not in out, out.decode()[-3000:]
