"""Compile the hot-path modules with Cython when it is available.

The same ``.py`` sources stay importable as pure Python: when the compiler
or Cython is missing (or OTUS_PURE_PYTHON=1), the wheel ships only the
sources and everything still works, just slower.
"""
import os
import sys

from setuptools import setup

# Commands that only collect sources or metadata: no C is generated for them, so the sdist carries the
# .py sources and no generated .c (the wheel built from it runs Cython itself).
SOURCE_ONLY = {"sdist", "egg_info", "dist_info"}
BUILDS = {"build", "build_ext", "bdist_wheel", "bdist", "install", "develop", "editable_wheel"}

HOT_MODULES = [
    "src/otus_agent/decode/l2l4_cy.py",
    "src/otus_agent/capture/frames_cy.py",
    "src/otus_agent/reassembly/ipfrag_cy.py",
    "src/otus_agent/sip/message_cy.py",
    "src/otus_agent/sip/scan_cy.py",
    "src/otus_agent/sip/sdp_cy.py",
    "src/otus_agent/sip/dialogs_cy.py",
    "src/otus_agent/sip/writer_cy.py",
    "src/otus_agent/sip/select_cy.py",
    "src/otus_agent/sip/fingerprint_cy.py",
    "src/otus_agent/media/rtp_cy.py",
    "src/otus_agent/media/rtcp_cy.py",
    "src/otus_agent/flows/walk_cy.py",
]


def _jobs() -> int:
    """Cython and the C compiler use every core (OTUS_BUILD_JOBS to choose): the modules are independent."""
    return int(os.environ.get("OTUS_BUILD_JOBS") or os.cpu_count() or 1)


def _extensions():
    if os.environ.get("OTUS_PURE_PYTHON") == "1":
        return []
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if command in SOURCE_ONLY and not BUILDS & set(sys.argv):
        return []
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError:
        return []
    exts = []
    for path in HOT_MODULES:
        mod = "otus_agent." + path[len("src/otus_agent/"):-3].replace("/", ".")
        # optional: without a working C compiler the pure-Python source is used
        exts.append(Extension(mod, [path], extra_compile_args=["-O2"], optional=True))
    return cythonize(exts, language_level=3, quiet=True, nthreads=_jobs(),
                     compiler_directives={"boundscheck": False, "wraparound": False,
                                          "cdivision": True, "initializedcheck": False})


setup(ext_modules=_extensions(), options={"build_ext": {"parallel": _jobs()}})
