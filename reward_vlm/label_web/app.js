// robofume labeling tool: episode list, filmstrip, success/failure labels per task, undo, training.
// Plain browser JavaScript, no build step; talks to the JSON API of reward_vlm/label_server.py.
"use strict";

const state = {
  tasks: ["forward", "backward"],
  episodes: [],          // from GET /api/episodes
  byId: new Map(),
  current: null,         // episode id
  frame: 0,
  task: "forward",       // task being labelled; reset to the episode's own task on selection
  labels: new Map(),     // key(episode, frame, task) -> true (success) / false (failure)
  counts: {},
  undoDepth: 0,
  revision: 0,
  training: false,
};

const $ = (sel) => document.querySelector(sel);
const key = (episode, frame, task) => `${episode}\u0000${frame}\u0000${task}`;
let queue = Promise.resolve();  // label changes are sent one after the other, in key-press order

function enqueue(fn) {
  queue = queue.then(fn).catch((err) => toast(err.message || String(err)));
  return queue;
}

function toast(message) {
  const el = $("#toast");
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 6000);
}

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  let payload = null;
  try { payload = await res.json(); } catch (_) { payload = null; }
  if (!res.ok) {
    const err = new Error((payload && payload.error) || `${method} ${path}: HTTP ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return payload;
}

function frameUrl(ep, frame, full) {
  return `/api/episodes/${encodeURIComponent(ep.id)}/frames/${frame}.png?v=${ep.version}${full ? "&full=1" : ""}`;
}

// ---------------------------------------------------------------------------------------------
// Loading

async function loadEpisodes() {
  const data = await api("GET", "/api/episodes");
  state.tasks = data.tasks;
  state.episodes = data.episodes;
  state.byId = new Map(data.episodes.map((ep) => [ep.id, ep]));
  renderEpisodeList();
  const damaged = data.damaged ? `, ${data.damaged} damaged` : "";
  $("#sidebar-foot").textContent = `${data.episodes.length} episodes${damaged} in ${data.root}`;
}

async function loadLabels() {
  const data = await api("GET", "/api/labels");
  state.labels = new Map(data.labels.map((l) => [key(l.episode, l.frame, l.task), l.success]));
  state.revision = data.revision;
  state.undoDepth = data.undo_depth;
  state.counts = data.counts;
  if (data.orphans) toast(`${data.orphans} labels name episodes not in this folder; they are kept`);
}

// ---------------------------------------------------------------------------------------------
// Rendering

function episodeLabelCount(id) {
  let n = 0;
  const prefix = `${id}\u0000`;
  for (const k of state.labels.keys()) if (k.startsWith(prefix)) n += 1;
  return n;
}

function episodeBadge(ep) {
  const n = episodeLabelCount(ep.id);
  return `${ep.kind ? `${ep.kind} · ` : ""}${ep.task} · ${ep.frames} frames · ${n} label${n === 1 ? "" : "s"}`;
}

function renderEpisodeList() {
  const list = $("#episodes");
  const filter = $("#filter").value.trim().toLowerCase();
  list.replaceChildren();
  for (const ep of state.episodes) {
    const text = `${ep.id} ${ep.task || ""} ${ep.kind || ""} ${ep.instruction || ""}`.toLowerCase();
    if (filter && !text.includes(filter)) continue;
    const li = document.createElement("li");
    li.dataset.id = ep.id;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = ep.id.replace(/\.npz$/, "");
    const badge = document.createElement("span");
    badge.className = "badge";
    if (ep.damaged) {
      li.classList.add("damaged");
      li.title = ep.damaged;
      badge.textContent = `damaged: ${ep.damaged}`;
    } else {
      li.title = ep.instruction || ep.id;
      badge.textContent = episodeBadge(ep);
    }
    li.append(name, badge);
    if (ep.id === state.current) li.classList.add("selected");
    li.addEventListener("click", () => { if (ep.damaged) toast(`${ep.id}: ${ep.damaged}`); else selectEpisode(ep.id); });
    list.append(li);
  }
}

function updateEpisodeBadge(id) {
  const li = [...$("#episodes").children].find((el) => el.dataset.id === id);
  const ep = state.byId.get(id);
  if (li && ep && !ep.damaged) {
    li.querySelector(".badge").textContent = episodeBadge(ep);
  }
}

function renderCounts() {
  for (const task of state.tasks) {
    const c = state.counts[task] || { success: 0, failure: 0 };
    $(`#count-${task}-success`).textContent = c.success;
    $(`#count-${task}-failure`).textContent = c.failure;
  }
  for (const el of document.querySelectorAll(".count-group")) el.classList.toggle("active", el.dataset.task === state.task);
  for (const el of document.querySelectorAll(".task-btn")) el.classList.toggle("active", el.dataset.task === state.task);
  $("#undo-depth").textContent = state.undoDepth ? `${state.undoDepth} step(s) to undo` : "nothing to undo";
  $("#btn-undo").disabled = state.undoDepth === 0;
}

