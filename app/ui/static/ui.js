// segaudit QA dashboard: live audit status, overlays (toggle, fade, zoom, pan, slices,
// windowing) and keyboard review. No framework; the pages work without it for reading.
"use strict";

async function send(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
    credentials: "same-origin",
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || `HTTP ${response.status}`);
  return data;
}

function liveStatus() {
  const box = document.getElementById("status");
  if (!box) return;
  const id = box.dataset.audit;
  const cancel = document.getElementById("cancel");
  const message = document.getElementById("st-message");
  if (cancel) cancel.addEventListener("click", async () => {
    if (!window.confirm(`Cancel audit ${id}?`)) return;
    try { await send(`/ui/audits/${id}/cancel`); window.location.reload(); }
    catch (e) { message.textContent = e.message; }
  });
  if (["succeeded", "failed", "cancelled"].includes(box.dataset.status)) return;
  const set = (name, value) => { const el = document.getElementById(name); if (el) el.textContent = value; };
  const timer = window.setInterval(async () => {
    const response = await fetch(`/ui/audits/${id}/status`, { credentials: "same-origin" });
    if (!response.ok) return;
    const a = await response.json();
    const p = a.progress;
    set("st-status", a.status);
    set("st-phase", p.phase || "–");
    set("st-epoch", p.epoch || 0);
    set("st-epochs", p.epochs || "?");
    set("st-percent", Math.round(p.percent || 0));
    set("st-eta", p.eta_seconds == null ? "–" : `${Math.round(p.eta_seconds)} s`);
    set("st-flagged", p.flagged == null ? "–" : p.flagged);
    const bar = document.getElementById("st-bar");
    if (bar) bar.value = p.percent || 0;
    if (["succeeded", "failed", "cancelled"].includes(a.status)) {
      window.clearInterval(timer);
      window.location.reload();
    }
  }, 1500);
}

function resolveForm() {
  const form = document.getElementById("resolve");
  if (!form) return;
  const out = document.getElementById("resolve-result");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    out.textContent = "Resolving…";
    try {
      const set = await send(`/ui/audits/${form.dataset.audit}/resolve`, { policy: form.policy.value });
      out.textContent = `Made annotation set ${set.name}. `;
      const link = document.createElement("a");
      link.href = set.download;
      link.id = "resolve-download";
      link.textContent = "Download its masks (zip)";
      out.appendChild(link);
    } catch (e) { out.textContent = e.message; }
  });
}

