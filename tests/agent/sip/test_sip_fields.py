"""The SIP record's fields are defined once (sip/fields.py); every place that writes them follows.

The generated places (records.py, scan_cy._fields, the compiled lane's JSON, the schema) must read
exactly as the table renders them, and a field added to the table reaches all of them: shown by
building a table with one more field and running the generated general path and the generated
(pure) scanner on a real message.  The generated lane is C-level code that only runs compiled;
compiling a variant inside a test would take minutes, so for it the test checks the rendered code
and that the rendered module still parses; test_udplane.py compares the real compiled lane with the
general path byte for byte.
"""
from __future__ import annotations

import json
import types

import jsonschema
import pytest

from otus_agent.sip import fields as F
from otus_agent.sip import message_cy as sip
from otus_agent.sip.records import Correlator, sip_record
from otus_agent.sip.slots import LAYOUT

from ...conftest import ROOT

SCHEMA = ROOT / "schemas" / F.SCHEMA_NAME   # the checkout's; the package may be an installed wheel

MSG = (b"INVITE sip:bob@example.com SIP/2.0\r\n"
       b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n"
       b"Max-Forwards: 70\r\nTo: Bob <sip:bob@example.com>\r\n"
       b"From: Alice <sip:alice@example.org>;tag=1928301774\r\nCall-ID: a84b4c76e66710\r\n"
       b"CSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n")


def test_the_generated_places_follow_the_table():
    for path, text in F.generated(schema=SCHEMA).items():
        assert path.read_text() == text, f"{path.name} drifted from sip/fields.py: python -m otus_agent.sip.fields --write"


def test_records_have_the_table_order_and_validate_against_the_generated_schema():
    rec = sip_record(sip.parse(MSG), 1, "192.0.2.1", 5060, "192.0.2.2", 5060, "udp", Correlator(), {"task": "t"})
    keys = [f.key for f in F.FIELDS if f.part in ("packet", "message", "body")]
    assert list(rec) == keys + ["task"]
    jsonschema.validate(rec, json.loads(SCHEMA.read_text()))


def _module(name: str, path, text: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__file__ = str(path)
    exec(compile(text, str(path), "exec"), mod.__dict__)
    return mod


def test_a_field_added_to_the_table_reaches_every_generated_place():
    new = F.Field("content_length", {"type": ["integer", "null"]}, "m.content_length", ("int", "O_CL"),
                  extra={"description": "Content-Length"})
    at = [f.key for f in F.FIELDS].index("correlation_id") + 1
    table = F.FIELDS[:at] + (new,) + F.FIELDS[at:]
    texts = F.generated(table, schema=SCHEMA)
    records_py, scan_py, writer_py = (F.SIP / n for n in ("records.py", "scan_cy.py", "writer_cy.py"))
    # the schema
    props = list(json.loads(texts[SCHEMA])["$defs"]["sip"]["properties"])
    assert props[props.index("correlation_id") + 1] == "content_length"
    # the general path's record and the (pure) scanner's fields, run on a real message
    scan = _module("otus_sipscan_with_field", scan_py, texts[scan_py])
    rec_mod = _module("otus_records_with_field", records_py, texts[records_py])
    m = sip.parse(MSG)
    general = rec_mod.sip_record(m, 1, "a", 1, "b", 2, "udp", rec_mod.Correlator())
    keys = list(general)
    assert keys[keys.index("correlation_id") + 1] == "content_length" and general["content_length"] == 0
    sc = scan.Scanner()
    assert sc.scan(MSG, False) == 1
    assert sc.fields(MSG)["content_length"] == 0
    o = sc.arr
    fast = rec_mod.fast_sip_record(MSG, sc, o[LAYOUT["O_BODY"]], o[LAYOUT["O_BODY"]], 1, "a", 1, "b", 2, "udp")
    assert fast == general and list(fast) == keys
    # the compiled lane's code: the key, in the table's place, from the table's slot
    lane = texts[writer_py]
    i = lane.index("b',\"content_length\":'")
    assert lane.index("b',\"correlation_id\":'") < i < lane.index("b',\"sdp\":'")
    assert "k = _int(q, k, o[O_CL])" in lane[i:i + 200]
    compile(lane, str(writer_py), "exec")
    # and nothing else moved: without the field the texts are today's
    assert F.generated(schema=SCHEMA) == {p: p.read_text() for p in texts}


@pytest.mark.parametrize("bad, why", [
    (F.Field("call_id", F.STR, "m.call_id", ("str", "O_CID0")), "repeated"),
    (F.Field("x", F.STR, "m.call_id", ("str", "O_NOPE0")), "no scanner slot"),
    (F.Field("x", F.STR, "m.call_id", ("text", "O_CID0")), "known kind"),
    (F.Field("x", F.STR, "", ("str", "O_CID0")), "known kind"),
    (F.Field("x", F.STR, "m.cseq_num", ("int", "O_CSEQ"), kafka_key=True), "Kafka key"),
])
def test_a_table_that_cannot_generate_valid_code_is_refused(bad, why):
    with pytest.raises(ValueError, match=why):
        F.check(F.FIELDS + (bad,), LAYOUT)


def test_a_missing_block_marker_is_named():
    with pytest.raises(ValueError, match="fields:lane"):
        F.fill("no markers here\n", "lane", ["x"])


def test_the_generator_needs_its_flag():
    assert F.main([]) == 2
