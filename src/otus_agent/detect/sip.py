"""SIP detectors over SIP records (``type: "sip"``, sip/records.py) and call summaries (``type: "call"``,
sip/dialogs_cy.py): scanner user agents and OPTIONS sweeps, REGISTER brute force (401/403 per source and per
user), INVITE floods, and toll fraud (many short international calls from one account)."""
from __future__ import annotations

from typing import Any, Callable

from otus_agent.detect.alerts import AlertOut
from otus_agent.detect.config import DetectConfig
from otus_agent.detect.windows import Counts, Distinct


class SipDetector:
    def __init__(self, config: DetectConfig | None = None, sink: Callable[[dict], Any] | None = None):
        c = self.config = config or DetectConfig()
        self.out = AlertOut(sink, c.cooldown_s, c.max_keys)
        self._uas = tuple(u.lower() for u in c.sip_scan.user_agents)
        self._trusted = frozenset(c.sip_scan.trusted_sources)
        self.options = Distinct(c.sip_scan.window_s, c.sip_scan.options_targets, c.max_keys)
        rb = c.register_brute_force
        self.reg_src = Counts(rb.window_s, 2, c.max_keys)  # kinds: failures, successes
        self.reg_user = Counts(rb.window_s, 2, c.max_keys)
        self.invites = Distinct(c.invite_flood.window_s, c.invite_flood.invites, c.max_keys)
        self.toll = Counts(c.toll_fraud.window_s, 1, c.max_keys)

    def observe(self, rec: dict) -> None:
        if rec.get("type") == "call":
            self._call(rec)
        elif rec.get("type") == "sip":
            if rec.get("method"):
                self._request(rec)
            elif rec.get("status_code"):
                self._response(rec)

    def _request(self, r: dict) -> None:
        t, src, method = r["ts"], r["src_ip"], r["method"]
        ua = (r.get("user_agent") or "").lower()
        if ua and any(s in ua for s in self._uas):
            self.out.raise_("sip_scanner", (src,), t, "warning", f"{src} sends SIP as a scanner ({r['user_agent']})",
                            src_ip=src, user_agent=r["user_agent"], method=method)
        if method == "OPTIONS" and src not in self._trusted:
            sc = self.config.sip_scan
            n = self.options.add(src, (r["dst_ip"], r.get("to_user")), t)
            if n >= sc.options_targets:
                self.out.raise_("options_sweep", (src,), t, "warning",
                                f"{src} sent OPTIONS to {n} targets in {sc.window_s:g} s", src_ip=src, count=n,
                                threshold=sc.options_targets, window_s=sc.window_s)
        elif method == "INVITE" and not r.get("to_tag"):
            fc = self.config.invite_flood
            n = self.invites.add(src, r.get("call_id"), t)
            if n >= fc.invites:
                self.out.raise_("invite_flood", (src,), t, "critical",
                                f"{src} started {n} INVITE transactions in {fc.window_s:g} s", src_ip=src, count=n,
                                threshold=fc.invites, window_s=fc.window_s)

    def _response(self, r: dict) -> None:
        if r.get("cseq_method") != "REGISTER":
            return
        code = r["status_code"]
        if code in (401, 403, 407):
            kind = 0
        elif 200 <= code < 300:
            kind = 1
        else:
            return
        c = self.config.register_brute_force
        t, client = r["ts"], r["dst_ip"]  # a response goes back to the registering client
        user = f"{r.get('to_user')}@{r.get('to_host')}"
        fails, oks = self.reg_src.add(client, t, kind)
        if kind == 0 and fails >= c.per_source and fails >= c.failure_ratio * (fails + oks):
            self.out.raise_("register_brute_force", ("source", client), t, "critical",
                            f"{fails} failed REGISTERs from {client} in {c.window_s:g} s", src_ip=client,
                            count=fails, successes=oks, threshold=c.per_source, window_s=c.window_s)
        fails, oks = self.reg_user.add(user, t, kind)
        if kind == 0 and fails >= c.per_user and fails >= c.failure_ratio * (fails + oks):
            self.out.raise_("register_brute_force", ("user", user), t, "critical",
                            f"{fails} failed REGISTERs for {user} in {c.window_s:g} s", user=user, src_ip=client,
                            count=fails, successes=oks, threshold=c.per_user, window_s=c.window_s)

    def _international(self, number: str) -> bool:
        c = self.config.toll_fraud
        return number.startswith(c.international_prefixes) and not (
            c.home_prefixes and number.startswith(c.home_prefixes))

    def _call(self, r: dict) -> None:
        c = self.config.toll_fraud
        number, account = r.get("to_user") or "", r.get("from_user")
        if not account or not self._international(number):
            return
        dur = r.get("duration_ms")
        if dur is not None and dur >= c.short_call_s * 1000:
            return
        t = r.get("end_ts") or r.get("start_ts") or 0
        n = self.toll.add(account, t)[0]
        if n >= c.calls:
            self.out.raise_("toll_fraud", (account,), t, "critical",
                            f"account {account} made {n} short international calls in {c.window_s:g} s",
                            account=account, count=n, last_number=number, threshold=c.calls, window_s=c.window_s)

    def counters(self) -> dict:
        return {"alerts": dict(self.out.alerts), "suppressed": self.out.suppressed, "recent": self.out.recent_summary(),
                "evictions": self.options.evictions + self.reg_src.evictions + self.reg_user.evictions
                + self.invites.evictions + self.toll.evictions}