function viewer() {
  const view = document.getElementById("viewer");
  if (!view) return;
  const state = { z: Number(view.dataset.z), zoom: 1, x: 0, y: 0, window: "auto" };
  const stages = () => view.querySelectorAll(".stage");
  const place = () => stages().forEach((s) => {
    s.style.transform = `translate(${state.x}px, ${state.y}px) scale(${state.zoom})`;
  });
  const load = () => {
    view.querySelectorAll("img.layer").forEach((img) => {
      const layer = img.dataset.layer;
      const win = layer === "image" ? `&window=${state.window}` : "";
      img.src = `${view.dataset.base}${layer}.png?z=${state.z}${win}`;
      if (img.alt) img.alt = img.alt.replace(/slice \d+/, `slice ${state.z}`);
    });
    view.dataset.z = state.z;
    const out = document.getElementById("slice-value");
    if (out) out.textContent = state.z;
    const slider = document.getElementById("slice");
    if (slider) slider.value = state.z;
    document.querySelectorAll("#slices tr").forEach((row) =>
      row.classList.toggle("current", Number(row.dataset.z) === state.z));
  };
  const zoom = (factor) => { state.zoom = Math.min(16, Math.max(1, state.zoom * factor)); place(); };
  document.querySelectorAll("input.toggle").forEach((box) => box.addEventListener("change", () => {
    view.querySelectorAll(`img[data-layer="${box.dataset.layer}"]`).forEach((img) => {
      img.style.visibility = box.checked ? "visible" : "hidden";
    });
  }));
  document.querySelectorAll("input.opacity").forEach((range) => range.addEventListener("input", () => {
    view.querySelectorAll(`img[data-layer="${range.dataset.layer}"]`).forEach((img) => {
      img.style.opacity = Number(range.value) / 100;
    });
  }));
  const mode = document.getElementById("mode");
  mode.addEventListener("change", () => { view.className = `viewer mode-${mode.value}`; });
  document.getElementById("zoom-in").addEventListener("click", () => zoom(1.5));
  document.getElementById("zoom-out").addEventListener("click", () => zoom(1 / 1.5));
  document.getElementById("zoom-reset").addEventListener("click", () => { state.zoom = 1; state.x = 0; state.y = 0; place(); });
  const win = document.getElementById("window");
  win.addEventListener("change", () => { state.window = win.value; load(); });
  view.addEventListener("wheel", (event) => { event.preventDefault(); zoom(event.deltaY < 0 ? 1.2 : 1 / 1.2); }, { passive: false });
  let drag = null;
  view.addEventListener("pointerdown", (e) => { drag = { x: e.clientX - state.x, y: e.clientY - state.y }; view.setPointerCapture(e.pointerId); });
  view.addEventListener("pointermove", (e) => { if (drag) { state.x = e.clientX - drag.x; state.y = e.clientY - drag.y; place(); } });
  view.addEventListener("pointerup", () => { drag = null; });
  view.addEventListener("keydown", (e) => {
    const step = 20;
    const moves = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
    if (moves[e.key]) { e.preventDefault(); state.x += moves[e.key][0]; state.y += moves[e.key][1]; place(); }
  });
  const depth = Number(view.dataset.depth);
  const go = (z) => { state.z = Math.min(depth - 1, Math.max(0, z)); load(); };
  const slider = document.getElementById("slice");
  if (slider) slider.addEventListener("input", () => go(Number(slider.value)));
  const worst = document.getElementById("worst");
  if (worst) worst.addEventListener("click", () => go(Number(worst.dataset.z)));
  document.querySelectorAll("button.go-slice").forEach((b) => b.addEventListener("click", () => go(Number(b.dataset.z))));
  document.addEventListener("keydown", (e) => {
    if (typing(e)) return;
    if (e.key === "+" || e.key === "=") zoom(1.5);
    else if (e.key === "-") zoom(1 / 1.5);
    else if (e.key === "[" && depth > 1) go(state.z - 1);
    else if (e.key === "]" && depth > 1) go(state.z + 1);
  });
  load();
}

// Whether a key goes to a field being typed in (not to the review and view shortcuts); a
// slider or a checkbox keeps the shortcuts working.
function typing(event) {
  const el = event.target;
  if (event.ctrlKey || event.metaKey || event.altKey) return true;
  if (el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
  return el.tagName === "INPUT" && !["range", "checkbox", "radio", "button", "submit"].includes(el.type);
}

function review() {
  const panel = document.getElementById("review-panel");
  if (!panel) return;
  const message = document.getElementById("review-message");
  const comment = document.getElementById("comment");
  const decide = async (decision) => {
    message.textContent = "Saving…";
    try {
      await send(panel.dataset.url, { decision, comment: comment ? comment.value : "" });
      message.textContent = `Saved: ${decision}.`;
      window.location.assign(panel.dataset.next || panel.dataset.done);
    } catch (e) { message.textContent = e.message; }
  };
  panel.querySelectorAll("button.decide").forEach((b) => b.addEventListener("click", () => decide(b.dataset.decision)));
  const canReview = panel.querySelector("button.decide") !== null;
  document.addEventListener("keydown", (e) => {
    if (typing(e)) return;
    const keys = { a: "accept_cleansed", k: "keep_original", r: "needs_rework" };
    const key = e.key.toLowerCase();
    if (canReview && keys[key]) { e.preventDefault(); decide(keys[key]); }
    else if (key === "n" && panel.dataset.next) window.location.assign(panel.dataset.next);
    else if (key === "p" && panel.dataset.previous) window.location.assign(panel.dataset.previous);
    else if (key === "c" && comment) { e.preventDefault(); comment.focus(); }
  });
}

document.addEventListener("DOMContentLoaded", () => { liveStatus(); resolveForm(); viewer(); review(); });
