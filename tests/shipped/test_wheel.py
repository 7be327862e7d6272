"""The wheel and the sdist as shipped: contents, a fresh non-editable install, every module, every
console script, and a slice of the integration tests run against the installed package."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile

import pytest

from .conftest import ROOT, Shipped, check, hot_modules, source_modules

pytestmark = [pytest.mark.shipped, pytest.mark.slow]

CORPUS = ROOT.parent / "shared" / "corpus"
SITE_CHECK = """
import importlib, json, sys
out = {}
for name in sys.argv[1:]:
    m = importlib.import_module(name)
    out[name] = getattr(m, "__file__", None)
print(json.dumps({"modules": out, "prefix": sys.prefix,
                  "cython": importlib.util.find_spec("Cython") is not None}))
"""


def _imports(s: Shipped, python=None) -> dict:
    r = s.run(python or s.python, "-c", SITE_CHECK, *source_modules(), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def test_the_wheel_carries_every_module_and_no_generated_c(shipped):
    names = zipfile.ZipFile(shipped.wheel).namelist()
    for mod in source_modules():
        path = mod.replace(".", "/")
        assert f"{path}.py" in names or f"{path}/__init__.py" in names, f"{mod} missing from the wheel"
    assert not [n for n in names if n.endswith((".c", ".pyx"))]
    assert not [n for n in names if n.endswith(".html") and "/web/static/" not in n], "Cython annotation pages"
    # every committed data file of the packages ships (the console's page, .pxd layouts, py.typed)
    tracked = subprocess.run(["git", "ls-files", "src"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode == 0 and tracked.stdout:
        data = [f.removeprefix("src/") for f in tracked.stdout.split() if not f.endswith((".py", ".md"))]   # .md: notes for developers
        assert data and not [f for f in data if f not in names], "package data missing from the wheel"
    assert not [n for n in names if n.startswith(("tests/", "src/"))]
    if shutil.which("cc") and not os.environ.get("OTUS_PURE_PYTHON"):
        for mod in hot_modules():
            so = [n for n in names if n.startswith(mod.replace(".", "/") + ".") and n.endswith(".so")]
            assert so, f"{mod} was not compiled into the wheel"
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [x for x in zipfile.ZipFile(shipped.wheel).read(meta).decode().splitlines()
                if x.startswith("Requires-Dist:") and "extra ==" not in x]
    assert requires and not [x for x in requires if "cython" in x.lower()], "Cython is a build dependency only"


def test_every_module_imports_from_the_installed_wheel(shipped):
    """From outside the source tree, each module of src/ comes from the fresh venv; Cython is not there."""
    got = _imports(shipped)
    assert got["prefix"] == str(shipped.venv)
    site = str(shipped.venv)
    not_installed = {m: f for m, f in got["modules"].items() if not (f or "").startswith(site)}
    assert not not_installed, not_installed
    assert not got["cython"], "Cython is installed at run time"
    assert not list(shipped.venv.glob("lib/python*/site-packages/__editable__*")), "installed editable"
    direct = list(shipped.venv.glob("lib/python*/site-packages/otus-*.dist-info/direct_url.json"))
    assert direct and '"editable": true' not in direct[0].read_text()
    if shutil.which("cc") and not os.environ.get("OTUS_PURE_PYTHON"):
        for mod in hot_modules():
            assert got["modules"][mod].endswith(".so"), f"{mod} imports uncompiled"


def test_every_console_script_runs(shipped, tmp_path):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"otus", "otus-operator"}, "a new console script: add what it really does here"
    for name in scripts:
        r = shipped.run(shipped.bin(name), "--help", timeout=120)
        assert r.returncode == 0 and r.stdout.startswith("usage:"), (name, r.stderr)
    otus = shipped.bin("otus")
    for cmd in ("run", "daemon", "agent", "validate", "task", "status", "stats", "reload", "stop"):
        r = shipped.run(otus, cmd, "--help", timeout=120)
        assert r.returncode == 0 and "usage:" in r.stdout, (cmd, r.stderr)
    # something real from each: a demo run, a task checked offline, the operator finding no cluster
    r = shipped.run(otus, "run", "--demo", "--demo-calls", "10", timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stderr.strip().splitlines()[-1])["l4_datagrams"] > 0
    task = tmp_path / "task.yaml"
    task.write_text("id: t1\ninterface: eth0\nparsers:\n  - sip\nbpf_filter: \"udp port 5060\"\n"
                    "reporters:\n  - type: file\n    path: /tmp/x.jsonl\n")
    r = shipped.run(otus, "validate", "-f", task, "-o", "json", timeout=120)
    assert r.returncode == 0, r.stderr
    r = shipped.run(shipped.bin("otus-operator"), "--kubeconfig", tmp_path / "none", timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("otus-operator: error: no Kubernetes credentials"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_run_pcap_on_the_corpus(shipped, tmp_path):
    """`otus run --pcap` from the installed wheel on third-party captures: SIP records, no errors."""
    pcaps = {"wireshark-sample-aaa.pcap": 81, "heplify-sip_ipv4_tcp.pcap": 7,
             "heplify-sip_ipv4_tcp_fragmented.pcap": 406}   # SIP messages in each (UDP; TCP; TCP in IP fragments)
    if not all((CORPUS / "pcap/sip" / p).exists() for p in pcaps):
        pytest.skip(f"third-party corpus not present: {CORPUS}")
    for name, messages in pcaps.items():
        out = tmp_path / (name + ".jsonl")
        r = shipped.run(shipped.bin("otus"), "run", "--pcap", CORPUS / "pcap/sip" / name, "--output", out,
                        timeout=300)
        assert r.returncode == 0, r.stderr
        summary = json.loads(r.stderr.strip().splitlines()[-1])
        recs = [json.loads(x) for x in out.read_text().splitlines()]
        sip = [x for x in recs if x["type"] == "sip"]
        assert len(sip) == messages and not [x for x in sip if "error" in x], (name, summary)
        assert all(x["call_id"] for x in sip)


def test_the_sdist_installs(shipped, tmp_path):
    """The sdist (from `git archive HEAD`) installs by itself into another fresh venv and runs. Pure
    Python here: its compiled build is the wheel above, which `python -m build` made from this sdist."""
    with tarfile.open(shipped.sdist) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    for mod in source_modules():
        path = "src/" + mod.replace(".", "/")
        assert f"{path}.py" in names or f"{path}/__init__.py" in names, f"{mod} missing from the sdist"
    assert not [n for n in names if n.endswith(".c")], "generated C in the sdist"
    venv = tmp_path / "sdist-venv"
    check(sys.executable, "-m", "venv", venv, timeout=120)
    env = {**os.environ, "OTUS_PURE_PYTHON": "1"}
    check(venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
          f"{shipped.sdist}[kafka,operator,web]", cwd=shipped.work, env=env, timeout=900)
    got = _imports(shipped, python=venv / "bin" / "python")
    assert all((f or "").startswith(str(venv)) for f in got["modules"].values())
    r = shipped.run(venv / "bin" / "otus", "run", "--demo", "--demo-calls", "5", timeout=300)
    assert r.returncode == 0, r.stderr


# The representative slice: the same test files the suite runs, here importing the installed wheel.
SLICE = [
    "tests/agent/cli/test_cli.py",
    "tests/integration/test_hep.py::test_hep_udp_every_chunk",                              # the corpus
    "tests/integration/test_live_capture.py::test_replayed_calls_one_worker",               # netns
    "tests/integration/test_daemon.py::test_two_tasks_metrics_delete_restart_restore",     # task flow
    "tests/operator/test_operator.py::test_daemonset_mode_lifecycle",                      # emulator
    "tests/operator/test_operator.py::test_sidecar_mode_webhook_and_status",
    "tests/operator/test_entrypoint.py::test_missing_credentials_is_one_line",
]
DRIVER = """
import sys
import otus_agent, otus_operator, otus_spec
for m in (otus_agent, otus_operator, otus_spec):
    assert m.__file__.startswith(sys.prefix + "/"), f"{m.__name__} from {m.__file__}, not the fresh venv"
import pytest
sys.exit(pytest.main(sys.argv[1:]))
"""


def test_a_slice_of_the_suite_against_the_installed_package(shipped):
    r = shipped.run(shipped.python, "-c", DRIVER, "-q", "-p", "no:cacheprovider", "--rootdir", ROOT,
                    "-rs", *[str(ROOT / x) for x in SLICE], timeout=900)
    tail = "\n".join(r.stdout.splitlines()[-30:])
    assert r.returncode == 0, tail + r.stderr[-2000:]
    assert " passed" in tail and " failed" not in tail and " error" not in tail, tail
    if os.geteuid() == 0:
        assert "SKIPPED" not in r.stdout or "corpus not present" in r.stdout, tail
