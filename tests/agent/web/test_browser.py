"""The console in a real browser: Debian's chromium driven by Playwright (never a downloaded browser).

A daemon serves the API on loopback; the page creates a task on `lo` (after showing per-field
errors for a bad one), SIP calls are sent over loopback, they appear in the live call list, one
call's ladder has its arrows in the order sent (the retransmitted INVITE marked), and hostile SIP
text (markup, javascript: URIs, quotes, control bytes) shows as text and never runs.
"""
from __future__ import annotations

import os
import shutil
import time
import uuid

import pytest

from .conftest import TOKEN, free_port, send_call, task_yaml, wait_for

CHROMIUM = "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")
pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"{CHROMIUM} is absent (apt-get install chromium)")

HOSTILE_CID = "<script>window.pwned=1</script>'\"@evil"
HOSTILE_FROM = "javascript:alert(1)"
HOSTILE_UA = "<img src=x onerror=\"window.pwned=2\"> \x01\x07\x1b[31m ua"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def rows(page) -> list[str]:
    return page.eval_on_selector_all("#calls tbody tr", "trs => trs.map(t => t.dataset.callId)")


def test_console_end_to_end(daemon, browser, tmp_path):
    port = free_port()
    # bypass_csp: Playwright's waits evaluate strings, which the page's CSP forbids; it also means the
    # hostile-text checks below prove the escaping itself, not the CSP behind it
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (errors.append("dialog: " + d.message), d.dismiss()))
    page.goto(daemon.url + "/")
    page.wait_for_function("window.otusConsole && window.otusConsole.streamOpen")
    page.fill("#token", TOKEN)

    # a bad task: the server's per-field errors, nothing created
    page.fill("#task-yaml", "id: Bad_Id\ninterfaces: [lo]\nsnaplen: 1\n")
    page.wait_for_function("document.querySelectorAll('#task-errors li').length == 2")
    errs = page.eval_on_selector_all("#task-errors li", "ls => ls.map(l => l.textContent)")
    assert errs[0].startswith("id: ") and errs[1].startswith("snaplen: ")
    page.click("#task-create")
    time.sleep(0.5)
    assert daemon.get("/api/v1/tasks") == []

    tid = "web-lo-" + uuid.uuid4().hex[:6]
    page.fill("#task-yaml", task_yaml(tid, port))
    page.wait_for_function("document.querySelectorAll('#task-errors li').length == 0")
    page.click("#task-create")
    page.wait_for_function(f"document.getElementById('task-msg').textContent == 'created {tid}'")
    page.wait_for_selector(f"#tasks tr[data-task-id='{tid}']")
    time.sleep(1.0)   # the task process opens its ring

    ok_cid = f"call-{uuid.uuid4().hex}@test"
    sent = send_call(port, ok_cid)
    send_call(port, HOSTILE_CID, from_user=HOSTILE_FROM, retransmit=False, extra=f"User-Agent: {HOSTILE_UA}\r\n")
    wait_for(lambda: {ok_cid, HOSTILE_CID} <= set(rows(page)), 30, what="both calls in the page's call list")
    wait_for(lambda: page.eval_on_selector(f"#calls tr[data-call-id='{ok_cid}'] td:nth-child(2)",
                                           "td => td.textContent") == "ended", 10, what="the call to end")

    # the ladder: one arrow per message, in the order sent, the retransmission marked
    page.click(f"#calls tr[data-call-id='{ok_cid}']")
    page.wait_for_function(f"document.querySelectorAll('#ladder-svg .arrow').length == {len(sent)}")
    arrows = page.eval_on_selector_all("#ladder-svg .arrow", "gs => gs.map(g => [g.dataset.src, g.dataset.dst, "
                                       "g.dataset.label, g.classList.contains('retrans')])")
    assert [tuple(a[:3]) for a in arrows] == sent
    assert [a[3] for a in arrows] == [False, True] + [False] * (len(sent) - 2)
    ends = page.eval_on_selector_all("#ladder-svg .endpoint", "gs => gs.map(g => g.dataset.endpoint)")
    assert ends == [sent[0][0], sent[0][1]]
    page.click("#ladder-svg .arrow[data-index='3']")
    assert '"status_code": 180' in page.text_content("#fields")
    shot = f"/tmp/otus-console-{os.getpid()}.png"
    page.screenshot(path=shot, full_page=True)
    assert os.path.getsize(shot) > 10_000

    # hostile text: rendered as text, never as markup, never run
    cell = page.eval_on_selector(f"#calls tbody tr:nth-child({rows(page).index(HOSTILE_CID) + 1})",
                                 "tr => [tr.children[0].textContent, tr.children[2].textContent]")
    api = {c["call_id"]: c for c in daemon.get("/api/v1/calls")}[HOSTILE_CID]
    assert cell == [HOSTILE_CID, api["from_user"]] and api["from_user"].startswith("javascript")
    page.eval_on_selector_all("#calls tbody tr", "trs => trs.forEach(t => { if (t.dataset.callId.startsWith('<script')) "
                              "t.click(); })")
    page.wait_for_function("document.querySelectorAll('#ladder-svg .arrow').length == 7")
    page.click("#ladder-svg .arrow[data-index='0']")
    fields = page.text_content("#fields")
    assert "<img src=x onerror=\\\"window.pwned=2\\\">" in fields and "\\u0001\\u0007\\u001b[31m" in fields
    assert page.text_content("#ladder-title") == HOSTILE_CID
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.evaluate("document.querySelectorAll('main script, main img, #ladder-svg foreignObject').length") == 0
    page.screenshot(path=f"/tmp/otus-console-hostile-{os.getpid()}.png", full_page=True)

    # the search box narrows the live list; the task row has its counters chart
    page.fill("#search", ok_cid[5:20].upper())
    wait_for(lambda: rows(page) == [ok_cid], 5, what="the search to narrow the list")
    page.fill("#search", "")
    page.wait_for_selector(f"#tasks tr[data-task-id='{tid}'] svg.chart polyline", timeout=15000)
    # the row's counter follows the task's periodic stats, so it may lag the call list by one period
    def sip_count() -> int:
        return int(page.eval_on_selector(f"#tasks tr[data-task-id='{tid}']", "tr => tr.children[4].textContent"))
    wait_for(lambda: sip_count() >= len(sent) + 7, 15, what="the task row's SIP counter to count both calls")

    # delete through the page
    page.click(f"#tasks tr[data-task-id='{tid}'] button")
    page.wait_for_function(f"document.getElementById('task-msg').textContent == 'deleted {tid}'")
    assert daemon.get("/api/v1/tasks") == []
    assert errors == []
    ctx.close()
