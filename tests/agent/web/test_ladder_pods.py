"""The console's ladder names endpoints by pod (or Service) when the records carry src_k8s / dst_k8s
(issue 18's identity), in a real browser (Debian's chromium, Playwright); addresses otherwise, and the
address stays in the endpoint's data and tooltip.  A hostile pod name is text, never markup."""
from __future__ import annotations

import shutil

import pytest

from otus_agent.web.server import HttpServer
from otus_agent.web.store import RecordStore

CHROMIUM = "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")
pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"{CHROMIUM} is absent (apt-get install chromium)")


def rec(ts: int, src: str, dst: str, first: dict, **kw) -> dict:
    return {"v": 1, "type": "sip", "ts": ts, "src_ip": src, "src_port": 5060, "dst_ip": dst, "dst_port": 5060,
            "transport": "udp", "call_id": "pods@x", "cseq_num": 1, "cseq_method": "INVITE", "from_user": "alice",
            "to_user": "bob", "via_branch": "z9hG4bK1", "agent": "otus-t-x1", "task": "t", **first, **kw}


def test_ladder_endpoints_are_labelled_by_pod():
    uac = {"namespace": "alpha", "pod": "uac-6c9f8d7b5-abcde", "workload": {"kind": "Deployment", "name": "uac"},
           "node": "node-a"}
    evil = {"namespace": "beta", "pod": "<img src=x onerror=\"window.pwned=1\">"}
    t0 = 1_800_000_000_000_000_000
    store = RecordStore()
    store.add(rec(t0, "10.0.0.1", "10.96.0.10", {"method": "INVITE"}, src_k8s=uac,
                  dst_k8s={"namespace": "beta", "service": "sbc"}))
    store.add(rec(t0 + 1_000_000, "10.96.0.10", "10.0.0.1", {"status_code": 100, "reason_phrase": "Trying"},
                  dst_k8s=uac))
    store.add(rec(t0 + 2_000_000, "10.0.0.3", "10.0.0.1", {"status_code": 200, "reason_phrase": "OK"},
                  src_k8s=evil, dst_k8s=uac))
    store.add(rec(t0 + 3_000_000, "10.0.0.1", "192.0.2.7", {"method": "ACK"}))
    srv = HttpServer(("127.0.0.1", 0), store, None, lambda: None, 1 << 20)
    srv.start()
    try:
        with sync_api.sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            # bypass_csp: Playwright's waits evaluate strings, which the page's CSP forbids (as test_browser.py)
            page = b.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=True).new_page()
            page.goto(f"http://127.0.0.1:{srv.port}/")
            page.wait_for_selector("#calls tr[data-call-id='pods@x']")
            page.click("#calls tr[data-call-id='pods@x']")
            page.wait_for_function("document.querySelectorAll('#ladder-svg .arrow').length == 4")
            ends = page.eval_on_selector_all("#ladder-svg .endpoint", "gs => gs.map(g => [g.dataset.endpoint, "
                                             "g.querySelector('text').firstChild.textContent])")
            assert ends == [["10.0.0.1:5060", "uac-6c9f8d7b5-abcde.alpha"], ["10.96.0.10:5060", "svc/sbc.beta"],
                            ["10.0.0.3:5060", evil["pod"] + ".beta"], ["192.0.2.7:5060", "192.0.2.7:5060"]]
            assert page.evaluate("window.pwned") is None
            assert page.eval_on_selector_all("#ladder-svg img", "xs => xs.length") == 0
            b.close()
    finally:
        srv.close()
