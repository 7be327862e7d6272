"""The SIP record's fields: the one definition (issue 14).

Each ``Field`` says, once, what a record key is: its JSON key (the record's key order is this
table's order), its JSON-schema type, how the general path reads it from a parsed
``SipMessage`` (``message``: a Python expression) and which scanner slots the fast path reads it
from (``scan``).  Four places are generated from this table by
``python -m otus_agent.sip.fields --write``, and ``tests/agent/sip/test_sip_fields.py`` fails when one
of them drifts:

* ``sip/records.py``: the record dict of the general path (``sip_record``) and the packet part of
  the fast path's (``fast_sip_record``);
* ``sip/scan_cy.py``: ``_fields``, the scanner's field dict;
* ``sip/writer_cy.py``: the compiled lane's JSON for the message fields;
* ``schemas/sip-record.v1.json``.

Two more kinds of field (issue 18), generated the same way:

* ``fingerprint`` (scan kind ``("fingerprint",)``): the message's fingerprint, one hash
  (``sip/fingerprint_cy.py``) over values every path already has; the generated code only gathers them.
* ``part="identity"``: the capture point (``capture``) and, for an ``address`` field, who holds that
  address in the cluster (``src_k8s``, ``dst_k8s``), looked up in ``otus_agent/identity.py``'s tables
  (``ADDRESSES`` for the general path, ``FRAGMENTS``, pre-serialised JSON, for the lane) after the
  labels; absent when unknown, so records outside a cluster are unchanged.  They are blocks of
  their own in ``sip/records.py`` (``identity``, ``fast_identity``) and ``sip/writer_cy.py``
  (``lane_identity``).  The schema change is additive: ``v`` stays 1.

Adding a field is one ``Field`` line here, then ``--write``.  A field the scanner cannot locate yet
needs a slot in ``sip/slots.pxd`` and the code that fills it in ``scan_cy._scan_p`` first: that is
new grammar, not a second definition of the field.
"""
from __future__ import annotations

import json
import pathlib
import re
import sys
from dataclasses import dataclass, field

from otus_agent.identity import CAPTURE_SCHEMA, K8S, RECORD_KEYS
from otus_agent.sip.fingerprint_cy import BODY_BYTES

# the general path's locals the ``message`` expressions may use (sip/records.py: sip_record)
#   m: the SipMessage; f, t: From/To (NameAddr or None); fu, tu: their URIs; h: headers;
#   ua, ct: the User-Agent (else Server) and Content-Type value lists; correlator: the Correlator
# fast-path kinds (``scan``): how the scanner's slots make the value
#   ("str", S)        the text at slots S, S+1 (null when S is -1)
#   ("int", S)        the number in slot S
#   ("req_str", S)    "str" for a request, null for a response
#   ("resp_str", S)   "str" for a response, null for a request
#   ("resp_int", S)   "int" for a response, null for a request
#   ("first", S, T)   "str" of S when S is found, else "str" of T
#   ("fingerprint",)  sip/fingerprint_cy.py's hash of FP_SLOTS (start line, Call-ID, CSeq, branch, tags) and the body
KINDS = {"str": 1, "int": 1, "req_str": 1, "resp_str": 1, "resp_int": 1, "first": 2, "fingerprint": 0}
# the fingerprint's inputs after the start line, in its order (sip/fingerprint.py); "int" slots are numbers
FP_SLOTS = (("str", "O_CID0"), ("int", "O_CSEQ"), ("str", "O_CSM0"), ("str", "O_VB0"), ("str", "O_FT0"),
            ("str", "O_TT0"))
STR = {"$ref": "#/$defs/str"}
DIRECTION = {"enum": ["sendrecv", "sendonly", "recvonly", "inactive"],
             "description": "the last a= direction attribute (RFC 8866 6.7); absent when none"}


