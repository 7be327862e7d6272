"""Who sent and who received a record, and where it was captured: the hooks records read (issue 18).

The record builders (``sip/records.py``, the lane in ``sip/writer_cy.py``; code generated from
``sip/fields.py``) look the record's addresses up here; ``otus_agent.kube.identity`` (a layer above)
keeps these tables up to date from its watch of pods and services, and sets the capture point.
They are plain dicts, mutated in place and never rebound (the compiled lane holds them), written
under the table's lock and read without one (a dict lookup is atomic under the GIL):

* ``ADDRESSES``: address text -> identity dict (``namespace``, ``pod``, ``workload``, ``node``,
  ``service``; only the keys known), for the general path;
* ``FRAGMENTS``: the same as JSON bytes (``orjson.dumps`` of the dict) keyed by the address as
  ASCII bytes, plus ``CAPTURE_KEY`` -> the capture point's JSON, for the lane;
* ``CAPTURE``: the capture point (``agent``, ``node``; ``pod`` and ``namespace`` in sidecar mode)
  under ``"capture"``, for the general path.

Empty outside a cluster: records then carry none of these keys and stay byte-identical.
"""
from __future__ import annotations

ADDRESSES: dict[str, dict] = {}
FRAGMENTS: dict[bytes, bytes] = {}
CAPTURE: dict[str, dict] = {}
CAPTURE_KEY = b"capture"          # no address's text: the capture point's entry in FRAGMENTS
MAX_FRAGMENT = 1024               # an identity's JSON longer than this is left out (the lane's room per key)
ROOM = 4 * MAX_FRAGMENT           # the lane's room for a record's identity keys (sip/fields.py: at most 3)


def set_capture(point: dict[str, str] | None) -> None:
    """The capture point of every record from now on (None: none)."""
    from orjson import dumps
    CAPTURE.clear()
    FRAGMENTS.pop(CAPTURE_KEY, None)
    if point:
        CAPTURE["capture"] = dict(point)
        FRAGMENTS[CAPTURE_KEY] = dumps(point)


def clear() -> None:
    ADDRESSES.clear()
    FRAGMENTS.clear()
    CAPTURE.clear()
