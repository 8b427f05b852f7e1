// The dashboard: the annotated picture and its faces table (one frame, from /v1/frame.jpg and
// its X-Frame-Message header), a probability timeline per face with axes, the events.
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
  let gone = null;  // the server's "status" message once its live source failed or ended

  const video = document.getElementById("video");
  const PICTURE_MS = 1000 / 15;
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
  }

  const pct = (p) => `${(100 * p).toFixed(0)}%`;

  // the faces of the frame the picture shows: an undecided face says so; a label is shown
  // with its own probability (a held label may trail a class that leads but has not won)
  function table(msg) {
    const rows = msg.faces.map((f) => {
      const probs = classes.map((c) => `${c} ${pct(f["p_" + c])}`).join(", ");
      const decided = f.decided !== false && f.label != null;
      const label = decided ? `${f.label} ${pct(f["p_" + f.label])}` : "undecided";
      const style = decided ? `color:${color(f.label)}` : "color:#999;font-style:italic";
      // the seven-expression view, where the model has it (same filter, same decided state)
      const expression = f.expression == null ? "—"
        : decided ? `${f.expression} ${pct(f["expr_" + f.expression])}` : "undecided";
      return `<tr><td>#${f.face_id}</td><td style="${style}">${label}</td>` +
        `<td>${expression}</td><td>${probs}</td></tr>`;
    });
    document.querySelector("#faces tbody").innerHTML = rows.join("") ||
      "<tr><td colspan=4>no face</td></tr>";
  }

  async function picture() {
    try {
      const response = await fetch("/v1/frame.jpg" + query, { cache: "no-store" });
      const header = response.headers.get("X-Frame-Message");
      if (response.status === 200 && header) {
        const msg = JSON.parse(header);
        const url = URL.createObjectURL(await response.blob());
        video.onload = () => { URL.revokeObjectURL(url); table(msg); };
        video.src = url;
      }
    } catch (e) { /* the server went away: the stream's status line says so */ }
    setTimeout(picture, PICTURE_MS);
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

  // the plot area inside the canvas: room for the probability axis (left), time axis (below)
  const M = { left: 56, right: 8, top: 8, bottom: 30 };

  function axes(w, h) {
    const pw = w - M.left - M.right, ph = h - M.top - M.bottom;
    ctx.strokeStyle = "#333"; ctx.lineWidth = 1; ctx.fillStyle = "#9aa";
    ctx.font = "12px system-ui, sans-serif";
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (let s = 0; s <= WINDOW_S; s += 5) {
      const x = M.left + pw - (s / WINDOW_S) * pw;
      ctx.beginPath(); ctx.moveTo(x, M.top); ctx.lineTo(x, M.top + ph); ctx.stroke();
      ctx.fillText(s ? `−${s} s` : "now", x, M.top + ph + 4);
    }
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (const p of [0, 0.25, 0.5, 0.75, 1]) {
      const y = M.top + ph - p * ph;
      ctx.beginPath(); ctx.moveTo(M.left, y); ctx.lineTo(M.left + pw, y); ctx.stroke();
      ctx.fillText(p.toFixed(p % 0.5 ? 2 : 1), M.left - 6, y);
    }
    ctx.save(); ctx.translate(12, M.top + ph / 2); ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center"; ctx.fillText("probability", 0, 0); ctx.restore();
    return { pw, ph };
  }

  function draw() {
    const w = canvas.width, h = canvas.height, now = performance.now() / 1000;
    ctx.clearRect(0, 0, w, h);
    const { pw, ph } = axes(w, h);
    let k = 0;
    for (const [id, points] of history) {
      while (points.length && now - points[0].t > WINDOW_S) points.shift();
      if (!points.length) { history.delete(id); continue; }
      ctx.setLineDash(DASHES[k++ % DASHES.length]);
      for (const c of classes) {
        ctx.strokeStyle = color(c); ctx.lineWidth = 3; ctx.beginPath();
        points.forEach((pt, i) => {
          const x = M.left + pw - ((now - pt.t) / WINDOW_S) * pw, y = M.top + ph - pt.p[c] * ph;
          if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
        });
        ctx.stroke();
      }
    }
    ctx.setLineDash([]);
    if (gone) {
      status.textContent = `${gone.source}: source ${gone.state}` + (gone.error ? ` (${gone.error})` : "");
    } else if (last) {
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
      else if (msg.type === "status") gone = msg;
    };
    ws.onopen = () => { delay = 500; status.textContent = "connected"; };
    ws.onclose = () => {
      status.textContent = "disconnected; retrying…";
      setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
    };
  }

  connect(500);
  draw();
  picture();
})();
