# cython: boundscheck=True, wraparound=True
# (general Python code: keep Python indexing semantics when compiled)
"""SIP message parser (RFC 3261 grammar), without regular expressions.

``parse(data)`` frames one message at the start of ``data`` and returns a
``SipMessage`` whose ``defects`` list says why it is malformed, if it is.
A malformed message is still returned with whatever could be read, so the
caller can count it by reason and emit an error record; nothing raises.

Only the headers Otus reports are parsed deeply (start line, Via, From, To,
Call-ID, CSeq, Max-Forwards, Content-Length/-Type, Contact, Expires, Date,
User-Agent/Server, P-Asserted-Identity, Reason and the correlation headers);
the rest are kept as folded strings.  Authorization and Proxy-Authorization
values are redacted unless asked otherwise.

The grammar walks are the scanner's (``scan_cy``, lenient mode): this module
decodes their spans, strips LWS, unescapes and names defects.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from otus_agent.sip import grammar
from otus_agent.sip.scan_cy import closing_quote as _quote_walk
from otus_agent.sip.scan_cy import comma_spans as _comma_walk
from otus_agent.sip.scan_cy import digits as _digit_walk  # the one grammar walks: the scanner's (sip/grammar.py)
from otus_agent.sip.scan_cy import hostport as _hostport_walk
from otus_agent.sip.scan_cy import is_token as _token_walk
from otus_agent.sip.scan_cy import looks_like_sip as looks_like_sip  # the one definition, re-exported
from otus_agent.sip.scan_cy import name_addr_spans as _name_addr_walk
from otus_agent.sip.scan_cy import param_spans as _param_walk
from otus_agent.sip.scan_cy import uri_spans as _uri_walk
from otus_agent.sip.scan_cy import valid_host as _host_walk
from otus_agent.sip.scan_cy import via_spans as _via_walk

# RFC 3261 7.3.3 compact forms, plus RFC 3515/3892/4028/3903/3841 ones in use
COMPACT = {
    "i": "call-id", "f": "from", "t": "to", "v": "via", "m": "contact", "l": "content-length",
    "c": "content-type", "k": "supported", "s": "subject", "e": "content-encoding",
    "o": "event", "u": "allow-events", "r": "refer-to", "x": "session-expires", "b": "referred-by",
    "y": "identity", "a": "accept-contact", "j": "reject-contact", "d": "request-disposition",
    "n": "identity-info",
}
SINGLE = ("call-id", "from", "to", "cseq", "max-forwards", "content-length", "content-type")
REDACTED = ("authorization", "proxy-authorization")
MAX_CSEQ = grammar.MAX_CSEQ
MAX_DELTA = grammar.MAX_DELTA
MAX_PORT = grammar.MAX_PORT
MAX_FORWARDS = grammar.MAX_FORWARDS
MAX_LIMIT = grammar.MAX_LIMIT
MAX_HEADER_BYTES = 65536


_NAMES: dict[str, str | None] = {}   # raw header name -> canonical name (None: not a token)
MAX_NAMES = 4096


def _is_token(s: str) -> bool:
    """A token (RFC 3261 25.1); past ASCII never one."""
    return _token_walk(s.encode("utf-8", "surrogatepass"))


def _canonical_name(raw: str) -> str | None:
    """'Call-ID ' -> 'call-id', 'i' -> 'call-id'; None when not a token. Cached: header
    names repeat endlessly, and the cache stops growing at MAX_NAMES entries."""
    name = _NAMES.get(raw)
    if name is not None or raw in _NAMES:
        return name
    low = raw.rstrip().lower()
    name = COMPACT.get(low, low) if len(low) == 1 else (low if _is_token(low) else None)
    if name is not None and not _is_token(name):
        name = None
    if len(_NAMES) < MAX_NAMES:
        _NAMES[raw] = name
    return name


def _digits(s: str) -> int:
    """Non-negative decimal, or -1 when ``s`` is not one: the scanner's walk.  A number past MAX_LIMIT
    (10**17) reads as MAX_LIMIT + 1, still greater than every limit and than any datagram or stream."""
    v = _digit_walk(s.encode("utf-8", "surrogatepass"), MAX_LIMIT)
    return MAX_LIMIT + 1 if v == -2 else v


@dataclass(slots=True)
class Uri:
    scheme: str
    user: str | None = None
    host: str | None = None
    port: int | None = None
    params: dict = field(default_factory=dict)
    headers: str | None = None


@dataclass(slots=True)
class NameAddr:
    display: str | None
    uri: Uri | None
    raw_uri: str
    params: dict


@dataclass(slots=True)
class Via:
    transport: str
    host: str
    port: int | None
    params: dict

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")


@dataclass(slots=True)
class SipMessage:
    is_request: bool
    method: str | None = None
    request_uri: str | None = None
    status_code: int | None = None
    reason: str | None = None
    headers: dict = field(default_factory=dict)   # canonical lower-case name -> [values]
    body: bytes = b""
    length: int = 0                               # bytes this message took from the input
    defects: list = field(default_factory=list)
    junk: int = 0                                 # bytes skipped before the start line
    # parsed on demand by parse()
    call_id: str | None = None
    cseq_num: int | None = None
    cseq_method: str | None = None
    from_: NameAddr | None = None
    to: NameAddr | None = None
    via: list = field(default_factory=list)
    content_length: int | None = None

    def header(self, name: str) -> str | None:
        v = self.headers.get(name)
        return v[0] if v else None

    @property
    def error(self) -> str | None:
        return self.defects[0] if self.defects else None


# ---------------------------------------------------------------- helpers
def split_commas(s: str) -> list[str]:
    """Split a header value on commas outside quotes and <> (the scanner's ``_comma`` walk)."""
    if '"' not in s and "<" not in s:
        return s.split(",")        # no quote or '<': every comma separates (what the walk finds)
    b, ascii_ = _text(s)
    out = []
    start = 0
    for i in _comma_walk(b):
        out.append(_cut(s, b, ascii_, start, i))
        start = i + 1
    out.append(_cut(s, b, ascii_, start, len(b)))
    return out


def _text(s: str) -> tuple[bytes, bool]:
    """s as the bytes the walks read, and whether byte offsets are character offsets (ASCII)."""
    if s.isascii():
        return s.encode("ascii"), True
    return s.encode("utf-8", "surrogatepass"), False


def _piece(b: bytes, i: int, j: int) -> str:
    return b[i:j].decode("utf-8", "surrogatepass")


def _cut(s: str, b: bytes, ascii_: bool, i: int, j: int) -> str:
    """The text at byte offsets i:j of b (s encoded by ``_text``)."""
    return s[i:j] if ascii_ else b[i:j].decode("utf-8", "surrogatepass")


def parse_params(s: str) -> tuple[dict, bool]:
    """';a=b ; c' -> ({'a': 'b', 'c': ''}, ok): the scanner's ``_param`` walk (lenient) splits; LWS
    around names and values is stripped here, and a name must then be a token; names lower-cased."""
    params: dict = {}
    ok = True
    if not s:
        return params, ok
    b, ascii_ = _text(s)
    sp = _param_walk(b)
    if (s[:sp[0]] if ascii_ else _piece(b, 0, sp[0])).strip():
        ok = False
    for k in range(1, len(sp), 4):
        if ascii_:
            name = s[sp[k]:sp[k + 1]].strip()
            val = s[sp[k + 2]:sp[k + 3]].strip() if sp[k + 2] >= 0 else ""
        else:
            name = _piece(b, sp[k], sp[k + 1]).strip()
            val = _piece(b, sp[k + 2], sp[k + 3]).strip() if sp[k + 2] >= 0 else ""
        if not _is_token(name):
            ok = False
            continue
        params.setdefault(name.lower(), val)  # a repeated parameter: the first one counts
    return params, ok


def valid_host(host: str) -> bool:
    """hostname, IPv4address or IPv6reference (RFC 3261 25.1, RFC 5118); past ASCII never one."""
    return _host_walk(host.encode("utf-8", "surrogatepass"))


def _split_hostport(hp: str) -> tuple[str, int | None, bool]:
    """(host, port, valid) by the scanner's ``_hostport`` walk."""
    b, ascii_ = _text(hp)
    h, port, ok = _hostport_walk(b)
    return (hp[:h] if ascii_ else _piece(b, 0, h)), port, ok


def parse_uri(s: str) -> tuple[Uri | None, bool]:
    """sip/sips/tel URIs in detail, other schemes kept opaque (still well-formed): the objects from the
    spans of the scanner's ``_uri`` walk; the parameters by ``parse_params``."""
    b, ascii_ = _text(s)
    w = _uri_walk(b)
    if w is None:
        return None, False
    ok, kind, colon, at, uend, semi, q, h, port = w
    n = len(b)
    scheme = _cut(s, b, ascii_, 0, colon).lower()
    if kind == 2:   # tel
        params, pok = parse_params(_cut(s, b, ascii_, semi, n)) if semi < n else ({}, True)
        return Uri(scheme, _cut(s, b, ascii_, colon + 1, semi), None, None, params), ok and pok
    if kind == 0:
        return Uri(scheme, None, None, None), ok
    params, pok = parse_params(_cut(s, b, ascii_, semi, q)) if semi < q else ({}, True)
    return Uri(scheme, _cut(s, b, ascii_, colon + 1, uend) if at >= 0 else None,
               _cut(s, b, ascii_, colon + 1 if at < 0 else at + 1, h), port, params,
               _cut(s, b, ascii_, q + 1, n) if q < n else None), ok and pok


def _unquote(s: str) -> str:
    inner = s[1:-1]
    if "\\" not in inner:
        return inner
    out = []
    i = 0
    n = len(inner)
    while i < n:
        ch = inner[i]
        if ch == "\\" and i + 1 < n:
            i += 1
            ch = inner[i]
        out.append(ch)
        i += 1
    return "".join(out)


def _closing_quote(s: str, i: int) -> int:
    """Index of the '"' closing a quoted-string whose content starts at ``i``, or -1: the scanner's
    ``_quoted`` walk."""
    if s.isascii():
        return _quote_walk(s.encode("ascii"), i)
    b = s.encode("utf-8", "surrogatepass")
    j = _quote_walk(b, len(s[:i].encode("utf-8", "surrogatepass")))
    return -1 if j < 0 else len(_piece(b, 0, j))


def parse_name_addr(s: str) -> tuple[NameAddr | None, str | None]:
    """name-addr / addr-spec with header parameters; (value, defect): the delimiters from the scanner's
    ``_name_addr`` walk, LWS stripped and defects named here.

    A defect in one part does not hide the others: a bad display name or an
    unparsable URI still yields the header parameters (tags), flagged."""
    s = s.strip()
    b, ascii_ = _text(s)
    w = _name_addr_walk(b)
    if w is None:
        return None, "unterminated_quoted_string"
    q, lt, gt, semi, spec = w
    n = len(b)
    display = None
    defect = None
    if q >= 0:
        display = _unquote(_cut(s, b, ascii_, 0, q + 1))
        if lt < 0 or _cut(s, b, ascii_, q + 1, lt).strip():
            return None, "bad_name_addr"
    elif lt > 0:
        dn = _cut(s, b, ascii_, 0, lt).strip()
        for word in dn.split():
            if not _is_token(word):
                defect = "bad_display_name"
                break
        display = dn or None
    if lt >= 0:
        if gt < 0:
            return None, "bad_name_addr"
        raw = _cut(s, b, ascii_, lt + 1, gt)
        if raw != raw.strip():
            defect = defect or "lws_in_addr_spec"
            raw = raw.strip()
        tail = _cut(s, b, ascii_, gt + 1, n)
    else:
        raw = _cut(s, b, ascii_, 0, semi).strip()
        tail = _cut(s, b, ascii_, semi, n)
        if spec:
            defect = defect or "addr_spec_needs_angle_brackets"
    uri, ok = parse_uri(raw)
    if not ok:
        defect = defect or "bad_uri"
    params, pok = parse_params(tail)
    if not pok:
        defect = defect or "bad_header_params"
    return NameAddr(display, uri, raw, params), defect


def parse_via(value: str) -> tuple[list[Via], str | None]:
    """Via values by the scanner's ``_via`` walk (its delimiters; names compared and LWS stripped here)."""
    vias = []
    for part in split_commas(value):
        part = part.strip()
        if not part:
            return vias, "bad_via"
        b, ascii_ = _text(part)
        w = _via_walk(b)
        if w is None:
            return vias, "bad_via"
        s1, s2, t0, t1, h0, semi = w
        if _cut(part, b, ascii_, 0, s1).strip().upper() != "SIP" or _cut(part, b, ascii_, s1 + 1, s2).strip() != "2.0":
            return vias, "bad_via"
        transport = _cut(part, b, ascii_, t0, t1).upper()
        if not _is_token(transport) or h0 >= len(b):
            return vias, "bad_via"
        params, ok = parse_params(_cut(part, b, ascii_, semi, len(b))) if semi < len(b) else ({}, True)
        host, port, hok = _split_hostport(_cut(part, b, ascii_, h0, semi).strip())
        vias.append(Via(transport, host, port, params))
        if not ok or not hok:
            return vias, "bad_via"
    return vias, None


# ---------------------------------------------------------------- framing
def find_header_end(data: bytes, start: int = 0) -> tuple[int, int]:
    """(end of header block, start of body) or (-1, -1)."""
    e = data.find(b"\r\n\r\n", start)
    if e >= 0:
        return e, e + 4
    e = data.find(b"\n\n", start)
    if e >= 0:
        return e, e + 2
    return -1, -1


def skip_junk(data: bytes) -> int:
    """Bytes before a plausible start line (e.g. NUL padding; Zeek's junk_before_request)."""
    i = 0
    n = min(len(data), 256)
    while i < n:
        b = data[i]
        if 0x21 <= b <= 0x7E and b not in (0x3A, 0x3B):  # a token or SIP/ character
            return i
        i += 1
    return i


# ---------------------------------------------------------------- parser
def parse(data: bytes, stream: bool = False, redact: bool = True) -> SipMessage | None:
    """Parse the message at the start of ``data``.

    ``stream`` (TCP/SCTP/WS framing): Content-Length decides where the message
    ends, and None is returned while the message is incomplete.  For UDP the
    datagram is the message.  Returns a SipMessage with ``defects`` when
    malformed; None only for an incomplete stream message.
    """
    junk = 0
    if data[:1] in (b"\0", b"\r", b"\n", b" ", b"\t") or (data and data[0] >= 0x80):
        junk = skip_junk(data)
    hend, bstart = find_header_end(data, junk)
    no_empty_line = False
    if hend < 0:
        if stream:
            if len(data) < MAX_HEADER_BYTES:
                return None
            m = SipMessage(is_request=False, length=len(data), junk=junk)
            m.defects.append("headers_too_long")
            return m
        # a datagram without the empty line: read its headers, flag it
        no_empty_line = True
        hend = bstart = len(data)
        while hend > junk and data[hend - 1] in (10, 13):
            hend -= 1
    try:
        head = data[junk:hend].decode("utf-8")
    except UnicodeDecodeError:
        head = data[junk:hend].decode("latin-1")
        utf8 = False
    else:
        utf8 = True
    lines = head.split("\r\n") if "\r\n" in head else head.split("\n")
    start = lines[0]
    m = SipMessage(is_request=not start.startswith("SIP/"), junk=junk)
    defects = m.defects
    if not utf8:
        defects.append("not_utf8")
    if junk:
        defects.append("junk_before_message")
    if no_empty_line:
        defects.append("missing_empty_line")
    _start_line(m, start)
    hdrs = m.headers
    last = None
    for line in lines[1:]:
        if not line:
            continue
        c = line[0]
        if c == " " or c == "\t":
            if last is None:
                defects.append("bad_folding")
                continue
            lst = hdrs[last]
            lst[-1] = lst[-1] + " " + line.strip() if lst[-1] else line.strip()
            continue
        colon = line.find(":")
        if colon <= 0:
            defects.append("bad_header_line")
            last = None
            continue
        name = _canonical_name(line[:colon])
        if name is None:
            defects.append("bad_header_name")
            last = None
            continue
        value = line[colon + 1:].strip()
        lst = hdrs.get(name)
        if lst is None:
            hdrs[name] = [value]
        else:
            lst.append(value)
        last = name
    for name in REDACTED:
        if redact and name in hdrs:
            hdrs[name] = [_redact(v) for v in hdrs[name]]
    _core_headers(m, defects)
    if len(defects) > 1:
        m.defects = defects = list(dict.fromkeys(defects))
    # body and framing
    cl = m.content_length
    if stream:
        if cl is None:
            cl = 0
            if m.is_request or m.status_code:
                defects.append("missing_content_length")
        if len(data) - bstart < cl:
            return None
        m.body = data[bstart:bstart + cl]
        m.length = bstart + cl
    else:
        avail = len(data) - bstart
        if cl is None:
            m.body = data[bstart:]
        else:
            if cl > avail:
                defects.append("content_length_exceeds_datagram")
            m.body = data[bstart:bstart + cl]
        m.length = len(data)
    return m


def _redact(v: str) -> str:
    sp = v.find(" ")
    return (v[:sp] if sp > 0 else v) + " <redacted>"


def _start_line(m: SipMessage, start: str) -> None:
    defects = m.defects
    if not m.is_request:
        # SIP-Version SP Status-Code SP Reason-Phrase
        sp1 = start.find(" ")
        if sp1 < 0 or start[:sp1].upper() != "SIP/2.0":
            defects.append("bad_version" if sp1 > 0 else "bad_status_line")
            return
        sp2 = start.find(" ", sp1 + 1)
        code_s = start[sp1 + 1:] if sp2 < 0 else start[sp1 + 1:sp2]
        code = _digits(code_s)
        if len(code_s) != 3 or not 100 <= code <= 699:
            defects.append("bad_status_code")
            return
        m.status_code = code
        m.reason = "" if sp2 < 0 else start[sp2 + 1:]
        return
    parts = start.split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2]:
        defects.append("bad_request_line")
        if len(parts) >= 1 and _is_token(parts[0]):
            m.method = parts[0]
        return
    method, uri, version = parts
    if not _is_token(method):
        defects.append("bad_method")
        return
    m.method = method
    m.request_uri = uri
    if version.upper() != "SIP/2.0":
        defects.append("bad_version")
    if uri.startswith("<"):
        defects.append("bad_request_uri")
        return
    u, ok = parse_uri(uri)
    if not ok or (u is not None and u.headers is not None and u.scheme in ("sip", "sips")):
        defects.append("bad_request_uri")