@dataclass(frozen=True)
class Field:
    key: str
    schema: dict
    message: str = ""                   # general path: Python expression (message fields only)
    scan: tuple = ()                    # fast path: (kind, slot names...) (message fields only)
    part: str = "message"               # packet | message | body | error | label | identity
    address: str = ""                   # identity fields: the record key of the address looked up
    required: bool = False              # in the schema's "required"
    kafka_key: bool = False             # the lane also hands this value over as the record's Kafka key
    extra: dict = field(default_factory=dict)   # more schema keywords (description, bounds)


def _p(key: str, schema: dict, expr: str, **kw) -> Field:
    return Field(key, schema, message=expr, part="packet", required=True, **kw)


SCHEMA_VERSION = 1
FIELDS: tuple[Field, ...] = (
    _p("v", {"const": SCHEMA_VERSION}, "SCHEMA_VERSION", extra={"description": "schema version"}),
    _p("type", {"const": "sip"}, '"sip"'),
    _p("ts", {"type": "integer"}, "ts", extra={"description": "capture time, nanoseconds since the Unix epoch"}),
    _p("src_ip", {"type": "string"}, "src_ip"),
    _p("src_port", {"type": "integer", "minimum": 0, "maximum": 65535}, "src_port"),
    _p("dst_ip", {"type": "string"}, "dst_ip"),
    _p("dst_port", {"type": "integer", "minimum": 0, "maximum": 65535}, "dst_port"),
    _p("transport", {"enum": ["udp", "tcp", "sctp", "ws"]}, "transport"),
    Field("method", STR, "m.method if m.is_request else None", ("req_str", "O_M0"),
          extra={"description": "request method (requests only)"}),
    Field("status_code", {"type": ["integer", "null"], "minimum": 100, "maximum": 699}, "m.status_code",
          ("resp_int", "O_STATUS")),
    Field("reason_phrase", STR, "m.reason", ("resp_str", "O_R0")),
    Field("request_uri", STR, "m.request_uri", ("req_str", "O_U0")),
    Field("call_id", STR, "m.call_id", ("str", "O_CID0"), kafka_key=True),
    Field("cseq_num", {"type": ["integer", "null"], "minimum": 0, "maximum": 2147483647}, "m.cseq_num",
          ("int", "O_CSEQ")),
    Field("cseq_method", STR, "m.cseq_method", ("str", "O_CSM0")),
    Field("from_user", STR, "fu.user if fu is not None else None", ("str", "O_FU0")),
    Field("from_host", STR, "fu.host if fu is not None else None", ("str", "O_FH0")),
    Field("from_tag", STR, 'f.params.get("tag") if f is not None else None', ("str", "O_FT0")),
    Field("to_user", STR, "tu.user if tu is not None else None", ("str", "O_TU0")),
    Field("to_host", STR, "tu.host if tu is not None else None", ("str", "O_TH0")),
    Field("to_tag", STR, 't.params.get("tag") if t is not None else None', ("str", "O_TT0")),
    Field("via_branch", STR, 'm.via[0].params.get("branch") if m.via else None', ("str", "O_VB0"),
          extra={"description": "branch of the topmost Via"}),
    Field("user_agent", STR, "ua[0] if ua else None", ("str", "O_UA0"),
          extra={"description": "User-Agent, or Server for responses"}),
    Field("content_type", STR, "ct[0] if ct else None", ("str", "O_CT0")),
    Field("correlation_id", STR, "correlator.find(h)", ("first", "O_XC0", "O_PC0"),
          extra={"description": "first configured correlation header found (default X-CID, "
                                "P-Charging-Vector icid-value)"}),
    Field("fingerprint", {"type": "string", "pattern": "^[0-9a-f]{16}$"}, "fingerprint_of(m)", ("fingerprint",),
          extra={"description": "the message's fingerprint, equal at every capture point that sees it (and for "
                                "its retransmissions): FNV-1a, see sip/fingerprint_cy.py"}),
    Field("sdp", {
        "type": ["object", "null"],
        "properties": {
            "connection": {"type": "string"},
            "direction": DIRECTION,
            "rtcp_mux": {"const": True},
            "origin": {"type": "object"},
            "media": {"type": "array", "items": {
                "type": "object", "required": ["type", "port", "proto", "payloads"],
                "properties": {"type": {"type": "string"}, "port": {"$ref": "#/$defs/int"},
                               "proto": {"type": "string"}, "payloads": {"type": "array", "items": {"type": "string"}},
                               "connection": STR, "rtpmap": {"type": "object"}, "direction": DIRECTION,
                               "rtcp_mux": {"const": True},
                               "rtcp": {"type": "string", "description": "the a=rtcp: value (RFC 3605)"}}}},
        }}, "sdp_from_body(ct[0], m.body) if ct and m.body else None", part="body"),
    Field("task", {"type": "string"}, part="label"),
    Field("agent", {"type": "string"}, part="label"),
    Field("error", {"type": "string"}, part="error",
          extra={"description": "first reason the message is malformed (error records only)"}),
    Field("defects", {"type": "array", "items": {"type": "string"}}, part="error"),
    Field("size", {"type": "integer"}, part="label"),
    *(Field(key, {"$ref": "#/$defs/k8s"} if address else CAPTURE_SCHEMA, part="identity", address=address,
            extra={"description": text}) for key, address, text in RECORD_KEYS),
)

