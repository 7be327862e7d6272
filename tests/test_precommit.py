"""`.pre-commit-config.yaml` runs the guards of `tests/test_guards.py`: the same tools with the same arguments."""
from __future__ import annotations

import ast
import pathlib
import shlex

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _guard_commands() -> dict[str, list[str]]:
    """tool -> arguments, read from the ``_run(_tool("x"), ...)`` calls of test_guards.py."""
    tree = ast.parse((ROOT / "tests" / "test_guards.py").read_text())
    found: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_run"):
            continue
        first = node.args[0]
        if isinstance(first, ast.Call) and isinstance(first.func, ast.Name) and first.func.id == "_tool":
            found[ast.literal_eval(first.args[0])] = [ast.literal_eval(a) for a in node.args[1:]]
    return found


def _hooks() -> list[dict]:
    cfg = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    assert isinstance(cfg, dict) and isinstance(cfg.get("repos"), list), "not a pre-commit config"
    hooks = []
    for repo in cfg["repos"]:
        assert repo["repo"] == "local", "the guards run the venv's tools, not downloaded hook repositories"
        hooks.extend(repo["hooks"])
    return hooks


def test_the_hooks_run_what_test_guards_runs():
    guards = _guard_commands()
    assert set(guards) == {"ruff", "mypy", "lint-imports"}   # the parse above found the guards
    hooks = {}
    for h in _hooks():
        assert {"id", "name", "entry", "language"} <= set(h), h
        assert h["language"] == "system" and h["pass_filenames"] is False, h["id"]
        exe, *args = shlex.split(h["entry"])
        assert exe.startswith(".venv/bin/"), f"{h['id']}: {exe} is not the venv's tool"
        hooks[pathlib.PurePosixPath(exe).name] = args
    assert hooks == guards
