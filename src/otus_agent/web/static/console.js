// The Otus console: live calls, ladder diagrams, tasks. No framework, no CDN.
// Every text that comes from the network goes into the page as textContent (never innerHTML).
"use strict";
(function () {
  const API = "/api/v1";
  const SVGNS = "http://www.w3.org/2000/svg";
  const MAX_ROWS = 500;          // rows drawn in the call list (the store keeps more)
  const HISTORY = 150;           // task samples kept for the chart (2 s apart: 5 minutes)
  const calls = new Map();       // call_id -> summary
  const history = new Map();     // task id -> [{t, packets, sip, drops}]
  let selected = null, dirty = false;
  const stats = { callEvents: 0, renders: 0, streamOpen: false };
  window.otusConsole = stats;    // read by the tests (update rate)

  const $ = (id) => document.getElementById(id);
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function token() { return $("token").value.trim(); }
  async function api(path, opts) {
    const r = await fetch(API + path, opts || {});
    let body = null;
    try { body = await r.json(); } catch (e) { body = { error: "HTTP " + r.status }; }
    return { ok: r.ok, status: r.status, body: body };
  }

  // ------------------------------------------------------------------ calls
  function fmtDuration(s) { return s == null ? "" : (s < 60 ? s.toFixed(1) + " s" : Math.round(s / 60) + " min"); }
  function matches(c, q) {
    if (!q) return true;
    return [c.call_id, c.from_user, c.to_user, c.state, String(c.final_status || "")]
      .some((v) => v != null && String(v).toLowerCase().includes(q));
  }
  function renderCalls() {
    dirty = false;
    stats.renders++;
    const q = $("search").value.trim().toLowerCase();
    const rows = [...calls.values()].filter((c) => matches(c, q)).sort((a, b) => b.start - a.start).slice(0, MAX_ROWS);
    const body = el("tbody");
    for (const c of rows) {
      const tr = el("tr");
      tr.dataset.callId = c.call_id;
      if (c.call_id === selected) tr.className = "sel";
      for (const v of [c.call_id, c.state, c.from_user, c.to_user, fmtDuration(c.duration_s), c.final_status,
                       (c.agents || []).join(", ")]) {
        const td = el("td", v == null ? "" : v);
        td.title = td.textContent;
        tr.appendChild(td);
      }
      tr.addEventListener("click", () => openLadder(c.call_id));
      body.appendChild(tr);
    }
    $("calls").replaceChild(body, $("calls").tBodies[0]);
    $("call-count").textContent = "(" + rows.length + " of " + calls.size + ")";
  }
  function schedule() { if (!dirty) { dirty = true; setTimeout(renderCalls, 250); } }

  function stream() {
    const es = new EventSource(API + "/stream?kinds=call");
    es.onopen = () => { stats.streamOpen = true; $("live").textContent = "stream: live"; $("live").className = "on"; };
    es.onerror = () => { stats.streamOpen = false; $("live").textContent = "stream: reconnecting"; $("live").className = "off"; };
    es.addEventListener("call", (ev) => {
      stats.callEvents++;
      let c;
      try { c = JSON.parse(ev.data); } catch (e) { return; }
      calls.set(c.call_id, c);
      if (calls.size > 5000) calls.delete(calls.keys().next().value);  // the page stays bounded too
      schedule();
      if (c.call_id === selected) refreshLadderSoon();
    });
  }

  // ------------------------------------------------------------------ ladder
  let ladderTimer = null;
  function refreshLadderSoon() {
    if (ladderTimer === null) ladderTimer = setTimeout(() => { ladderTimer = null; openLadder(selected, true); }, 500);
  }
  async function openLadder(callId, keepField) {
    selected = callId;
    schedule();
    const r = await api("/messages?call_id=" + encodeURIComponent(callId));
    const box = $("ladder");
    box.replaceChildren();
    $("ladder-title").textContent = callId;
    if (!keepField) $("fields").textContent = "";
    if (!r.ok) { box.appendChild(el("p", r.body.error, "err")); return; }
    const msgs = r.body.messages;
    const ends = [];
    const multi = new Set(msgs.map((m) => m.agent)).size > 1;
    for (const m of msgs) for (const e of [m.src, m.dst]) if (!ends.includes(e)) ends.push(e);
    // in a cluster, an endpoint is named by its pod (or Service) when the records say (src_k8s / dst_k8s)
    const names = {};
    const who = (k) => k && (k.pod ? k.pod + (k.namespace ? "." + k.namespace : "")
                                   : k.service ? "svc/" + k.service + (k.namespace ? "." + k.namespace : "") : null);
    for (const m of msgs) {
      const rec = m.record || {};
      if (!names[m.src] && who(rec.src_k8s)) names[m.src] = who(rec.src_k8s);
      if (!names[m.dst] && who(rec.dst_k8s)) names[m.dst] = who(rec.dst_k8s);
    }
    const colW = 200, top = 40, rowH = 30, left = 90;
    const width = left * 2 + colW * Math.max(1, ends.length - 1), height = top + rowH * (msgs.length + 1);
    const s = svg("svg", { width: width, height: height, viewBox: "0 0 " + width + " " + height, id: "ladder-svg" });
    const defs = svg("defs", {});
    const mk = svg("marker", { id: "ah", markerWidth: 10, markerHeight: 8, refX: 9, refY: 4, orient: "auto",
                               markerUnits: "userSpaceOnUse" });
    mk.appendChild(svg("path", { d: "M0,0 L10,4 L0,8 z", fill: "currentColor" }));
    defs.appendChild(mk);
    s.appendChild(defs);
    const x = (e) => left + colW * ends.indexOf(e);
    ends.forEach((e) => {
      const g = svg("g", { class: "endpoint", "data-endpoint": e });
      const g2 = svg("text", { x: x(e), y: 16, "text-anchor": "middle", "font-size": 12 }, names[e] || e);
      if (names[e]) { g.setAttribute("data-pod", names[e]); g2.appendChild(svg("title", {}, e)); }
      g.appendChild(g2);
      g.appendChild(svg("line", { x1: x(e), y1: 24, x2: x(e), y2: height - 5, stroke: "#999" }));
      s.appendChild(g);
    });
    msgs.forEach((m, i) => {
      const y = top + rowH * i + 16;
      const g = svg("g", { class: "arrow" + (m.retransmission ? " retrans" : ""), "data-index": i,
                           "data-src": m.src, "data-dst": m.dst, "data-label": m.label,
                           "data-agent": m.agent || "" });
      const x1 = x(m.src), x2 = x(m.dst);
      const self = x1 === x2;
      const lo = Math.min(x1, self ? x1 + 40 : x2);   // the click target: the arrow's row, label included
      g.appendChild(svg("rect", { x: lo, y: y - 16, width: Math.abs((self ? x1 + 40 : x2) - x1), height: 22,
                                  fill: "transparent" }));
      g.appendChild(svg("line", { x1: x1, y1: y, x2: self ? x1 + 40 : x2, y2: y, stroke: "#333",
                                  "stroke-width": 1.5, "marker-end": "url(#ah)", color: "#333" }));
      // several capture points (cluster console): each hop says which agent saw it
      const label = (m.retransmission ? "\u21bb " : "") + m.label + (multi && m.agent ? " [" + m.agent + "]" : "");
      g.appendChild(svg("text", { x: (x1 + (self ? x1 + 40 : x2)) / 2, y: y - 4, "text-anchor": "middle",
                                  "font-size": 11 }, label));
      const t = new Date((m.ts || 0) / 1e6);
      g.appendChild(svg("text", { x: 4, y: y + 4, "font-size": 9, fill: "#888" },
                        t.toISOString().substring(11, 23)));
      g.appendChild(svg("title", {}, label + (m.retransmission ? " (retransmission)" : "")));
      g.addEventListener("click", () => {
        for (const o of s.querySelectorAll(".arrow.sel")) o.classList.remove("sel");
        g.classList.add("sel");
        $("fields").textContent = JSON.stringify(m.record, null, 2);
      });
      s.appendChild(g);
    });
    box.appendChild(s);
    renderMedia(r.body.call.media || []);
  }

  // the call's media streams (type "media" records: the latest of each stream), as text cells
  const MEDIA_COLS = [["stream", (m) => m.src_ip + ":" + m.src_port + " \u2192 " + m.dst_ip + ":" + m.dst_port],
    ["codec", (m) => m.codec], ["packets", (m) => m.packets], ["lost", (m) => m.lost],
    ["jitter ms (mean/max)", (m) => m.mean_jitter_ms == null ? "" : m.mean_jitter_ms + " / " + m.max_jitter_ms],
    ["MOS", (m) => m.mos], ["R", (m) => m.r_factor], ["", (m) => m.final ? (m.end_reason || "final") : "running"]];
  function renderMedia(media) {
    const box = $("media");
    box.replaceChildren();
    if (!media.length) return;
    const t = el("table");
    const head = el("tr");
    for (const [name] of MEDIA_COLS) head.appendChild(el("th", name));
    t.appendChild(head);
    for (const m of media) {
      const tr = el("tr");
      for (const [, get] of MEDIA_COLS) tr.appendChild(el("td", get(m)));
      t.appendChild(tr);
    }
    box.appendChild(t);
  }

  // ------------------------------------------------------------------ tasks
  function chart(samples) {
    const w = 160, h = 28;
    const s = svg("svg", { width: w, height: h, class: "chart" });
    if (samples.length < 2) return s;
    const rates = [];
    for (let i = 1; i < samples.length; i++) {
      const dt = Math.max(0.001, samples[i].t - samples[i - 1].t);
      rates.push(Math.max(0, (samples[i].sip - samples[i - 1].sip) / dt));
    }
    const max = Math.max(1, ...rates);
    const pts = rates.map((r, i) => (i * w / Math.max(1, HISTORY - 1)).toFixed(1) + "," + (h - 2 - r / max * (h - 4)).toFixed(1));
    s.appendChild(svg("polyline", { points: pts.join(" "), fill: "none", stroke: "#06c" }));
    s.appendChild(svg("title", {}, "SIP messages/s, peak " + max.toFixed(1)));
    return s;
  }
  async function refreshTasks() {
    const r = await api("/tasks");
    if (!r.ok) return;
    const now = Date.now() / 1000;
    const body = el("tbody");
    for (const t of r.body) {
      const h = history.get(t.id) || [];
      h.push({ t: now, packets: t.packets, sip: t.sip_messages, drops: t.kernel_drops });
      while (h.length > HISTORY) h.shift();
      history.set(t.id, h);
      const tr = el("tr");
      tr.dataset.taskId = t.id;
      for (const v of [t.id, t.status + (t.reason ? ": " + t.reason : ""), (t.interfaces || []).join(","), t.packets,
                       t.sip_messages, t.kernel_drops]) tr.appendChild(el("td", v));
      const c = el("td"); c.appendChild(chart(h)); tr.appendChild(c);
      const d = el("td"); const b = el("button", "delete"); b.type = "button";
      b.addEventListener("click", () => deleteTask(t.id));
      d.appendChild(b); tr.appendChild(d);
      body.appendChild(tr);
    }
    for (const k of [...history.keys()]) if (!r.body.some((t) => t.id === k)) history.delete(k);
    $("tasks").replaceChild(body, $("tasks").tBodies[0]);
  }
  function showErrors(body) {
    const ul = $("task-errors");
    ul.replaceChildren();
    const fields = body.fields || [{ field: "", message: body.error }];
    for (const f of fields) ul.appendChild(el("li", (f.field ? f.field + ": " : "") + f.message));
  }
  let validateTimer = null;
  function validateSoon() {
    clearTimeout(validateTimer);
    validateTimer = setTimeout(validate, 400);
  }
  async function validate() {
    const text = $("task-yaml").value;
    if (!text.trim()) { $("task-errors").replaceChildren(); return false; }
    const r = await api("/tasks/validate", { method: "POST", headers: { "Content-Type": "application/yaml" }, body: text });
    if (r.ok) $("task-errors").replaceChildren(); else showErrors(r.body);
    return r.ok;
  }
  async function createTask() {
    $("task-msg").textContent = "";
    if (!(await validate())) return;
    const r = await api("/tasks", { method: "POST", body: $("task-yaml").value,
      headers: { "Content-Type": "application/yaml", "Authorization": "Bearer " + token() } });
    if (r.ok) { $("task-msg").textContent = "created " + r.body.id; $("task-msg").className = ""; }
    else { showErrors(r.body); $("task-msg").textContent = r.body.error; $("task-msg").className = "err"; }
    refreshTasks();
  }
  async function deleteTask(id) {
    const r = await api("/tasks/" + encodeURIComponent(id), { method: "DELETE",
      headers: { "Authorization": "Bearer " + token() } });
    $("task-msg").textContent = r.ok ? "deleted " + id : r.body.error;
    $("task-msg").className = r.ok ? "" : "err";
    refreshTasks();
  }

  // ------------------------------------------------------------------ start
  async function start() {
    $("token").value = sessionStorage.getItem("otus-token") || "";
    $("token").addEventListener("change", () => sessionStorage.setItem("otus-token", token()));
    $("search").addEventListener("input", schedule);
    $("task-yaml").addEventListener("input", validateSoon);
    $("task-create").addEventListener("click", createTask);
    const st = await api("/status");
    if (st.ok) $("agent").textContent = st.body.host ? st.body.host + " (otus " + st.body.version + ")" : "cluster console";
    const r = await api("/calls?limit=1000");
    if (r.ok) for (const c of r.body) calls.set(c.call_id, c);
    renderCalls();
    stream();
    refreshTasks();
    setInterval(refreshTasks, 2000);
  }
  document.addEventListener("DOMContentLoaded", start);
})();