# the call record's media section (with the rtp parser: media/summary.py makes it, media/stage.py puts it on)
CALL_MEDIA: dict = {
    "additionalProperties": False,
    "type": "object", "description": "the call's RTP streams (with the rtp parser): their count, the worst "
    "quality among them, and packets and loss per direction (streams of one direction and SSRC whose times "
    "overlap, a media relay's two legs, counted once: by the leg with the most loss)",
    "required": ["streams", "worst_mos", "worst_r_factor", "max_jitter_ms", "max_rtt_ms", "to_caller", "to_callee"],
    "properties": {
        "streams": {"type": "integer", "minimum": 0},
        "worst_mos": {"type": ["number", "null"]}, "worst_r_factor": {"type": ["number", "null"]},
        "max_jitter_ms": {"type": ["number", "null"]}, "max_rtt_ms": {"type": ["number", "null"]},
        "to_caller": {"type": "object", "properties": {"packets": {"type": "integer"}, "lost": {"type": "integer"}}},
        "to_callee": {"type": "object", "properties": {"packets": {"type": "integer"}, "lost": {"type": "integer"}}},
    },
}

# the per-call summary record (sip/dialogs_cy.py), in the same schema file
CALL_PROPERTIES: dict = {
    "v": {"const": SCHEMA_VERSION}, "type": {"const": "call"}, "call_id": {"type": "string"},
    "from_user": STR, "to_user": STR,
    "start_ts": {"type": "integer"}, "answer_ts": {"$ref": "#/$defs/int"}, "end_ts": {"$ref": "#/$defs/int"},
    "setup_ms": {"type": ["number", "null"]}, "answer_ms": {"type": ["number", "null"]},
    "duration_ms": {"type": ["number", "null"]}, "final_status": {"$ref": "#/$defs/int"},
    "ended_by": {"enum": ["caller", "callee", None]}, "reinvites": {"type": "integer"},
    "state": {"type": "string"},
    "media": CALL_MEDIA,
}
CALL_REQUIRED = ["v", "type", "call_id", "start_ts", "state"]


