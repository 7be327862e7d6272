"""Project layout rules from ARCHITECTURE.md that code could silently break."""
import ast
import operator
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_stdlib_operator_is_not_shadowed():
    """From the repository root (first on sys.path, as for `python -c` or a build), the
    stdlib module must still win."""
    assert hasattr(operator, "itemgetter")
    assert not (ROOT / "operator.py").exists()
    assert not (ROOT / "operator" / "__init__.py").exists()
    r = subprocess.run([sys.executable, "-c", "import operator; print(operator.__file__)"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and str(ROOT) not in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-c", "import otus_operator, otus_agent"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_decode_never_imports_later_stages():
    """decode and reassembly know only the stages before them."""
    forbidden = {"reporters", "parsers", "processors", "control", "pipeline", "cli"}
    for folder in ("decode", "reassembly", "capture"):
        for path in (ROOT / "src" / "otus_agent" / folder).glob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module:
                    parts = set(node.module.split("."))
                    assert not parts & forbidden, f"{path.name} imports {node.module}"


def test_operator_package_does_not_import_capture_code():
    for path in (ROOT / "src" / "otus_operator").rglob("*.py"):
        assert "otus_agent" not in path.read_text(), path
