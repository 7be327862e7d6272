# cython: boundscheck=True, wraparound=True
# (general Python code: keep Python indexing semantics when compiled)
"""SDP (RFC 8866) for call records, and the SDP part of multipart bodies.

Only what VoIP engineers look for in a capture: origin, connection address
(session and per media), media lines (type, port, protocol, payload types)
and rtpmap.  Unknown lines are ignored; a body that is not SDP gives None.
"""
from __future__ import annotations

MAX_MEDIA = 32
MAX_PARTS = 16


def parse_sdp(body: bytes) -> dict | None:
    if not body.startswith(b"v="):
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("latin-1")
    origin = None
    conn = None
    media: list[dict] = []
    cur: dict | None = None
    for line in text.split("\n"):
        if len(line) < 2 or line[1] != "=":
            continue
        t = line[0]
        v = line[2:].rstrip("\r")
        if t == "m":
            if len(media) >= MAX_MEDIA:
                cur = None
                continue
            f = v.split()
            if len(f) < 3:
                cur = None
                continue
            port_s = f[1].split("/", 1)[0]
            cur = {"type": f[0], "port": int(port_s) if port_s.isdigit() and len(port_s) <= 5 else None,
                   "proto": f[2], "payloads": f[3:]}
            media.append(cur)
        elif t == "c":
            f = v.split()
            addr = f[2].split("/", 1)[0] if len(f) >= 3 else None
            if cur is None:
                conn = addr
            else:
                cur["connection"] = addr
        elif t == "o":
            f = v.split()
            if len(f) >= 6:
                origin = {"username": f[0], "session_id": f[1], "session_version": f[2], "address": f[5]}
        elif t == "a" and cur is not None and v.startswith("rtpmap:"):
            sp = v.find(" ")
            if sp > 7:
                cur.setdefault("rtpmap", {})[v[7:sp]] = v[sp + 1:].strip()
    out: dict = {"media": media}
    if origin is not None:
        out["origin"] = origin
    if conn is not None:
        out["connection"] = conn
    return out


def boundary_of(content_type: str) -> str | None:
    for p in content_type.split(";")[1:]:
        k, _, v = p.partition("=")
        if k.strip().lower() == "boundary":
            v = v.strip()
            if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
                v = v[1:-1]
            return v or None
    return None


def sdp_from_body(content_type: str | None, body: bytes) -> dict | None:
    """SDP from an application/sdp body or the first SDP part of a multipart body."""
    if not body or not content_type:
        return None
    ct = content_type.split(";", 1)[0].strip().lower()
    if ct == "application/sdp":
        return parse_sdp(body)
    if ct.startswith("multipart/"):
        b = boundary_of(content_type)
        if not b:
            return None
        delim = b"--" + b.encode("utf-8", "replace")
        parts = body.split(delim)
        for part in parts[1:MAX_PARTS + 1]:
            if part.startswith(b"--"):
                break
            e = part.find(b"\r\n\r\n")
            sep = 4
            if e < 0:
                e = part.find(b"\n\n")
                sep = 2
            if e < 0:
                continue
            head = part[:e].decode("latin-1").lower()
            pct = None
            for line in head.splitlines():
                if line.startswith("content-type:"):
                    pct = line[13:].strip()
            inner = part[e + sep:]
            if inner.endswith(b"\r\n"):
                inner = inner[:-2]
            if pct is not None:
                found = sdp_from_body(pct, inner)
                if found is not None:
                    return found
    return None
