"""The two images, as `scripts/images` builds them (buildah, no Docker), run by podman.

They are skipped when the images are not in the local containers storage (run `scripts/images`
first); with OTUS_REQUIRE_IMAGES=1 (CI) a missing image or podman fails instead. With
OTUS_IMAGES_READY (CI builds the images while the suite runs), they wait for that build's status file. Every container
here is started by the test under a name of its own and removed afterwards; the live capture runs
in network namespaces of the test's own, also removed on failure, with bounded traffic.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from ..netns import require_root_and, veth_pair, wait_for_packet_sockets
from .conftest import ROOT

pytestmark = pytest.mark.images

TAG = os.environ.get("OTUS_IMAGE_TAG", "dev")
AGENT = f"localhost/otus-agent:{TAG}"
OPERATOR = f"localhost/otus-operator:{TAG}"


def _missing(why: str) -> None:
    if os.environ.get("OTUS_REQUIRE_IMAGES") == "1":
        pytest.fail(why)
    pytest.skip(why)


# podman's settings for hosts where root lacks CAP_SYS_RESOURCE, as scripts/images uses them
ENV = {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(ROOT / ".ci" / "containers.conf"))}


def podman(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=ENV, **kw)


@pytest.fixture(scope="module")
def images() -> None:
    ready = os.environ.get("OTUS_IMAGES_READY")
    if ready:
        # .ci/run builds the images while the suite runs and writes "<status> <seconds>" here when done
        deadline = time.monotonic() + float(os.environ.get("OTUS_IMAGES_WAIT_S", "1500"))
        while not os.path.exists(ready):
            if time.monotonic() > deadline:
                pytest.fail(f"scripts/images did not finish: no {ready}")
            time.sleep(2)
        status = open(ready).read().split()[0]
        if status != "0":
            pytest.fail(f"scripts/images failed (status {status}): see its log in .ci/run's output")
    if shutil.which("podman") is None:
        _missing("needs podman (scripts/images installs it as root)")
    for image in (AGENT, OPERATOR):
        if podman("image", "exists", image).returncode != 0:
            _missing(f"{image} not built: run scripts/images")


def _name(what: str) -> str:
    return f"otus-test-{what}-{os.getpid()}"


def test_agent_help(images):
    r = podman("run", "--rm", "--name", _name("help"), AGENT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: otus") and "run" in r.stdout and "daemon" in r.stdout


def test_agent_image_is_compiled_and_unprivileged(images):
    code = ("import os, shutil, otus_agent.decode.decoder as d; "
            "print(os.getuid(), d.COMPILED, shutil.which('gcc') is None, shutil.which('otus'))")
    r = podman("run", "--rm", "--name", _name("facts"), "--entrypoint", "python3", AGENT, "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["10001", "True", "True", "/opt/otus/bin/otus"]


def test_agent_run_pcap_on_a_mounted_capture(images, workload_pcap, tmp_path):
    """`otus run --pcap` on a capture mounted read-only, as the image's user on a read-only root."""
    path, wl = workload_pcap
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(path, data / "calls.pcap")
    data.chmod(0o755)                     # readable by the image's user, UID 10001
    (data / "calls.pcap").chmod(0o644)
    r = podman("run", "--rm", "--name", _name("pcap"), "--read-only", "--cap-drop", "ALL",
               "-v", f"{data}:/data:ro", AGENT, "run", "--pcap", "/data/calls.pcap", timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stderr.strip().splitlines()[-1])
    assert summary["packets"] == wl.packets and summary["drops"] == {}
    sip = [x for x in map(json.loads, r.stdout.splitlines()) if x["type"] == "sip"]
    assert len(sip) == wl.sip_messages and not [x for x in sip if "error" in x]
    assert {x["call_id"] for x in sip} == {c.call_id for c in wl.calls}


MSG = ("OPTIONS sip:a@{dst} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:5070;branch=z9hG4bK{i}\r\n"
       "From: <sip:b@{src}>;tag={i}\r\nTo: <sip:a@{dst}>\r\nCall-ID: img-{i}\r\nCSeq: 1 OPTIONS\r\n"
       "Content-Length: 0\r\n\r\n")
COUNT = 25


def test_agent_live_capture_in_a_network_namespace(images, tmp_path):
    """The agent container joins a namespace of this test's own with only NET_RAW and NET_ADMIN (UID 0,
    read-only root: what the operator's manifests give it) and turns COUNT sent OPTIONS into records."""
    require_root_and()
    name = _name("live")
    out = tmp_path / "out"
    out.mkdir()
    with veth_pair("img", subnet=84) as p:
        proc = subprocess.Popen(
            ["podman", "run", "--rm", "--name", name, "--network", f"ns:/run/netns/{p.ns_b}",
             "--cap-drop", "ALL", "--cap-add", "NET_RAW,NET_ADMIN", "--user", "0", "--read-only",
             "--security-opt", "no-new-privileges", "-v", f"{out}:/out",
             AGENT, "run", "-i", p.if_b, "--output", "/out/records.jsonl"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
        try:
            wait_for_packet_sockets(p, p.ns_b, timeout=60, settle=0.3, proc=proc)
            code = ("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                    f"for i in range({COUNT}):\n"
                    f"    s.sendto({MSG!r}.format(dst='{p.ip_b}', src='{p.ip_a}', i=i).encode(), "
                    f"('{p.ip_b}', 5060))\n")
            p.run(p.ns_a, "python3", "-c", code)
            records = out / "records.jsonl"
            deadline = time.monotonic() + 30
            while not (records.exists() and len(records.read_text().splitlines()) >= COUNT):
                assert time.monotonic() < deadline, "records did not arrive"
                time.sleep(0.2)
            podman("kill", "--signal", "INT", name)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                podman("rm", "--force", "--time", "2", name, timeout=60)
                proc.wait(30)
    assert proc.returncode == 0, err
    summary = json.loads(err.strip().splitlines()[-1])
    recs = [json.loads(x) for x in records.read_text().splitlines()]
    assert sorted(r["call_id"] for r in recs) == sorted(f"img-{i}" for i in range(COUNT))
    assert {r["method"] for r in recs} == {"OPTIONS"} and summary["drops"] == {}


def test_operator_reaches_the_cluster_check(images):
    """UID 10001 on a read-only root: the operator starts, needs a cluster and says so in one line."""
    r = podman("run", "--rm", "--name", _name("op"), "--user", "10001", "--read-only", "--cap-drop", "ALL",
               OPERATOR)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("otus-operator: error: no Kubernetes credentials"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_operator_image_has_no_compiler_and_no_compiled_agent(images):
    code = ("import glob, shutil, sysconfig, otus_operator.main, otus_agent.decode.decoder as d; "
            "print(d.COMPILED, shutil.which('gcc') or shutil.which('cc'), "
            "len(glob.glob(sysconfig.get_path('purelib') + '/otus_agent/**/*.so', recursive=True)))")
    r = podman("run", "--rm", "--name", _name("opfacts"), "--read-only", "--entrypoint", "python3", OPERATOR,
               "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "None", "0"]
