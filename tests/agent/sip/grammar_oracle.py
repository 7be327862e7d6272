"""The full parser's str grammar as it was before issue 14 merged its walks into the scanner's (commit
ba0c528, verbatim but for imports): the oracle the merged walks must equal on any text."""
# ruff: noqa
from __future__ import annotations

from otus_agent.sip.message_cy import MAX_PORT, NameAddr, Uri, Via, _digits, _is_token
from otus_agent.sip.scan_cy import valid_host as _host_walk


def split_commas(s: str) -> list[str]:
    """Split a header value on commas outside quotes and <>."""
    if '"' not in s and "<" not in s:
        return s.split(",")
    out = []
    start = 0
    i = 0
    n = len(s)
    inq = False
    ina = False
    while i < n:
        ch = s[i]
        if inq:
            if ch == "\\":
                i += 1
            elif ch == '"':
                inq = False
        elif ch == '"':
            inq = True
        elif ch == "<":
            ina = True
        elif ch == ">":
            ina = False
        elif ch == "," and not ina:
            out.append(s[start:i])
            start = i + 1
        i += 1
    out.append(s[start:])
    return out


def parse_params(s: str) -> tuple[dict, bool]:
    """';a=b ; c' -> ({'a': 'b', 'c': ''}, ok); names lower-cased, LWS around '=' allowed."""
    params: dict = {}
    ok = True
    if not s:
        return params, ok
    parts = s.split(";")
    if parts[0].strip():
        ok = False
    for p in parts[1:]:
        eq = p.find("=")
        if eq < 0:
            name = p.strip()
            val = ""
        else:
            name = p[:eq].strip()
            val = p[eq + 1:].strip()
        if not _is_token(name):
            ok = False
            continue
        params.setdefault(name.lower(), val)  # a repeated parameter: the first one counts
    return params, ok


def valid_host(host: str) -> bool:
    """hostname, IPv4address or IPv6reference (RFC 3261 25.1, RFC 5118); past ASCII never one."""
    return _host_walk(host.encode("utf-8", "surrogatepass"))


def _split_hostport(hp: str) -> tuple[str, int | None, bool]:
    if hp.startswith("["):
        end = hp.find("]")
        if end < 0:
            return hp, None, False
        host = hp[:end + 1]
        rest = hp[end + 1:]
        if not rest:
            return host, None, valid_host(host)
        if rest[0] != ":":
            return host, None, False
        port = _digits(rest[1:])
        return host, port, 0 <= port <= MAX_PORT and valid_host(host)
    colon = hp.find(":")
    if colon < 0:
        return hp, None, valid_host(hp)
    port = _digits(hp[colon + 1:])
    return hp[:colon], port, 0 <= port <= MAX_PORT and valid_host(hp[:colon])


def parse_uri(s: str) -> tuple[Uri | None, bool]:
    """sip/sips/tel URIs in detail; other schemes kept opaque (still well-formed)."""
    colon = s.find(":")
    if colon <= 0:
        return None, False
    scheme = s[:colon].lower()
    rest = s[colon + 1:]
    if not _is_token(scheme.replace("+", "")) or " " in s or "\t" in s:
        return None, False
    if scheme == "tel":
        semi = rest.find(";")
        params, ok = parse_params(rest[semi:]) if semi >= 0 else ({}, True)
        return Uri(scheme, rest[:semi] if semi >= 0 else rest, None, None, params), ok and bool(rest)
    if scheme not in ("sip", "sips"):
        return Uri(scheme, None, None, None), bool(rest)
    # userinfo may hold ';', '?' and ':' (RFC 3261 user-unreserved); '@' only escaped,
    # and the headers part cannot hold an unescaped '@' either: the last '@' splits.
    at = rest.rfind("@")
    user = None
    if at >= 0:
        user = rest[:at]
        colon = user.find(":")  # user:password
        if colon >= 0:
            user = user[:colon]
        rest = rest[at + 1:]
    headers = None
    q = rest.find("?")
    if q >= 0:
        headers = rest[q + 1:]
        rest = rest[:q]
    semi = rest.find(";")
    if semi >= 0:
        params, ok = parse_params(rest[semi:])
        rest = rest[:semi]
    else:
        params, ok = {}, True
    host, port, hok = _split_hostport(rest)
    return Uri(scheme, user, host, port, params, headers), ok and hok and (at < 0 or bool(user))


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
    """Index of the '"' closing a quoted-string whose content starts at ``i``, or -1."""
    while True:
        j = s.find('"', i)
        if j < 0:
            return -1
        k = j
        while k > i and s[k - 1] == "\\":
            k -= 1
        if (j - k) % 2 == 0:  # not escaped
            return j
        i = j + 1


def parse_name_addr(s: str) -> tuple[NameAddr | None, str | None]:
    """name-addr / addr-spec with header parameters; (value, defect).

    A defect in one part does not hide the others: a bad display name or an
    unparsable URI still yields the header parameters (tags), flagged."""
    s = s.strip()
    display = None
    defect = None
    lt = -1
    if s.startswith('"'):
        i = _closing_quote(s, 1)
        if i < 0:
            return None, "unterminated_quoted_string"
        display = _unquote(s[:i + 1])
        rest = s[i + 1:].lstrip()
        if not rest.startswith("<"):
            return None, "bad_name_addr"
        s = rest
        lt = 0
    else:
        lt = s.find("<")
        if lt > 0:
            dn = s[:lt].strip()
            for word in dn.split():
                if not _is_token(word):
                    defect = "bad_display_name"
                    break
            display = dn or None
    if lt >= 0:
        gt = s.find(">", lt)
        if gt < 0:
            return None, "bad_name_addr"
        raw = s[lt + 1:gt]
        if raw != raw.strip():
            defect = defect or "lws_in_addr_spec"
            raw = raw.strip()
        tail = s[gt + 1:]
    else:
        semi = s.find(";")
        raw = (s if semi < 0 else s[:semi]).strip()
        tail = "" if semi < 0 else s[semi:]
        if "?" in raw or "," in raw:
            defect = defect or "addr_spec_needs_angle_brackets"
    uri, ok = parse_uri(raw)
    if not ok:
        defect = defect or "bad_uri"
    params, pok = parse_params(tail)
    if not pok:
        defect = defect or "bad_header_params"
    return NameAddr(display, uri, raw, params), defect


def parse_via(value: str) -> tuple[list[Via], str | None]:
    vias = []
    for part in split_commas(value):
        part = part.strip()
        if not part:
            return vias, "bad_via"
        segs = part.split("/", 2)
        if len(segs) != 3 or segs[0].strip().upper() != "SIP" or segs[1].strip() != "2.0":
            return vias, "bad_via"
        rest = segs[2].lstrip()
        sp = 0
        n = len(rest)
        while sp < n and rest[sp] not in " \t":
            sp += 1
        transport = rest[:sp].upper()
        sent = rest[sp:].strip()
        if not _is_token(transport) or not sent:
            return vias, "bad_via"
        semi = sent.find(";")
        hp = (sent if semi < 0 else sent[:semi]).strip()
        params, ok = parse_params(sent[semi:]) if semi >= 0 else ({}, True)
        host, port, hok = _split_hostport(hp)
        vias.append(Via(transport, host, port, params))
        if not ok or not hok:
            return vias, "bad_via"
    return vias, None


