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

* ``GENERATION``: a count bumped (``changed``) after every change of ``FRAGMENTS``; the lane keeps
  what it looked up (per IPv4 address, and the capture point) until the count moves.

Empty outside a cluster: records then carry none of these keys and stay byte-identical.
"""
from __future__ import annotations

from array import array

# the identity of a cluster address (otus_agent.kube.identity), the value of src_k8s / dst_k8s
CAPTURE_KEYS = ("agent", "node", "pod", "namespace")
K8S: dict = {
    "type": "object", "additionalProperties": False,
    "description": "a pod (namespace, pod, workload, node, service when a Service selects it) or a Service "
                   "(namespace, service); only the keys known",
    "properties": {
        "namespace": {"type": "string"}, "pod": {"type": "string"}, "node": {"type": "string"},
        "service": {"type": "string"},
        "workload": {"type": "object", "required": ["kind", "name"], "additionalProperties": False,
                     "properties": {"kind": {"type": "string"}, "name": {"type": "string"}},
                     "description": "the pod's controller; a ReplicaSet of a Deployment is given as the Deployment"},
    },
}
CAPTURE_SCHEMA: dict = {"type": "object", "properties": {k: {"type": "string"} for k in CAPTURE_KEYS},
                        "additionalProperties": False}
# the identity keys of a record, in their order: (key, the record key of the address it names or "" for
# the capture point, description).  sip/fields.py and media/fields.py take their fields from here.
RECORD_KEYS: tuple[tuple[str, str, str], ...] = (
    ("capture", "", "the capture point: the agent and its node, and in sidecar mode its pod and namespace "
                    "(absent outside Kubernetes)"),
    ("src_k8s", "src_ip", "the pod or Service holding src_ip when the record was made (absent: unknown)"),
    ("dst_k8s", "dst_ip", "the pod or Service holding dst_ip when the record was made (absent: unknown)"),
)

ADDRESSES: dict[str, dict] = {}
FRAGMENTS: dict[bytes, bytes] = {}
CAPTURE: dict[str, dict] = {}
GENERATION = array("q", [0])      # one slot, never resized: the compiled lane reads it in place
CAPTURE_KEY = b"capture"          # no address's text: the capture point's entry in FRAGMENTS
MAX_FRAGMENT = 1024               # an identity's JSON longer than this is left out (the lane's room per key)
ROOM = 4 * MAX_FRAGMENT           # the lane's room for a record's identity keys (sip/fields.py: at most 3)


def changed() -> None:
    """Tell the lane's caches that ``FRAGMENTS`` changed: call it after every change (the writers here and
    ``otus_agent.kube.identity``'s sink do)."""
    GENERATION[0] += 1


def set_capture(point: dict[str, str] | None) -> None:
    """The capture point of every record from now on (None: none)."""
    from orjson import dumps
    CAPTURE.clear()
    FRAGMENTS.pop(CAPTURE_KEY, None)
    if point:
        CAPTURE["capture"] = dict(point)
        FRAGMENTS[CAPTURE_KEY] = dumps(point)
    changed()


def clear() -> None:
    ADDRESSES.clear()
    FRAGMENTS.clear()
    CAPTURE.clear()
    changed()


def annotate(rec: dict, src_ip: str, dst_ip: str) -> None:
    """RECORD_KEYS on a record built in Python (the media records; the SIP record's code is generated
    from sip/fields.py, which takes the same keys), each key only when known."""
    if not (ADDRESSES or CAPTURE):
        return
    addresses = {"src_ip": src_ip, "dst_ip": dst_ip}
    for key, address, _ in RECORD_KEYS:
        who = ADDRESSES.get(addresses[address]) if address else CAPTURE.get(key)
        if who is not None:
            rec[key] = who
