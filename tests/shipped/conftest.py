"""Otus as users get it: the sdist and the wheel built from a clean export of the committed tree
(`git archive HEAD`, as CI's clean clone has it), the wheel installed with its extras into a fresh
virtual environment (never editable) and run from a directory outside the source tree.

OTUS_DIST names a directory that already holds that sdist and wheel (`.ci/run` builds them once, and
`scripts/bootstrap` installs the same wheel): then nothing is compiled again here.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXTRAS = "kafka,operator,web,test"


def run(*args, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kw)


def check(*args, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    r = run(*args, timeout=timeout, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, args))}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def source_modules() -> list[str]:
    """Every module of the committed source tree (`git ls-tree HEAD src`; the working tree's src/
    when this is no git checkout), as import names."""
    r = run("git", "-C", ROOT, "ls-tree", "-r", "--name-only", "HEAD", "src", timeout=30) \
        if shutil.which("git") else None
    if r is not None and r.returncode == 0 and r.stdout.strip():
        files = [pathlib.PurePosixPath(x) for x in r.stdout.split()]
    else:
        files = [p.relative_to(ROOT) for p in (ROOT / "src").rglob("*.py")]
    mods = []
    for f in files:
        if f.suffix != ".py" or f.name == "__main__.py":
            continue
        parts = list(f.relative_to("src").with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods.append(".".join(parts))
    return sorted(mods)


def hot_modules() -> list[str]:
    """The modules setup.py compiles (its HOT_MODULES list)."""
    import ast
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "HOT_MODULES":
            paths = ast.literal_eval(node.value)
            return [p[len("src/"):-len(".py")].replace("/", ".") for p in paths]
    raise AssertionError("setup.py has no HOT_MODULES list")


def build_dist(out: pathlib.Path, tmp: pathlib.Path) -> None:
    """`python -m build` from `git archive HEAD`: the sdist, then the wheel built from that sdist."""
    if shutil.which("git") is None or run("git", "-C", ROOT, "rev-parse", "HEAD", timeout=30).returncode:
        pytest.skip("not a git checkout: the shipped tier builds from `git archive HEAD`")
    pytest.importorskip("build", reason="the shipped tier needs `build` (the [test] extra has it)")
    export = tmp / "export"
    export.mkdir()
    archive = tmp / "head.tar"
    check("git", "-C", ROOT, "archive", "--format=tar", "-o", archive, "HEAD", timeout=60)
    with tarfile.open(archive) as t:
        t.extractall(export, filter="data")
    check(sys.executable, "-m", "build", "--outdir", out, export, timeout=900)


@dataclass
class Shipped:
    wheel: pathlib.Path
    sdist: pathlib.Path
    venv: pathlib.Path
    work: pathlib.Path          # the working directory of every command: outside the source tree

    @property
    def python(self) -> pathlib.Path:
        return self.venv / "bin" / "python"

    def bin(self, name: str) -> pathlib.Path:
        return self.venv / "bin" / name

    def run(self, *args, **kw) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return run(*args, cwd=self.work, env=env, **kw)


def find_dist(d: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    wheels, sdists = sorted(d.glob("otus-*.whl")), sorted(d.glob("otus-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, f"{d} should hold one otus wheel and one sdist"
    return wheels[0], sdists[0]


@pytest.fixture(scope="session")
def shipped(tmp_path_factory) -> Shipped:
    tmp = tmp_path_factory.mktemp("shipped")
    if os.environ.get("OTUS_DIST"):
        dist = pathlib.Path(os.environ["OTUS_DIST"]).resolve()
    else:
        dist = tmp / "dist"
        build_dist(dist, tmp)
    wheel, sdist = find_dist(dist)
    venv = tmp / "venv"
    work = tmp / "work"
    work.mkdir()
    assert ROOT not in work.parents
    check(sys.executable, "-m", "venv", venv, timeout=120)
    check(venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
          f"{wheel}[{EXTRAS}]", cwd=work, timeout=900)
    return Shipped(wheel, sdist, venv, work)
