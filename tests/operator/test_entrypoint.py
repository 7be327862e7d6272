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


def _start(cluster, tmp_path, *extra: str, env: dict | None = None):
    """`otus-operator` as a user starts it; its output is drained in a thread (a full pipe would block it)."""
    import io
    import threading

    from support import free_port
    ports = {"metrics": free_port(), "hook": free_port(), "ready": free_port()}
    proc = subprocess.Popen([_bin(), "--kubeconfig", cluster.operator_kubeconfig, "--no-events",
                             "--status-interval", "1", "--liveness", "", "--metrics-port", str(ports["metrics"]),
                             "--readiness", f"127.0.0.1:{ports['ready']}",
                             "--webhook-port", str(ports["hook"]), "--webhook-namespace", "otus-system",
                             "--agent-image", "registry.example/otus-agent:9.9", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "TMPDIR": str(tmp_path), "PYTHONFAULTHANDLER": "1", **(env or {})})
    out = io.BytesIO()
    def pump() -> None:
        for line in proc.stdout:
            out.write(line)
    drain = threading.Thread(target=pump, daemon=True)
    drain.start()
    proc.ports, proc.out, proc.drain = ports, out, drain
    return proc


def _readyz(proc) -> tuple[int, str]:
    import urllib.error
    import urllib.request
    try:
        r = urllib.request.urlopen(f"http://127.0.0.1:{proc.ports['ready']}/readyz", timeout=2)
        return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _output(proc) -> str:
    proc.drain.join(5)
    return proc.out.getvalue().decode(errors="replace")


def _task(api, ns: str, name: str) -> None:
    api.create_namespaced_custom_object("otus.io", "v1alpha1", ns, "capturetasks", {
        "apiVersion": "otus.io/v1alpha1", "kind": "CaptureTask", "metadata": {"name": name, "namespace": ns},
        "spec": {"target": {"nodes": {}}}})


def _check_rbac(cluster) -> None:
    from emulator import OPERATOR_USER, uncovered_calls
    missing = uncovered_calls(cluster.calls(OPERATOR_USER))
    assert not missing, "API calls not allowed by the operator's RBAC rules:\n" + "\n".join(missing)


ROUNDS = 4


def test_the_console_script_runs_the_operator_and_sigterm_stops_it_within_5s(tmp_path):
    """`otus-operator` as a user starts it, against an emulator of its own (no other operator on it): a
    CaptureTask becomes a DaemonSet, metrics are served, the webhook listens, it is ready; SIGTERM stops
    it cleanly within 5 s, in each of several rounds (issue 12: it used to hang after the status daemon)."""
    import signal
    import socket
    import time
    import urllib.request
    import uuid

    from emulator import Cluster
    from kubernetes import client
    from support import wait_for
    for round_ in range(ROUNDS):
        cluster = Cluster().start()
        try:
            ns = f"e-{uuid.uuid4().hex[:6]}"
            proc = _start(cluster, tmp_path)
            try:
                api = client.CustomObjectsApi(cluster.client())
                apps = client.AppsV1Api(cluster.client())
                _task(api, ns, "cli")
                ds = wait_for(lambda: apps.read_namespaced_daemon_set("otus-cli", ns), timeout=30,
                              what="the DaemonSet")
                assert ds.spec.template.spec.containers[0].image == "registry.example/otus-agent:9.9"
                wait_for(lambda: (api.get_namespaced_custom_object("otus.io", "v1alpha1", ns, "capturetasks", "cli")
                                  .get("status") or {}).get("phase") == "Pending", timeout=30, what="status")
                code, why = wait_for(lambda: (r := _readyz(proc))[0] == 200 and r, timeout=10, what="ready")
                assert why.strip() == "watching CaptureTasks"
                if round_ == 0:
                    text = urllib.request.urlopen(f"http://127.0.0.1:{proc.ports['metrics']}/metrics",
                                                  timeout=5).read().decode()
                    assert 'otus_operator_reconciles_total{result="ok"}' in text
                    with socket.create_connection(("127.0.0.1", proc.ports["hook"]), timeout=5):
                        pass                                   # the webhook server listens (TLS, self-signed)
                _task(api, ns, f"late-{round_}")           # events in flight when the signal arrives
            finally:
                t0 = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGABRT)      # PYTHONFAULTHANDLER: every thread's stack in the output
                    try:
                        proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                took = time.monotonic() - t0
            out = _output(proc)
            assert proc.returncode == 0 and took < 5, f"round {round_}: rc {proc.returncode} after {took:.1f} s\n" \
                + out[-12000:]
            assert "Traceback" not in out, out[-3000:]
            _check_rbac(cluster)
        finally:
            cluster.stop()


def test_two_replicas_one_active_and_the_standby_takes_over(tmp_path):
    """Two replicas peer through a ClusterKopfPeering (as the chart installs it): the one with the higher
    priority reconciles, the other stands by (Ready: it serves the webhook); SIGKILL the active one and
    the standby reconciles a new CaptureTask within 15 s."""
    import signal
    import time
    import uuid

    from emulator import Cluster
    from kubernetes import client
    from support import wait_for
    cluster = Cluster().start()
    procs = []
    try:
        api = client.CustomObjectsApi(cluster.client())
        apps = client.AppsV1Api(cluster.client())
        api.create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", {
            "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "otus"}})
        ns = f"p-{uuid.uuid4().hex[:6]}"
        low = _start(cluster, tmp_path, "--peering", "otus", "--priority", "10", env={"POD_ID": "op-low"})
        high = _start(cluster, tmp_path, "--peering", "otus", "--priority", "20", env={"POD_ID": "op-high"})
        procs += [low, high]
        wait_for(lambda: _readyz(high) == (200, "watching CaptureTasks\n"), timeout=30, what="the active one ready")
        wait_for(lambda: _readyz(low)[0] == 200 and "standby" in _readyz(low)[1], timeout=30,
                 what="the standby ready")
        peers = api.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", "otus")["status"]
        assert set(peers) == {"op-low", "op-high"} and peers["op-high"]["priority"] == 20
        _task(api, ns, "one")
        wait_for(lambda: apps.read_namespaced_daemon_set("otus-one", ns), timeout=30, what="reconciled by the active")
        time.sleep(1)
        assert "reconciled" in _output_so_far(high) and "reconciled" not in _output_so_far(low)

        high.send_signal(signal.SIGKILL)                    # no goodbye in the peering object
        high.wait()
        killed = time.monotonic()
        _task(api, ns, "two")
        wait_for(lambda: apps.read_namespaced_daemon_set("otus-two", ns), timeout=15, interval=0.2,
                 what="the standby reconciling after the active one died")
        took = time.monotonic() - killed
        assert took < 15, took
        assert _readyz(low) == (200, "watching CaptureTasks\n")
        _check_rbac(cluster)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        cluster.stop()


def _output_so_far(proc) -> str:
    return proc.out.getvalue().decode(errors="replace")
