"""The media record's fields: the one definition the schema file and the record builder share.

``python -m otus_agent.media.fields > schemas/media-record.v1.json`` regenerates the schema;
tests/agent/media/test_schema.py fails when the file and this list drift apart.
"""
from __future__ import annotations

import json
import sys

from otus_agent.identity import CAPTURE_SCHEMA, K8S, RECORD_KEYS

SCHEMA_VERSION = 1

_S = {"type": ["string", "null"]}
_I = {"type": ["integer", "null"]}
_N = {"type": ["number", "null"]}
_PORT = {"type": "integer", "minimum": 0, "maximum": 65535}
_COUNT = {"type": "integer", "minimum": 0}

# (name, JSON schema, required, description)
FIELDS: tuple[tuple[str, dict, bool, str], ...] = (
    ("v", {"const": SCHEMA_VERSION}, True, "schema version"),
    ("type", {"const": "media"}, True, "record type"),
    ("call_id", _S, True, "Call-ID of the call whose SDP announced the stream (null: heuristic)"),
    ("direction", {"enum": ["to_caller", "to_callee", None]}, True,
     "the stream is sent to the address the caller (or the callee) announced"),
    ("src_ip", {"type": "string"}, True, "RTP sender address"),
    ("src_port", _PORT, True, "RTP sender port"),
    ("dst_ip", {"type": "string"}, True, "RTP receiver address"),
    ("dst_port", _PORT, True, "RTP receiver port"),
    ("ssrc", {"type": "integer", "minimum": 0, "maximum": 4294967295}, True, "RTP SSRC"),
    ("payload_type", {"type": "integer", "minimum": 0, "maximum": 127}, True, "first payload type"),
    ("payload_types", {"type": "array", "items": {"type": "integer"}}, True, "every payload type seen"),
    ("codec", _S, True, "encoding name from a=rtpmap, else the static payload type's"),
    ("packets", _COUNT, True, "RTP packets received (tshark Pkts)"),
    ("bytes", _COUNT, True, "UDP payload bytes of the RTP packets"),
    ("expected", {"type": "integer"}, True, "last - first extended sequence number + 1 (tshark's)"),
    ("lost", {"type": "integer"}, True, "expected - packets (tshark Lost; negative with duplicates)"),
    ("loss_ratio", {"type": "number", "minimum": 0}, True, "max(0, lost) / expected"),
    ("duplicates", _COUNT, True, "packets whose sequence number was already seen"),
    ("out_of_order", _COUNT, True, "packets below the highest sequence number seen, not duplicates"),
    ("seq_errors", _COUNT, True, "packets whose sequence number is not the previous + 1 (tshark)"),
    ("max_delta_ms", {"type": "number"}, True, "largest arrival gap between regular packets (tshark)"),
    ("mean_jitter_ms", {"type": "number"}, True, "mean RFC 3550 interarrival jitter (tshark)"),
    ("max_jitter_ms", {"type": "number"}, True, "largest RFC 3550 interarrival jitter (tshark)"),
    ("markers", _COUNT, True, "packets with the marker bit"),
    ("ts_jumps", _COUNT, True, "consecutive packets whose timestamp went back or jumped ahead"),
    ("telephone_events", _COUNT, True, "RFC 4733 events (distinct event timestamps)"),
    ("rtt_ms", _N, True, "round trip from RTCP LSR/DLSR, as seen at the capture point"),
    ("rtcp_fraction_lost", _N, True, "last RTCP report's fraction lost about this SSRC (0..1)"),
    ("rtcp_cumulative_lost", _I, True, "last RTCP report's cumulative lost about this SSRC"),
    ("rtcp_jitter_ms", _N, True, "last RTCP report's interarrival jitter about this SSRC"),
    ("cname", _S, True, "RTCP SDES CNAME of the SSRC"),
    ("xr_mos_lq", _N, True, "RTCP XR VoIP metrics MOS-LQ about this SSRC"),
    ("xr_r_factor", _I, True, "RTCP XR VoIP metrics R factor about this SSRC"),
    ("r_factor", {"type": "number"}, True, "simplified G.107 E-model R (media/streams.py r_factor)"),
    ("mos", {"type": "number", "minimum": 1, "maximum": 4.5}, True, "MOS from R (G.107 Annex B)"),
    ("heuristic", {"type": "boolean"}, True, "found by the RTP heuristic, not by SDP"),
    ("start_ts", {"type": "integer"}, True, "first packet, nanoseconds since the Unix epoch"),
    ("end_ts", {"type": "integer"}, True, "last packet, nanoseconds since the Unix epoch"),
    ("final", {"type": "boolean"}, True, "false: interim record of a stream still running (totals so far)"),
    ("end_reason", {"enum": ["bye", "rtcp_bye", "idle", "evicted", "end", None]}, True,
     "why the stream ended (null on interim records)"),
    ("task", {"type": "string"}, False, "capture task (added by the engine)"),
    ("agent", {"type": "string"}, False, "agent (added by the engine)"),
    # in a cluster (issue 18), each only when known: otus_agent/identity.py, as on the SIP record
    *((key, K8S if address else CAPTURE_SCHEMA, False, text) for key, address, text in RECORD_KEYS),
)
NAMES = tuple(f[0] for f in FIELDS if f[2])


def schema() -> dict:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://otus.dev/schemas/media-record.v{SCHEMA_VERSION}.json",
        "title": f"Otus media record, version {SCHEMA_VERSION}",
        "description": "One record per RTP stream when it ends, and interim ones for long streams. "
                       "Generated from otus_agent/media/fields.py. Kafka key: call_id.",
        "type": "object",
        "required": [f[0] for f in FIELDS if f[2]],
        "additionalProperties": False,
        "properties": {name: dict(s, description=d) for name, s, _req, d in FIELDS},
    }


def schema_text() -> str:
    return json.dumps(schema(), indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(schema_text())