def check(fields: tuple[Field, ...], slots: dict[str, int]) -> None:
    """A table that generates valid code: unique keys, known kinds, slot pairs that exist."""
    keys = [f.key for f in fields]
    if len(set(keys)) != len(keys):
        raise ValueError(f"repeated record keys in {keys}")
    for f in fields:
        if f.part not in ("packet", "message", "body", "error", "label", "identity"):
            raise ValueError(f"{f.key}: unknown part {f.part!r}")
        if f.part == "identity":
            if f.address and f.address not in keys:
                raise ValueError(f"{f.key}: no address field {f.address}")
            if not f.address and not f.key.isidentifier():
                raise ValueError(f"{f.key}: a capture-point key must be a plain name (the lane's FRAGMENTS key)")
            continue
        if f.part != "message":
            continue
        if not f.message or not f.scan or f.scan[0] not in KINDS or len(f.scan) != 1 + KINDS[f.scan[0]]:
            raise ValueError(f"{f.key}: a message field needs an expression and a scan spec of a known kind")
        for s in f.scan[1:] + (tuple(s for _, s in FP_SLOTS) if f.scan[0] == "fingerprint" else ()):
            if s not in slots:
                raise ValueError(f"{f.key}: no scanner slot {s} in sip/slots.pxd")
            numbers = f.scan[0] in ("int", "resp_int") or (f.scan[0] == "fingerprint" and (("int", s) in FP_SLOTS))
            if not numbers and slots.get(_end(s)) != slots[s] + 1:
                raise ValueError(f"{f.key}: slot {s} has no end slot {_end(s)} right after it")
        if f.kafka_key and f.scan[0] != "str":
            raise ValueError(f"{f.key}: the Kafka key must be a plain string field")


def _end(slot: str) -> str:
    return slot[:-1] + "1" if slot.endswith("0") else slot + "_END"


# ---------------------------------------------------------------- renderers
def _message(fields: tuple[Field, ...]) -> list[Field]:
    return [f for f in fields if f.part == "message"]


def render_record(fields: tuple[Field, ...]) -> list[str]:
    """sip_record's dict entries (general path): packet, message and body fields in order."""
    return [f'"{f.key}": {f.message},' for f in fields if f.part in ("packet", "message", "body")]


def render_fast_envelope(fields: tuple[Field, ...]) -> list[str]:
    """fast_sip_record's packet fields (the scanner gives the message fields)."""
    return [f'"{f.key}": {f.message},' for f in fields if f.part == "packet"]


def _fp_args(buf: str, o: str, req: str, body: str) -> list[str]:
    """The fingerprint's arguments from slots ``o`` over ``buf`` (scanner and lane alike), one a line."""
    def part(kind: str, s: str) -> str:
        if kind == "int":
            return f'b"%d" % {o}[{s}]'
        return f'({buf}[{o}[{s}]:{o}[{_end(s)}]] if {o}[{s}] >= 0 else b"")'
    start = f'{buf}[{o}[O_M0]:{o}[O_M1]] if {req} else b"%d" % {o}[O_STATUS]'
    return [f"    {a}," for a in [start] + [part(k, s) for k, s in FP_SLOTS] + [body]]


def _scan_expr(f: Field) -> str:
    kind, s = f.scan[0], f.scan[1]
    text = f"_s(buf, out[{s}], out[{_end(s)}])"
    if kind == "str":
        return text
    if kind == "int":
        return f"out[{s}]"
    if kind == "req_str":
        return f"{text} if req else None"
    if kind == "resp_str":
        return f"None if req else {text}"
    if kind == "resp_int":
        return f"None if req else out[{s}]"
    t = f.scan[2]
    return f"{text} if out[{s}] >= 0 else _s(buf, out[{t}], out[{_end(t)}])"


def render_scan(fields: tuple[Field, ...]) -> list[str]:
    """scan_cy._fields' dict entries: the message fields from the scanner's slots."""
    out = []
    for f in _message(fields):
        if f.scan[0] == "fingerprint":
            end = "out[O_BODY] + out[O_CL] if out[O_CL] >= 0 else len(buf)"
            body = f"buf[out[O_BODY]:min({end}, out[O_BODY] + {BODY_BYTES})]"
            out += [f'"{f.key}": fingerprint(', *_fp_args("buf", "out", "req", body), "),"]
        else:
            out.append(f'"{f.key}": {_scan_expr(f)},')
    return out


