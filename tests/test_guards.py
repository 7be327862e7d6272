"""The guards: one-way layers (import-linter), style (ruff) and types (mypy), as configured in pyproject.toml."""
import operator
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent


def _tool(name: str) -> str:
    exe = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if not exe:
        pytest.fail(f"{name} is not installed: pip install '.[test]'")
    return exe


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_layers_point_one_way():
    r = _run(_tool("lint-imports"), "--no-cache")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_ruff():
    r = _run(_tool("ruff"), "check", "--no-cache", "src", "bench", "scripts", "tests")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_mypy():
    r = _run(_tool("mypy"), "--no-incremental", "--cache-dir", "/dev/null")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_stdlib_operator_is_not_shadowed():
    """No package imports as a top-level ``operator``: from the repository root (first on
    sys.path, as for ``python -c`` or a build) the stdlib module must still win."""
    assert hasattr(operator, "itemgetter")
    for path in (ROOT / "operator.py", ROOT / "operator" / "__init__.py", ROOT / "src" / "operator"):
        assert not path.exists(), path
    r = subprocess.run([sys.executable, "-c", "import operator; print(operator.__file__)"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and str(ROOT) not in r.stdout, r.stdout + r.stderr


# tests/agent/<package>/ tests src/otus_agent/<package>/; modules of the package root itself sit in tests/agent/
AGENT_TESTS = ROOT / "tests" / "agent"
AGENT_SRC = ROOT / "src" / "otus_agent"


def test_agent_tests_mirror_the_packages():
    packages = {p.name for p in AGENT_SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    folders = {p.name for p in AGENT_TESTS.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= packages, f"test folders without a package: {sorted(folders - packages)}"
    loose = {p.stem.removeprefix("test_") for p in AGENT_TESTS.glob("test_*.py")}
    root_modules = {p.stem.lstrip("_") for p in AGENT_SRC.glob("*.py")}
    assert loose <= root_modules, f"tests/agent/ holds tests of packages, move them: {sorted(loose - root_modules)}"
