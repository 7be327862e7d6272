"""The pure build runs without Cython: the shim must carry every ``cython.X`` the sources use."""
import pathlib
import re

from otus_agent import _cython_shim

SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "otus_agent"


def test_every_cython_name_the_sources_use_exists_in_the_shim():
    used = set()
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        if "import cython" in text:
            used |= set(re.findall(r"\bcython\.([A-Za-z_]\w*)", text)) - {"cimports"}  # compiled branch only
    assert used, "no compiled module found"
    missing = sorted(n for n in used if not hasattr(_cython_shim, n))
    assert not missing, f"add to otus_agent/_cython_shim.py: {missing}"


def test_the_shim_converts_and_passes_through():
    c = _cython_shim
    assert c.cast(c.longlong, 7.0) == 7 and isinstance(c.cast(c.longlong, 7.0), int)
    buf = b"abc"
    assert c.cast(c.p_uchar, buf) is buf
    assert c.declare(c.int, 3) == 3 and c.declare(object) is None
    assert c.longlong[:] is object and c.compiled is False