def _core_headers(m: SipMessage, defects: list) -> None:
    h = m.headers
    for name in SINGLE:
        v = h.get(name)
        if v is not None and len(v) > 1:
            defects.append("duplicate_" + name.replace("-", "_"))
    v = h.get("call-id")
    if v:
        m.call_id = v[0]
        if not m.call_id or " " in m.call_id:
            defects.append("bad_call_id")
    v = h.get("cseq")
    if v:
        parts = v[0].split()
        if len(parts) != 2:
            defects.append("bad_cseq")
        else:
            num = _digits(parts[0])
            if num < 0 or num > MAX_CSEQ:
                defects.append("bad_cseq")
            else:
                m.cseq_num = num
            m.cseq_method = parts[1]
            if m.is_request and m.method is not None and parts[1] != m.method:
                defects.append("cseq_method_mismatch")
    v = h.get("from")
    if v:
        m.from_, d = parse_name_addr(v[0])
        if d:
            defects.append("from_" + d)
    v = h.get("to")
    if v:
        m.to, d = parse_name_addr(v[0])
        if d:
            defects.append("to_" + d)
    v = h.get("via")
    if v:
        for value in v:
            vias, d = parse_via(value)
            m.via.extend(vias)
            if d:
                defects.append(d)
                break
    if m.is_request or m.status_code:
        for name in ("call-id", "cseq", "from", "to", "via"):
            if name not in h:
                defects.append("missing_" + name.replace("-", "_"))
    v = h.get("content-length")
    if v:
        cl = _digits(v[0])
        if cl < 0:
            defects.append("bad_content_length")
        else:
            m.content_length = cl
    v = h.get("max-forwards")
    if v and not 0 <= _digits(v[0]) <= MAX_FORWARDS:
        defects.append("bad_max_forwards")
    v = h.get("expires")
    if v and not 0 <= _digits(v[0]) <= MAX_DELTA:
        defects.append("bad_expires")
    v = h.get("contact")
    if v:
        for value in v:
            if value == "*":
                continue
            for c in split_commas(value):
                na, d = parse_name_addr(c)
                if d:
                    defects.append("contact_" + d)
                    break
                e = na.params.get("expires")
                if e is not None and not 0 <= _digits(e) <= MAX_DELTA:
                    defects.append("bad_expires")
                    break
    v = h.get("date")
    if v and not v[0].rstrip().endswith("GMT"):
        defects.append("bad_date")
