"""One flat JSON-ready record per SIP message (schema: schemas/sip-record.v1.json)."""
from __future__ import annotations

from otus_agent.identity import ADDRESSES, CAPTURE
from otus_agent.sip.fields import SCHEMA_VERSION
from otus_agent.sip.fingerprint_cy import of_message as fingerprint_of
from otus_agent.sip.message_cy import SipMessage, parse_params
from otus_agent.sip.scan_cy import Scanner
from otus_agent.sip.sdp_cy import sdp_from_body

# SipOptions' default (otus_spec), spelled out so `otus run --pcap` starts without pydantic; a test checks they agree
DEFAULT_CORRELATION = ("X-CID", "P-Charging-Vector;icid-value")


class Correlator:
    """Finds a correlation id: the first configured header present.

    A spec is ``Header`` (its whole value) or ``Header;param`` (one parameter
    of it, e.g. ``P-Charging-Vector;icid-value``).
    """

    def __init__(self, specs: tuple[str, ...] | list[str] = DEFAULT_CORRELATION):
        self.specs: list[tuple[str, str | None]] = []
        for spec in specs:
            name, _, param = spec.partition(";")
            name = name.strip().lower()
            if not name:
                raise ValueError(f"bad correlation header spec {spec!r}")
            self.specs.append((name, param.strip().lower() or None))

    def find(self, headers: dict) -> str | None:
        for name, param in self.specs:
            v = headers.get(name)
            if not v:
                continue
            if param is None:
                return v[0]
            params, _ = parse_params(";" + v[0])
            val = params.get(param)
            if val:
                return val.strip('"')
        return None


def sip_record(m: SipMessage, ts: int, src_ip: str, src_port: int, dst_ip: str, dst_port: int,
               transport: str, correlator: Correlator, extra: dict | None = None) -> dict:
    f = m.from_
    t = m.to
    fu = f.uri if f is not None else None
    tu = t.uri if t is not None else None
    h = m.headers
    ua = h.get("user-agent") or h.get("server")
    ct = h.get("content-type")
    rec = {
        # <fields:record> generated from sip/fields.py (python -m otus_agent.sip.fields --write)
        "v": SCHEMA_VERSION,
        "type": "sip",
        "ts": ts,
        "src_ip": src_ip,
        "src_port": src_port,
        "dst_ip": dst_ip,
        "dst_port": dst_port,
        "transport": transport,
        "method": m.method if m.is_request else None,
        "status_code": m.status_code,
        "reason_phrase": m.reason,
        "request_uri": m.request_uri,
        "call_id": m.call_id,
        "cseq_num": m.cseq_num,
        "cseq_method": m.cseq_method,
        "from_user": fu.user if fu is not None else None,
        "from_host": fu.host if fu is not None else None,
        "from_tag": f.params.get("tag") if f is not None else None,
        "to_user": tu.user if tu is not None else None,
        "to_host": tu.host if tu is not None else None,
        "to_tag": t.params.get("tag") if t is not None else None,
        "via_branch": m.via[0].params.get("branch") if m.via else None,
        "user_agent": ua[0] if ua else None,
        "content_type": ct[0] if ct else None,
        "correlation_id": correlator.find(h),
        "fingerprint": fingerprint_of(m),
        "sdp": sdp_from_body(ct[0], m.body) if ct and m.body else None,
        # </fields:record>
    }
    if m.defects:
        rec["error"] = m.error
        rec["defects"] = m.defects
    if extra:
        rec.update(extra)
    # <fields:identity> generated from sip/fields.py (python -m otus_agent.sip.fields --write)
    if ADDRESSES or CAPTURE:
        who = CAPTURE.get("capture")
        if who is not None:
            rec["capture"] = who
        who = ADDRESSES.get(src_ip)
        if who is not None:
            rec["src_k8s"] = who
        who = ADDRESSES.get(dst_ip)
        if who is not None:
            rec["dst_k8s"] = who
    # </fields:identity>
    return rec


def fast_sip_record(data: bytes, scanner: Scanner, body_start: int, body_end: int, ts: int, src_ip: str,
                    src_port: int, dst_ip: str, dst_port: int, transport: str, extra: dict | None = None) -> dict:
    """The same record as ``sip_record``, from what ``scanner.scan`` found."""
    rec = {
        # <fields:fast_envelope> generated from sip/fields.py (python -m otus_agent.sip.fields --write)
        "v": SCHEMA_VERSION,
        "type": "sip",
        "ts": ts,
        "src_ip": src_ip,
        "src_port": src_port,
        "dst_ip": dst_ip,
        "dst_port": dst_port,
        "transport": transport,
        # </fields:fast_envelope>
    }
    f = scanner.fields(data)
    rec.update(f)
    ct = f["content_type"]
    rec["sdp"] = sdp_from_body(ct, data[body_start:body_end]) if ct and body_end > body_start else None
    if extra:
        rec.update(extra)
    # <fields:fast_identity> generated from sip/fields.py (python -m otus_agent.sip.fields --write)
    if ADDRESSES or CAPTURE:
        who = CAPTURE.get("capture")
        if who is not None:
            rec["capture"] = who
        who = ADDRESSES.get(src_ip)
        if who is not None:
            rec["src_k8s"] = who
        who = ADDRESSES.get(dst_ip)
        if who is not None:
            rec["dst_k8s"] = who
    # </fields:fast_identity>
    return rec
