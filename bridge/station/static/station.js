// ecg-edge central station page: a thin view. The server pushes JSON events over a
// WebSocket (snapshot, then batches of device / alarm / live events); this draws them.
"use strict";
(function () {
  const PX_PER_MM = 96 / 25.4;           // CSS pixels per millimetre
  const MM_PER_S = 25, MM_PER_MV = 10;   // ECG paper speed and gain
  const DELAY_MS = 700;                  // live samples come in bursts: play them a little late
  const KEEP_S = 8;
  const RANK = { high: 0, medium: 1, low: 2 };
  const beds = new Map();                // device_id -> {el, canvas, buf, clock, info}
  const alarms = new Map();              // alert_id -> alarm
  window.ecgSeen = {};                   // alert_id -> Date.now() when first shown (benchmarks)
  window.ecgPerf = { frames: [], events: 0 };

  const $ = (sel, root) => (root || document).querySelector(sel);

  function bed(id) {
    let b = beds.get(id);
    if (b) return b;
    const el = $("#bed-tpl").content.firstElementChild.cloneNode(true);
    el.dataset.device = id;
    $(".name", el).textContent = id;
    const sorted = [...beds.keys(), id].sort();
    const next = beds.get(sorted[sorted.indexOf(id) + 1]);
    $("#beds").insertBefore(el, next ? next.el : null);
    b = { el, canvas: $("canvas", el), buf: [], clock: null, fs: 125, end: null };
    beds.set(id, b);
    return b;
  }

  function showDevice(d) {
    const b = bed(d.device_id);
    const st = $(".status", b.el);
    st.textContent = d.status;
    st.className = "status " + d.status;
    b.el.classList.toggle("offline", d.status === "offline");
    $(".hr", b.el).textContent = d.heart_rate == null ? "--" : Math.round(d.heart_rate);
    $(".findings", b.el).textContent = d.findings.length ? d.findings.join(", ") : "";
  }

  function live(e) {
    const b = bed(e.d);
    b.fs = e.fs;
    const now = performance.now();
    if (b.end == null || e.s < b.end - e.fs || e.s > b.end + 5 * e.fs) {
      b.buf = [];                         // a new stream segment: start the trace again
      b.clock = { s0: e.s, t0: now + DELAY_MS };
    }
    for (let i = 0; i < e.v.length; i++) b.buf.push([e.s + i, e.v[i]]);
    b.end = e.s + e.v.length;
    const cut = b.end - KEEP_S * e.fs;
    let k = 0;
    while (k < b.buf.length && b.buf[k][0] < cut) k++;
    if (k) b.buf.splice(0, k);
    const head = playhead(b, now);
    if (head > b.end + e.fs || head < b.end - 2 * e.fs) {
      b.clock = { s0: b.end, t0: now + DELAY_MS };   // drifted: resynchronise
    }
    if (e.hr !== undefined) $(".hr", b.el).textContent = e.hr == null ? "--" : Math.round(e.hr);
  }

  function playhead(b, now) {
    return b.clock ? b.clock.s0 + ((now - b.clock.t0) / 1000) * b.fs : 0;
  }

  function draw(now) {
    const pxPerS = MM_PER_S * PX_PER_MM, pxPerMv = MM_PER_MV * PX_PER_MM;
    for (const b of beds.values()) {
      const c = b.canvas, ctx = c.getContext("2d");
      const w = c.clientWidth, h = c.clientHeight, r = window.devicePixelRatio || 1;
      if (c.width !== Math.round(w * r)) { c.width = Math.round(w * r); c.height = Math.round(h * r); }
      ctx.setTransform(r, 0, 0, r, 0, 0);
      ctx.clearRect(0, 0, w, h);
      if (!b.buf.length || !b.clock) continue;
      const head = Math.min(playhead(b, now), b.end);
      ctx.strokeStyle = "#3ddc84";
      ctx.lineWidth = 1.4;
      ctx.beginPath();
      let started = false, prev = null;
      for (const [s, v] of b.buf) {
        if (s > head) break;
        const x = w - ((head - s) / b.fs) * pxPerS;
        if (x < 0) { prev = s; continue; }
        const y = h / 2 - (v / 1000) * pxPerMv;
        if (!started || (prev != null && s - prev > 1)) ctx.moveTo(x, y); else ctx.lineTo(x, y);
        started = true;
        prev = s;
      }
      ctx.stroke();
    }
  }

  let last = null;
  function frame(now) {
    if (last != null) {
      const f = window.ecgPerf.frames;
      f.push(now - last);
      if (f.length > 2000) f.shift();
    }
    last = now;
    draw(now);
    requestAnimationFrame(frame);
  }

  function order(a, b) {
    return (a.cleared - b.cleared) || ((RANK[a.priority] ?? 3) - (RANK[b.priority] ?? 3)) || (b.seq - a.seq);
  }

  function alarmText(a) {
    if (a.kind === "diagnosis") return (a.findings || []).join(", ") || a.reason;
    return a.condition.replace(/_/g, " ") + (a.reason ? ": " + a.reason : "");
  }

  const items = new Map();                // alert_id -> <li> (kept: a list item is rebuilt only
                                         // when its alarm changed, and only moved otherwise)
  function renderAlarms() {
    const list = $("#alarms");
    const sorted = [...alarms.values()].sort(order);
    const keep = new Set(sorted.map((a) => a.alert_id));
    for (const [id, li] of items) if (!keep.has(id)) { li.remove(); items.delete(id); }
    sorted.forEach((a, i) => {
      let li = items.get(a.alert_id);
      const sig = JSON.stringify(a);
      if (!li) {
        li = document.createElement("li");
        li.dataset.alertId = a.alert_id;
        li.dataset.device = a.device_id;
        li.addEventListener("click", () => openStrip(alarms.get(li.dataset.alertId)));
        items.set(a.alert_id, li);
      }
      if (li.dataset.sig !== sig) { fill(li, a); li.dataset.sig = sig; }
      if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
      if (!(a.alert_id in window.ecgSeen)) window.ecgSeen[a.alert_id] = Date.now();
    });
  }

  function fill(li, a) {
    li.className = `alarm ${a.priority} ${a.cleared ? "cleared" : "active"}${a.acked ? " acked" : ""}`;
    li.textContent = "";
    const head = document.createElement("div");
    const prio = document.createElement("span");
    prio.className = "prio";
    prio.textContent = `${a.priority} `;
    head.append(prio, `${a.device_id} ${a.event === "cleared" ? "(cleared) " : ""}${alarmText(a)}`);
    const when = document.createElement("div");
    when.className = "when";
    when.textContent = `${a.emitted_at.replace("T", " ").replace("Z", " UTC")}` +
      (a.heart_rate != null ? ` · HR ${Math.round(a.heart_rate)}` : "") + (a.strip ? " · strip" : "");
    li.append(head, when);
    if (a.acked) {
      const info = document.createElement("div");
      info.className = "ackinfo";
      info.textContent = `acknowledged${a.acked.by ? " by " + a.acked.by : ""} at ${a.acked.station}`;
      li.append(info);
    } else if (a.event === "onset") {
      const btn = document.createElement("button");
      btn.className = "ack";
      btn.textContent = "Acknowledge";
      btn.addEventListener("click", (ev) => { ev.stopPropagation(); acknowledge(a, btn); });
      head.prepend(btn);
    }
  }

  async function acknowledge(a, btn) {
    btn.disabled = true;
    btn.textContent = "sending";
    const r = await fetch("/api/ack", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ alert_id: a.alert_id, device_id: a.device_id, by: $("#who").value }),
    });
    if (!r.ok) { btn.disabled = false; btn.textContent = "Acknowledge (failed)"; }
  }

  function openStrip(a) {
    $("#strip-title").textContent = `${a.device_id}: ${alarmText(a)} (${a.emitted_at})`;
    const img = $("#strip-img");
    img.removeAttribute("src");
    img.alt = a.strip ? "loading the strip" : "this alert has no strip";
    img.src = `/strip/${encodeURIComponent(a.alert_id)}.png`;
    $("#strip-view").hidden = false;
  }
  $("#strip-close").addEventListener("click", () => { $("#strip-view").hidden = true; });
  $("#strip-view").addEventListener("click", (e) => { if (e.target.id === "strip-view") e.target.hidden = true; });

  function handle(e) {
    window.ecgPerf.events++;
    if (e.t === "live") live(e);
    else if (e.t === "device") showDevice(e.device);
    else if (e.t === "alarm") { alarms.set(e.alarm.alert_id, e.alarm); return true; }
    return false;
  }

  function connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    const conn = $("#conn");
    ws.onopen = () => { conn.textContent = "live"; conn.className = "conn up"; };
    ws.onclose = () => { conn.textContent = "reconnecting"; conn.className = "conn down"; setTimeout(connect, 1000); };
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      let changed = false;
      if (msg.t === "snapshot") {
        msg.devices.forEach(showDevice);
        alarms.clear();
        msg.alarms.forEach((a) => alarms.set(a.alert_id, a));
        changed = true;
      } else if (msg.t === "batch") {
        for (const e of msg.e) changed = handle(e) || changed;
      }
      if (changed) renderAlarms();
    };
  }
  connect();
  requestAnimationFrame(frame);
})();