def _lane_value(f: Field) -> list[str]:
    if f.scan[0] == "fingerprint":     # the same FNV-1a in place, over the same parts (sip/fingerprint_cy.py)
        out = ["h: cython.ulonglong = _start()", "if req:", "    h = _fnv(h, p, o[O_M0], o[O_M1])", "else:",
               "    h = _fnv_num(h, o[O_STATUS])"]
        for kind, s in FP_SLOTS:
            out.append(f"h = _fnv_num(_sep(h), o[{s}])" if kind == "int" else f"h = _fnv(_sep(h), p, o[{s}], o[{_end(s)}])")
        out += [f"h = _fnv(_sep(h), p, bstart, bend if bend < bstart + {BODY_BYTES} else bstart + {BODY_BYTES})",
                "q[k] = 34", "k = _hex(q, k + 1, h)", "q[k] = 34", "k += 1"]
        return out
    kind, s = f.scan[0], f.scan[1]
    text = f"k = _str(q, k, p, o[{s}], o[{_end(s)}])"
    if kind == "str" and f.kafka_key:
        return ["kc0 = k + 1", text, "kc1 = k - 1",
                f"if o[{s}] < 0:", "    kc0 = kc1 = k",
                f"elif kc1 - kc0 != o[{_end(s)}] - o[{s}]:",
                "    kc0 = kc1 = -1     # escaped in JSON: the key is taken from the message instead",
                f"    key = whole[off + o[{s}]:off + o[{_end(s)}]]"]
    if kind == "str":
        return [text]
    if kind == "int":
        return [f"k = _int(q, k, o[{s}])"]
    if kind == "req_str":
        return ["if req:", "    " + text, "else:", '    k = _lit(q, k, b"null")']
    if kind == "resp_str":
        return ["if req:", '    k = _lit(q, k, b"null")', "else:", "    " + text]
    if kind == "resp_int":
        return ["if req:", '    k = _lit(q, k, b"null")', "else:", f"    k = _int(q, k, o[{s}])"]
    t = f.scan[2]
    return [f"if o[{s}] >= 0:", "    " + text, "else:", f"    k = _str(q, k, p, o[{t}], o[{_end(t)}])"]


def render_lane(fields: tuple[Field, ...]) -> list[str]:
    """writer_cy's JSON for the message fields, from the scanner's slots (``o``) at ``p``."""
    out = []
    for f in _message(fields):
        out.append(f"k = _lit(q, k, b',\"{f.key}\":')")
        out += _lane_value(f)
        if f.scan[0] not in ("int", "resp_int", "fingerprint"):
            out += ["if k < 0:", "    return False"]
    return out


def render_identity(fields: tuple[Field, ...]) -> list[str]:
    """sip_record's and fast_sip_record's identity keys, after the labels: ADDRESSES and CAPTURE of
    otus_agent/identity.py, present only when known."""
    out = ["if ADDRESSES or CAPTURE:"]
    for f in fields:
        if f.part == "identity":
            look = f"ADDRESSES.get({f.address})" if f.address else f'CAPTURE.get("{f.key}")'
            out += [f"    who = {look}", "    if who is not None:", f'        rec["{f.key}"] = who']
    return out


def render_lane_identity(fields: tuple[Field, ...]) -> list[str]:
    """The lane's identity keys after the labels, from otus_agent/identity.py's FRAGMENTS (JSON bytes) through
    the lane's caches (``ident``: UdpLane._ident, checked before the record's room was made; the addresses'
    answers by UdpLane._who, the capture point's kept as id_capture); the record goes to the general path
    when the buffer lacks room for them."""
    from otus_agent.identity import CAPTURE_KEY, MAX_FRAGMENT, ROOM
    ids = [f for f in fields if f.part == "identity"]
    if len(ids) * (MAX_FRAGMENT + 16) > ROOM:
        raise ValueError("more identity keys than otus_agent/identity.py's ROOM holds")
    out = ["if ident:", "    if len(self.obuf) - k < IDENT_ROOM:", "        return False"]
    for f in ids:
        look = {"src_ip": "self._who(v4, 0, src6)", "dst_ip": "self._who(v4, 4, dst6)"}.get(
            f.address, "self.id_capture" if f.key.encode() == CAPTURE_KEY else f'self.frags.get(b"{f.key}")')
        out += [f"    frag = {look}", "    if frag is not None:",
                f"        k = _lit(q, k, b',\"{f.key}\":')", "        k = _lit(q, k, frag)"]
    return out


