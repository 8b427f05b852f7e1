// The dashboard: the annotated picture (MJPEG), a probability timeline per face, the events.
"use strict";
(() => {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const query = token ? "?token=" + encodeURIComponent(token) : "";
  const WINDOW_S = 20;
  const COLORS = { happy: "rgb(60,190,60)", sad: "rgb(40,120,200)", unknown: "rgb(150,150,150)" };
  const PALETTE = ["rgb(230,160,40)", "rgb(180,60,180)", "rgb(200,200,60)", "rgb(220,90,90)"];
  const DASHES = [[], [8, 4], [2, 4], [12, 4, 2, 4]];
  const history = new Map(); // face id -> [{t, p: {class: prob}}]
  let classes = [];
  let last = null;

  const video = document.getElementById("video");
  video.src = "/v1/video.mjpg" + query;
  const status = document.getElementById("status");
  const canvas = document.getElementById("timeline");
  const ctx = canvas.getContext("2d");

  const color = (name) => COLORS[name] || PALETTE[classes.indexOf(name) % PALETTE.length];

  function onFrame(msg) {
    last = msg;
    const now = performance.now() / 1000;
    for (const face of msg.faces) {
      const p = {};
      for (const [k, v] of Object.entries(face)) if (k.startsWith("p_")) p[k.slice(2)] = v;
      if (!classes.length) { classes = Object.keys(p); legend(); }
      if (!history.has(face.face_id)) history.set(face.face_id, []);
      history.get(face.face_id).push({ t: now, p });
    }
    const rows = msg.faces.map((f) => {
      const probs = classes.map((c) => `${c} ${(100 * f["p_" + c]).toFixed(0)}%`).join(", ");
      const label = f.decided === false ? "(deciding)" : f.label;
      return `<tr><td>#${f.face_id}</td><td style="color:${color(f.label)}">${label}</td><td>${probs}</td></tr>`;
    });
    document.querySelector("#faces tbody").innerHTML = rows.join("") ||
      "<tr><td colspan=3>no face</td></tr>";
  }

  function onEvent(msg) {
    const li = document.createElement("li");
    li.textContent = `${new Date(1000 * (msg.capture_time || Date.now() / 1000)).toLocaleTimeString()}` +
      `  face #${msg.face_id}: ${msg.from} → ${msg.to}`;
    const list = document.getElementById("events");
    list.prepend(li);
    while (list.children.length > 50) list.lastChild.remove();
  }

  function legend() {
    document.getElementById("legend").innerHTML = classes
      .map((c) => `<span style="color:${color(c)}">━ ${c}</span>`).join("") +
      "<span>(one dash style per face)</span>";
  }

  function draw() {
    const w = canvas.width, h = canvas.height, now = performance.now() / 1000;
    ctx.clearRect(0, 0, w, h);
    ctx.strokeStyle = "#333"; ctx.lineWidth = 1;
    for (let s = 0; s <= WINDOW_S; s += 5) {
      const x = w - (s / WINDOW_S) * w;
      ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, h); ctx.stroke();
    }
    let k = 0;
    for (const [id, points] of history) {
      while (points.length && now - points[0].t > WINDOW_S) points.shift();
      if (!points.length) { history.delete(id); continue; }
      ctx.setLineDash(DASHES[k++ % DASHES.length]);
      for (const c of classes) {
        ctx.strokeStyle = color(c); ctx.lineWidth = 3; ctx.beginPath();
        points.forEach((pt, i) => {
          const x = w - ((now - pt.t) / WINDOW_S) * w, y = h - 4 - pt.p[c] * (h - 8);
          if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
        });
        ctx.stroke();
      }
    }
    ctx.setLineDash([]);
    if (last) {
      const lat = last.latency_ms != null ? `${last.latency_ms.toFixed(0)} ms latency, ` : "";
      status.textContent = `${last.source}: frame ${last.frame}, ${lat}${last.dropped_frames} dropped`;
    }
    setTimeout(() => requestAnimationFrame(draw), 100);
  }

  function connect(delay) {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + "/v1/stream" + query);
    ws.onmessage = (e) => {
      const msg = JSON.parse(e.data);
      if (msg.type === "frame") onFrame(msg); else if (msg.type === "event") onEvent(msg);
    };
    ws.onopen = () => { delay = 500; status.textContent = "connected"; };
    ws.onclose = () => {
      status.textContent = "disconnected; retrying…";
      setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
    };
  }

  connect(500);
  draw();
})();
