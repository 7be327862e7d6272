"""The few ``cython.*`` names the hot modules use, for the pure-Python build.

The hot modules are Cython "pure Python mode" sources.  Compiled, Cython
resolves ``cython.*`` itself; uncompiled they need a module with these names.
Cython's own shadow module would make Cython a run-time dependency of every
install, so this shim provides exactly what the sources use: types are plain
Python types, decorators return their function, ``cast`` and ``declare`` pass
values through (pointer casts only ever run under ``cython.compiled``).
``tests/agent/test_cython_shim.py`` checks that every ``cython.X`` the
sources use exists here.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

_F = TypeVar("_F")

compiled = False
NULL = None



class _CType:
    """A C type name: callable as a conversion, subscriptable as a memoryview (``longlong[:]``)."""

    def __init__(self, py: type) -> None:
        self.py = py

    def __call__(self, value: Any) -> Any:
        return self.py(value)

    def __getitem__(self, _item: Any) -> object:
        return object


# C scalar types: Python ints (bint: bool, double: float) in the pure build
Py_ssize_t = _CType(int)
int = _CType(int)  # noqa: A001 - the name Cython uses
long = Py_ssize_t
longlong = Py_ssize_t
ulong = Py_ssize_t
ulonglong = Py_ssize_t
uchar = Py_ssize_t
char = Py_ssize_t
bint = _CType(bool)
double = _CType(float)
# pointers only exist compiled; annotations need a name
p_uchar = _CType(object)
p_longlong = _CType(object)
void = _CType(object)   # a return annotation only


def address(value: Any) -> Any:
    """No pointers in the pure build: only the compiled lane (writer_cy, never run pure) takes one."""
    return value


def _identity(f: _F) -> _F:
    return f


cfunc = _identity
ccall = _identity
cclass = _identity
no_gc = _identity
inline = _identity


def exceptval(*_args: Any, **_kwargs: Any) -> Callable[[_F], _F]:
    return _identity


def cast(t: Any, value: Any, **_kwargs: Any) -> Any:
    if isinstance(t, _CType) and t.py is not object and value is not None:
        return t(value)
    return value


def declare(t: Any = None, value: Any = None, **_kwargs: Any) -> Any:
    return cast(t, value) if value is not None else None
