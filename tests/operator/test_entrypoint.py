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
