"""Each batch layout is defined once, in its .pxd; the Python views follow it."""
import pytest

from otus_agent import _pxd


@pytest.mark.parametrize("view", _pxd.VIEWS)
def test_the_python_view_is_generated_from_the_pxd(view):
    path = _pxd._root() / f"{view}.py"
    assert path.read_text() == _pxd.expected(view), \
        f"otus_agent/{view}.py drifted from its .pxd: python -m otus_agent._pxd --write"


def test_a_new_enum_entry_reaches_the_view():
    text = "cdef enum:\n    A = 1  # one\n    B = 7\n"
    view = _pxd.render("x.pxd", text)
    ns: dict = {}
    exec(view, ns)
    assert ns["LAYOUT"] == {"A": 1, "B": 7} and ns["__all__"] == ["A", "B"]


def test_the_compiled_modules_cimport_the_layouts_instead_of_copying_them():
    root = _pxd._root()
    for mod, views in (("decode/l2l4_cy.py", ["decode.layout"]), ("sip/scan_cy.py", ["sip.slots"]),
                       ("sip/writer_cy.py", ["decode.layout", "sip.slots"])):
        text = (root / mod).read_text()
        for v in views:
            assert f"from cython.cimports.otus_agent.{v} import" in text, (mod, v)
        for name, _, _ in _pxd.parse((root / "decode/layout.pxd").read_text()) + \
                _pxd.parse((root / "sip/slots.pxd").read_text()):
            assert f"\n{name} = cython.declare" not in text, f"{mod} redeclares {name}"