function labelClass(value) {
  return value === true ? "success" : value === false ? "failure" : "";
}

function otherTask() {
  return state.tasks.find((t) => t !== state.task);
}

function renderThumb(el, frame) {
  const ep = state.current;
  const own = state.labels.get(key(ep, frame, state.task));
  const other = state.labels.get(key(ep, frame, otherTask()));
  el.classList.remove("success", "failure");
  const cls = labelClass(own);
  if (cls) el.classList.add(cls);
  const dot = el.querySelector(".other");
  dot.className = `other ${labelClass(other)}`;
  dot.title = other === undefined ? "" : `${otherTask()}: ${labelClass(other)}`;
  el.classList.toggle("current", frame === state.frame);
}

function renderFilmstrip() {
  const strip = $("#filmstrip");
  const ep = state.byId.get(state.current);
  strip.replaceChildren();
  if (!ep) return;
  const aspect = ep.width && ep.height ? ep.width / ep.height : 1;
  for (let i = 0; i < ep.frames; i += 1) {
    const el = document.createElement("div");
    el.className = "thumb";
    el.dataset.frame = String(i);
    const img = document.createElement("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.alt = `frame ${i}`;
    img.src = frameUrl(ep, i, false);
    if (aspect !== 1) img.style.width = `${Math.round(96 * aspect)}px`;
    const idx = document.createElement("span");
    idx.className = "idx";
    idx.textContent = String(i);
    const dot = document.createElement("span");
    dot.className = "other";
    el.append(img, idx, dot);
    el.addEventListener("click", () => selectFrame(i));
    strip.append(el);
    renderThumb(el, i);
  }
}

function thumbEl(frame) {
  return $("#filmstrip").children[frame] || null;
}

function renderCurrent() {
  const ep = state.byId.get(state.current);
  if (!ep) return;
  $("#preview").src = frameUrl(ep, state.frame, true);
  const value = state.labels.get(key(ep.id, state.frame, state.task));
  const cls = labelClass(value);
  $("#preview").className = cls;
  const pill = $("#frame-label");
  pill.className = `pill ${cls}`;
  pill.textContent = `${state.task}: ${cls || "unlabelled"}`;
  $("#frame-info").textContent = `frame ${state.frame} / ${ep.frames - 1}`;
}

function renderAllThumbs() {
  const strip = $("#filmstrip");
  for (let i = 0; i < strip.children.length; i += 1) renderThumb(strip.children[i], i);
}

// ---------------------------------------------------------------------------------------------
// Navigation

function selectEpisode(id) {
  const ep = state.byId.get(id);
  if (!ep || ep.damaged) return;
  state.current = id;
  state.frame = 0;
  state.task = ep.task;
  for (const li of $("#episodes").children) li.classList.toggle("selected", li.dataset.id === id);
  const li = [...$("#episodes").children].find((el) => el.dataset.id === id);
  if (li) li.scrollIntoView({ block: "nearest" });
  $("#empty").hidden = true;
  $("#viewer").hidden = false;
  $("#episode-title").textContent = ep.id;
  $("#episode-meta").textContent = [ep.kind, `task ${ep.task}`, `${ep.frames} frames`, ep.instruction]
    .filter(Boolean).join(" · ");
  renderFilmstrip();
  renderCurrent();
  renderCounts();
}

function selectFrame(frame) {
  const ep = state.byId.get(state.current);
  if (!ep) return;
  const clamped = Math.max(0, Math.min(ep.frames - 1, frame));
  const old = thumbEl(state.frame);
  state.frame = clamped;
  if (old) renderThumb(old, Number(old.dataset.frame));
  const el = thumbEl(clamped);
  if (el) {
    renderThumb(el, clamped);
    el.scrollIntoView({ block: "nearest", inline: "nearest" });
  }
  renderCurrent();
}

function moveEpisode(step) {
  const visible = [...$("#episodes").children].filter((li) => !li.classList.contains("damaged"));
  if (!visible.length) return;
  const at = visible.findIndex((li) => li.dataset.id === state.current);
  const next = at < 0 ? 0 : Math.max(0, Math.min(visible.length - 1, at + step));
  selectEpisode(visible[next].dataset.id);
}

function switchTask(task) {
  state.task = task || otherTask();
  renderAllThumbs();
  renderCurrent();
  renderCounts();
}

// ---------------------------------------------------------------------------------------------
// Label changes (each is saved by the server before the page shows it)

function applyChangeResponse(data) {
  for (const c of data.changed) {
    const k = key(c.episode, c.frame, c.task);
    if (c.success === null) state.labels.delete(k); else state.labels.set(k, c.success);
  }
  state.counts = data.counts;
  state.undoDepth = data.undo_depth;
  state.revision = data.revision;
  const touched = new Set(data.changed.map((c) => c.episode));
  if (data.external_change) {
    return loadLabels().then(() => { renderEpisodeList(); renderAllThumbs(); renderCurrent(); renderCounts(); });
  }
  for (const c of data.changed) {
    if (c.episode === state.current) {
      const el = thumbEl(c.frame);
      if (el) renderThumb(el, c.frame);
    }
  }
  for (const id of touched) updateEpisodeBadge(id);
  renderCurrent();
  renderCounts();
  return null;
}

function setLabels(frames, success) {
  const ep = state.current;
  if (ep === null) return queue;
  const task = state.task;
  const changes = frames.map((frame) => ({ episode: ep, frame, task, success }));
  return enqueue(async () => applyChangeResponse(await api("POST", "/api/labels", { changes })));
}

function range(from, to) {
  const out = [];
  for (let i = from; i <= to; i += 1) out.push(i);
  return out;
}

function markRestSuccess() {
  const ep = state.byId.get(state.current);
  if (ep) setLabels(range(state.frame, ep.frames - 1), true);
}

function markBeforeFailure() {
  if (state.current !== null) setLabels(range(0, state.frame), false);
}

function undo() {
  return enqueue(async () => {
    try {
      applyChangeResponse(await api("POST", "/api/undo", {}));
    } catch (err) {
      if (err.status === 409) toast("nothing to undo"); else throw err;
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Training

function fmt(x, digits = 3) {
  return typeof x === "number" ? x.toFixed(digits) : x === null || x === undefined ? "–" : String(x);
}

function renderTraining(s) {
  const text = $("#train-state");
  const bar = $("#train-bar");
  $("#train").disabled = !s.available || s.state === "running";
  if (!s.available) $("#train").title = "this server was started without a trainer";
  text.classList.toggle("failed", s.state === "failed");
  if (s.state === "running") {
    const p = s.progress || {};
    bar.hidden = false;
    let frac = p.epochs ? Math.min(1, (p.epoch || 0) / p.epochs) : p.fraction || 0;
    if (p.phase === "loading" && p.total) frac = 0;
    $("#train-fill").style.width = `${Math.round(frac * 100)}%`;
    const parts = [p.phase || "training"];
    if (p.task) parts.push(p.task);
    if (p.total) parts.push(`${p.episodes}/${p.total} episodes`);
    else if (p.epochs) parts.push(`epoch ${p.epoch}/${p.epochs}`);
    if (typeof p.loss === "number") parts.push(`loss ${p.loss.toFixed(3)}`);
    if (p.message) parts.push(p.message);
    text.textContent = parts.join(" · ");
  } else if (s.state === "done") {
    bar.hidden = false;
    $("#train-fill").style.width = "100%";
    text.textContent = `trained in ${fmt(s.elapsed_s, 1)} s`;
    renderResults(s.result || {});
  } else if (s.state === "failed") {
    bar.hidden = true;
    text.textContent = `training failed: ${s.error}`;
  } else {
    bar.hidden = true;
    text.textContent = s.available ? "not trained yet" : "training unavailable";
  }
}

function renderResults(result) {
  const body = $("#results-table tbody");
  body.replaceChildren();
  for (const [task, m] of Object.entries(result)) {
    if (typeof m !== "object" || m === null) continue;
    const tr = document.createElement("tr");
    tr.dataset.task = task;
    const cells = [["task", task], ["precision", fmt(m.precision)], ["recall", fmt(m.recall)],
      ["accuracy", fmt(m.accuracy)], ["threshold", fmt(m.threshold)], ["positives", fmt(m.positives, 0)],
      ["negatives", fmt(m.negatives, 0)]];
    for (const [metric, value] of cells) {
      const td = document.createElement("td");
      td.dataset.metric = metric;
      td.textContent = value;
      tr.append(td);
    }
    body.append(tr);
  }
  $("#results").hidden = body.children.length === 0;
}

async function pollTraining() {
  try {
    const s = await api("GET", "/api/train/status");
    renderTraining(s);
    state.training = s.state === "running";
  } catch (err) {
    toast(err.message);
  }
  if (state.training) setTimeout(pollTraining, 400);
}

async function startTraining() {
  try {
    renderTraining(await api("POST", "/api/train", {}));
    state.training = true;
    setTimeout(pollTraining, 300);
  } catch (err) {
    toast(err.message);
  }
}

// ---------------------------------------------------------------------------------------------
// Input

function onKey(ev) {
  if (ev.target instanceof HTMLInputElement) {
    if (ev.key === "Escape") ev.target.blur();
    return;
  }
  const ctrl = ev.ctrlKey || ev.metaKey;
  if (ctrl && ev.key.toLowerCase() === "z") { ev.preventDefault(); undo(); return; }
  if (ctrl || ev.altKey) return;
  const handled = {
    ArrowLeft: () => selectFrame(state.frame - 1),
    ArrowRight: () => selectFrame(state.frame + 1),
    Home: () => selectFrame(0),
    End: () => selectFrame(Number.MAX_SAFE_INTEGER),
    ArrowUp: () => moveEpisode(-1),
    ArrowDown: () => moveEpisode(1),
    s: () => setLabels([state.frame], true),
    f: () => setLabels([state.frame], false),
    x: () => setLabels([state.frame], null),
    Delete: () => setLabels([state.frame], null),
    Backspace: () => setLabels([state.frame], null),
    S: markRestSuccess,
    F: markBeforeFailure,
    u: undo,
    t: () => switchTask(),
  }[ev.key];
  if (handled) {
    ev.preventDefault();
    handled();
  }
}

function wire() {
  document.addEventListener("keydown", onKey);
  $("#filter").addEventListener("input", renderEpisodeList);
  $("#btn-success").addEventListener("click", () => setLabels([state.frame], true));
  $("#btn-failure").addEventListener("click", () => setLabels([state.frame], false));
  $("#btn-clear").addEventListener("click", () => setLabels([state.frame], null));
  $("#btn-success-rest").addEventListener("click", markRestSuccess);
  $("#btn-failure-before").addEventListener("click", markBeforeFailure);
  $("#btn-undo").addEventListener("click", undo);
  $("#train").addEventListener("click", startTraining);
  for (const b of document.querySelectorAll(".task-btn")) b.addEventListener("click", () => switchTask(b.dataset.task));
  // Buttons keep no focus, so keys keep working after a click.
  for (const b of document.querySelectorAll("button")) b.addEventListener("mouseup", () => b.blur());
}

async function main() {
  wire();
  try {
    await Promise.all([loadEpisodes(), loadLabels()]);
    renderEpisodeList();
    renderCounts();
    const first = state.episodes.find((ep) => !ep.damaged);
    if (first) selectEpisode(first.id);
    await pollTraining();
    document.body.dataset.ready = "1";
  } catch (err) {
    toast(`cannot load: ${err.message}`);
  }
}

main();