def _prop(f: Field) -> dict:
    return {**f.schema, **f.extra}


def render_schema(fields: tuple[Field, ...]) -> str:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://otus.dev/schemas/sip-record.v{SCHEMA_VERSION}.json",
        "title": f"Otus SIP record, version {SCHEMA_VERSION}",
        "$comment": "generated from otus_agent/sip/fields.py by python -m otus_agent.sip.fields --write: do not edit",
        "description": "One record per SIP message (type=sip) or per finished call (type=call). Kafka key: "
                       + ", ".join(f.key for f in fields if f.kafka_key) + ".",
        "oneOf": [{"$ref": "#/$defs/sip"}, {"$ref": "#/$defs/call"}],
        "$defs": {
            "str": {"type": ["string", "null"]},
            "int": {"type": ["integer", "null"]},
            "k8s": K8S,
            "sip": {"type": "object", "required": [f.key for f in fields if f.required],
                    "properties": {f.key: _prop(f) for f in fields}},
            "call": {"type": "object", "required": CALL_REQUIRED, "properties": CALL_PROPERTIES},
        },
    }
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------- the generated places
SIP = pathlib.Path(__file__).resolve().parent
ROOT = SIP.parents[2]           # the repository, for a source checkout (src/ layout)
SCHEMA_NAME = f"sip-record.v{SCHEMA_VERSION}.json"
SCHEMA = ROOT / "schemas" / SCHEMA_NAME
# (file, block name, renderer): a block sits between "# <fields:NAME>" and "# </fields:NAME>"
BLOCKS = (
    (SIP / "records.py", "record", render_record),
    (SIP / "records.py", "fast_envelope", render_fast_envelope),
    (SIP / "scan_cy.py", "scan", render_scan),
    (SIP / "writer_cy.py", "lane", render_lane),
    (SIP / "records.py", "identity", render_identity),
    (SIP / "records.py", "fast_identity", render_identity),
    (SIP / "writer_cy.py", "lane_identity", render_lane_identity),
)


def fill(text: str, name: str, lines: list[str]) -> str:
    """``text`` with the block ``name`` replaced by ``lines`` (indented as its opening marker)."""
    pat = re.compile(rf"^([ \t]*)# <fields:{name}>[^\n]*\n.*?^[ \t]*# </fields:{name}>$", re.M | re.S)
    m = pat.search(text)
    if m is None:
        raise ValueError(f"no '# <fields:{name}>' ... '# </fields:{name}>' block")
    ind = m.group(1)
    body = "".join(f"{ind}{line}\n" if line else "\n" for line in lines)
    new = (f"{ind}# <fields:{name}> generated from sip/fields.py (python -m otus_agent.sip.fields --write)\n"
           f"{body}{ind}# </fields:{name}>")
    return text[:m.start()] + new + text[m.end():]


def generated(fields: tuple[Field, ...] = FIELDS, sources: dict[pathlib.Path, str] | None = None,
              schema: pathlib.Path = SCHEMA) -> dict[pathlib.Path, str]:
    """Every generated file as it should read for ``fields`` (``sources``: the current texts; ``schema``:
    where the schema file is, in a checkout other than the one this package was loaded from)."""
    from otus_agent.sip.slots import LAYOUT
    check(fields, LAYOUT)
    texts = dict(sources) if sources is not None else {}
    for path, _, _ in BLOCKS:
        if path not in texts:
            texts[path] = path.read_text()
    for path, name, render in BLOCKS:
        texts[path] = fill(texts[path], name, render(fields))
    texts[schema] = render_schema(fields)
    return texts


def main(argv: list[str]) -> int:
    if argv != ["--write"]:
        print("usage: python -m otus_agent.sip.fields --write", file=sys.stderr)
        return 2
    for path, text in generated().items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
