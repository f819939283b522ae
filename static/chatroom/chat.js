/* The chatroom page: conversations in IndexedDB (idb-keyval), one socket to /ws/chat, answers streamed
   side by side. Structure comes from the page's <template> elements; this file fills in text, and
   model answers are rendered from Markdown with marked and sanitised with DOMPurify. */
(function () {
  "use strict";

  const $ = (selector, root) => (root || document).querySelector(selector);
  const root = $("#chatroom");
  if (!root) return;

  const CATALOG = JSON.parse($("#chat-models").textContent);
  const LIMITS = JSON.parse($("#chat-limits").textContent);
  const MODELS = new Map(CATALOG.map((m) => [m.id, m]));
  const KEY_PREFIX = "chat:conv:";
  const ACK_EVERY = 16;
  const EXPORT_FORMAT = "openrouter-chatroom";

  const el = {
    transcript: $("#transcript"), empty: $("#empty-state"), title: $("#chat-title"), cost: $("#conv-cost"),
    picked: $("#picked"), search: $("#model-search"), options: $("#model-options"), system: $("#system"),
    prompt: $("#prompt"), composer: $("#composer"), send: $("#send"), stopAll: $("#stop-all"),
    attach: $("#attach"), attachments: $("#attachments"), status: $("#socket-status"), error: $("#page-error"),
    balance: $("#balance"),
    convList: $("#conv-list"), convEmpty: $("#conv-empty"), convSearch: $("#conv-search"), sidebar: $("#sidebar"),
  };

  let conv = newConversation();
  let conversations = []; // summaries: {id, title, updated}
  let pending = []; // attachments of the next message: {name, type, data}
  const streams = new Map(); // stream id -> {convId, turnId, colId, sentAt, firstAt}
  const live = new Map(); // conversation id -> the object its running streams write into
  let socket = null;
  let received = 0;
  let reconnectDelay = 500;
  let fatal = false;

  // --- ids, money, time -------------------------------------------------------------------------------

  function randomId(prefix) {
    const bytes = new Uint8Array(8);
    crypto.getRandomValues(bytes);
    return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function usd(nanos) {
    // Exact: integer nano-dollars to a decimal string, trailing zeros dropped (at least 2 places).
    const n = Math.max(0, Math.round(nanos || 0));
    const whole = Math.floor(n / 1e9);
    let frac = String(n % 1e9).padStart(9, "0").replace(/0+$/, "");
    if (frac.length < 2) frac = frac.padEnd(2, "0");
    return "$" + whole + "." + frac;
  }

  function balanceSpend(nanos) {
    // The balance shown drops by each answer's cost (rounded down to the cent, like the server's display).
    const left = Number(el.balance.dataset.nanos) - (nanos || 0);
    el.balance.dataset.nanos = String(left);
    const cents = Math.trunc(left / 1e7);
    const sign = cents < 0 ? "-" : "";
    el.balance.textContent = "Balance " + sign + "$" + Math.floor(Math.abs(cents) / 100).toLocaleString("en-US") + "." + String(Math.abs(cents) % 100).padStart(2, "0");
  }

  function when(ms) {
    const d = new Date(ms);
    return d.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + " " +
      d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }

  function newConversation() {
    const now = Date.now();
    return { id: randomId("c"), title: "New chat", created: now, updated: now, system: "", models: [], turns: [], saved: false };
  }

  function clone(template) {
    return document.getElementById(template).content.firstElementChild.cloneNode(true);
  }

  // --- storage ---------------------------------------------------------------------------------------------

  async function save(c) {
    c = c || conv;
    c.updated = Date.now();
    c.saved = true;
    await idbKeyval.set(KEY_PREFIX + c.id, JSON.parse(JSON.stringify(c)));
    await refreshList();
  }

  let saveTimer = null;
  function saveSoon() {
    if (saveTimer) return;
    saveTimer = setTimeout(() => { saveTimer = null; save().catch(showError); }, 800);
  }

  async function loadAll() {
    const entries = await idbKeyval.entries();
    return entries.filter(([k]) => typeof k === "string" && k.startsWith(KEY_PREFIX)).map(([, v]) => v);
  }

  async function refreshList() {
    const all = await loadAll();
    conversations = all.map((c) => ({ id: c.id, title: c.title, updated: c.updated, text: searchText(c) }))
      .sort((a, b) => b.updated - a.updated);
    renderList();
  }

  function searchText(c) {
    return (c.title + " " + c.turns.map((t) => t.user.text + " " + Object.values(t.answers).map((a) => a.content).join(" ")).join(" ")).toLowerCase();
  }

  function renderList() {
    const q = el.convSearch.value.trim().toLowerCase();
    el.convList.replaceChildren();
    const shown = conversations.filter((c) => !q || c.text.includes(q));
    for (const c of shown) {
      const li = clone("tpl-conv");
      li.dataset.id = c.id;
      if (c.id === conv.id) li.classList.add("current");
      $(".conv-name", li).textContent = c.title;
      $(".conv-when", li).textContent = when(c.updated);
      $(".conv-open", li).addEventListener("click", () => openConversation(c.id));
      $(".conv-rename", li).addEventListener("click", () => renameConversation(c.id));
      $(".conv-delete", li).addEventListener("click", () => deleteConversation(c.id));
      el.convList.append(li);
    }
    el.convEmpty.hidden = conversations.length > 0;
  }

  async function openConversation(id) {
    const c = live.get(id) || await idbKeyval.get(KEY_PREFIX + id);
    if (!c) return;
    for (const t of c.turns) {
      for (const a of Object.values(t.answers)) {
        const live = [...streams.values()].some((s) => s.convId === c.id && s.turnId === t.id && s.colId === a.colId);
        if (a.status === "streaming" && !live) a.status = "interrupted";
      }
    }
    conv = c;
    el.sidebar.classList.remove("open");
    renderAll();
  }

  async function renameConversation(id) {
    const c = id === conv.id ? conv : await idbKeyval.get(KEY_PREFIX + id);
    if (!c) return;
    const name = window.prompt("Rename the conversation", c.title);
    if (name === null || !name.trim()) return;
    c.title = name.trim().slice(0, 120);
    await save(c);
    if (c.id === conv.id) el.title.textContent = conv.title;
  }

  async function deleteConversation(id) {
    if (!window.confirm("Delete this conversation from this browser?")) return;
    for (const [streamId, s] of streams) if (s.convId === id) stop(streamId);
    await idbKeyval.del(KEY_PREFIX + id);
    if (id === conv.id) {
      const models = conv.models;
      conv = newConversation();
      conv.models = models.map((m) => ({ ...m }));
      renderAll();
    }
    await refreshList();
  }

  // --- export / import -----------------------------------------------------------------------------------

  async function exportAll() {
    const data = { format: EXPORT_FORMAT, version: 1, exported_at: new Date().toISOString(), conversations: await loadAll() };
    const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "chatroom-" + new Date().toISOString().slice(0, 10) + ".json";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  function validConversation(c) {
    return c && typeof c === "object" && typeof c.id === "string" && /^[A-Za-z0-9_-]{1,64}$/.test(c.id) &&
      typeof c.title === "string" && Array.isArray(c.turns) && Array.isArray(c.models) &&
      c.turns.every((t) => t && typeof t.id === "string" && t.user && typeof t.user.text === "string" && t.answers && typeof t.answers === "object");
  }

  async function importFile(file) {
    let data;
    try {
      data = JSON.parse(await file.text());
    } catch (e) {
      showError("That file is not JSON.");
      return;
    }
    const list = data && data.format === EXPORT_FORMAT && Array.isArray(data.conversations) ? data.conversations : null;
    if (!list || !list.every(validConversation)) {
      showError("That file is not a chatroom export (expected " + EXPORT_FORMAT + " JSON).");
      return;
    }
    for (const c of list) {
      c.system = typeof c.system === "string" ? c.system : "";
      c.updated = Number(c.updated) || Date.now();
      await idbKeyval.set(KEY_PREFIX + c.id, c);
    }
    await refreshList();
    if (list.length) await openConversation(list[0].id);
    setStatus("Imported " + list.length + " conversation" + (list.length === 1 ? "" : "s") + ".");
  }

  // --- the model picker --------------------------------------------------------------------------------

  function priceText(m) {
    if (m.free || (m.prompt === "0" && m.completion === "0")) return "free";
    return "$" + m.prompt + "/M in · $" + m.completion + "/M out";
  }

  let optionIndex = -1;
  function renderOptions() {
    const q = el.search.value.trim().toLowerCase();
    const picked = new Set(conv.models.map((m) => m.model));
    const matches = CATALOG.filter((m) => !picked.has(m.id) && (!q || m.id.toLowerCase().includes(q) || m.name.toLowerCase().includes(q))).slice(0, 60);
    el.options.replaceChildren();
    matches.forEach((m, i) => {
      const li = clone("tpl-option");
      li.dataset.id = m.id;
      li.id = "opt-" + i;
      $(".opt-name", li).textContent = m.name;
      $(".opt-id", li).textContent = m.id;
      $(".opt-price", li).textContent = priceText(m);
      li.addEventListener("mousedown", (e) => { e.preventDefault(); addModel(m.id); });
      el.options.append(li);
    });
    optionIndex = matches.length ? 0 : -1;
    highlightOption();
    el.options.hidden = document.activeElement !== el.search;
    el.search.setAttribute("aria-expanded", String(!el.options.hidden));
  }

  function highlightOption() {
    [...el.options.children].forEach((li, i) => li.classList.toggle("active", i === optionIndex));
    const active = el.options.children[optionIndex];
    if (active) { active.scrollIntoView({ block: "nearest" }); el.search.setAttribute("aria-activedescendant", active.id); }
  }

  function addModel(id) {
    if (conv.models.length >= LIMITS.max_models) {
      showError("At most " + LIMITS.max_models + " models can answer side by side.");
      return;
    }
    conv.models.push({ id: randomId("m"), model: id, temperature: null, max_tokens: null, reasoning: false });
    el.search.value = "";
    renderPicked();
    renderOptions();
    if (conv.saved) saveSoon();
  }

  function renderPicked() {
    el.picked.replaceChildren();
    for (const col of conv.models) {
      const info = MODELS.get(col.model) || { name: col.model, prompt: "?", completion: "?" };
      const card = clone("tpl-picked");
      card.dataset.col = col.id;
      $(".pm-name", card).textContent = info.name;
      $(".pm-name", card).title = col.model;
      $(".pm-price", card).textContent = priceText(info);
      const temperature = $(".pm-temperature", card);
      const maxTokens = $(".pm-max-tokens", card);
      const reasoning = $(".pm-reasoning", card);
      temperature.value = col.temperature ?? "";
      maxTokens.value = col.max_tokens ?? "";
      reasoning.checked = !!col.reasoning;
      $(".pm-reasoning-label", card).hidden = !info.reasoning;
      temperature.addEventListener("change", () => { col.temperature = temperature.value === "" ? null : Number(temperature.value); if (conv.saved) saveSoon(); });
      maxTokens.addEventListener("change", () => { col.max_tokens = maxTokens.value === "" ? null : parseInt(maxTokens.value, 10); if (conv.saved) saveSoon(); });
      reasoning.addEventListener("change", () => { col.reasoning = reasoning.checked; if (conv.saved) saveSoon(); });
      $(".pm-remove", card).addEventListener("click", () => {
        conv.models = conv.models.filter((m) => m !== col);
        renderPicked();
        if (conv.saved) saveSoon();
      });
      el.picked.append(card);
    }
    el.search.disabled = conv.models.length >= LIMITS.max_models;
    el.search.placeholder = el.search.disabled ? "Four models picked" : "Add a model (up to " + LIMITS.max_models + ")…";
    root.style.setProperty("--columns", String(Math.max(conv.models.length, 1)));
  }

  // --- the transcript ------------------------------------------------------------------------------------

  function renderAll() {
    el.title.textContent = conv.title;
    el.system.value = conv.system || "";
    renderPicked();
    el.transcript.replaceChildren(el.empty);
    el.empty.hidden = conv.turns.length > 0;
    conv.turns.forEach((turn, index) => el.transcript.append(renderTurn(turn, index)));
    renderCost();
    renderList();
    updateRunning();
  }

  function renderTurn(turn, index) {
    const node = clone("tpl-turn");
    node.dataset.turn = turn.id;
    $(".user-text", node).textContent = turn.user.text;
    const files = $(".user-files", node);
    for (const f of turn.user.attachments || []) {
      if (f.type.startsWith("image/")) {
        const img = document.createElement("img");
        img.src = f.data;
        img.alt = f.name;
        files.append(img);
      } else {
        const chip = document.createElement("span");
        chip.className = "file-chip";
        chip.textContent = "📄 " + f.name;
        files.append(chip);
      }
    }
    const form = $(".edit-form", node);
    $(".edit", node).addEventListener("click", () => { form.hidden = false; $("textarea", form).value = turn.user.text; $("textarea", form).focus(); });
    $(".cancel", form).addEventListener("click", () => { form.hidden = true; });
    form.addEventListener("submit", (e) => { e.preventDefault(); branchFrom(index, $("textarea", form).value); });
    const answers = $(".answers", node);
    const cols = Object.values(turn.answers);
    answers.style.setProperty("--n", String(Math.max(cols.length, 1)));
    for (const answer of cols) answers.append(renderAnswer(turn, answer));
    return node;
  }

  function renderAnswer(turn, answer) {
    const node = clone("tpl-answer");
    node.dataset.turn = turn.id;
    node.dataset.col = answer.colId;
    $(".a-stop", node).addEventListener("click", () => stopAnswer(turn.id, answer.colId));
    $(".a-copy", node).addEventListener("click", () => copyText(answer.content, $(".a-copy", node)));
    $(".a-regenerate", node).addEventListener("click", () => regenerate(turn.id, answer.colId));
    fillAnswer(node, answer);
    return node;
  }

  function answerNode(turnId, colId) {
    return el.transcript.querySelector('.answer[data-turn="' + turnId + '"][data-col="' + colId + '"]');
  }

  // Raw HTML in an answer is shown as text (as the code it usually is), never parsed: nothing in it can run,
  // not even a handler DOMPurify would strip afterwards. DOMPurify still cleans what Markdown makes (links).
  const escapeHtml = (t) => t.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  marked.use({ renderer: { html(token) { return escapeHtml(token.text || token.raw || ""); } } });

  function markdown(text) {
    const html = DOMPurify.sanitize(marked.parse(text || "", { gfm: true, breaks: false }));
    const box = document.createElement("div");
    box.innerHTML = html;
    for (const pre of box.querySelectorAll("pre")) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "small code-copy";
      button.textContent = "Copy";
      pre.prepend(button);
    }
    return box.childNodes;
  }

  function fillAnswer(node, a) {
    const info = MODELS.get(a.model);
    $(".a-model", node).textContent = info ? info.name : a.model;
    $(".a-model", node).title = a.model;
    $(".a-provider", node).textContent = a.provider ? "via " + a.provider : "";
    const reasoning = $(".reasoning", node);
    reasoning.hidden = !a.reasoning;
    if (a.reasoning) $(".reasoning-text", node).textContent = a.reasoning;
    const body = $(".a-body", node);
    body.replaceChildren(...markdown(a.content));
    if (a.status === "streaming" && !a.content) body.append(Object.assign(document.createElement("span"), { className: "typing", textContent: "…" }));
    const error = $(".a-error", node);
    error.hidden = !a.error;
    error.replaceChildren();
    if (a.error) {
      error.append(a.error);
      if (a.errorCode === 402) {
        const link = document.createElement("a");
        link.href = root.dataset.creditsUrl;
        link.textContent = "Buy credits";
        error.append(" ", link);
      }
    }
    node.classList.toggle("streaming", a.status === "streaming");
    node.classList.toggle("stopped", a.status === "stopped");
    node.classList.toggle("failed", a.status === "error");
    $(".a-stop", node).hidden = a.status !== "streaming";
    $(".a-regenerate", node).hidden = a.status === "streaming";
    $(".a-copy", node).hidden = !a.content;
    $(".a-stats", node).textContent = statsText(a);
  }

  function statsText(a) {
    const parts = [];
    if (a.usage) parts.push(a.usage.prompt_tokens + " in · " + a.usage.completion_tokens + " out");
    if (a.cost_nanos !== undefined && a.cost_nanos !== null) parts.push(usd(a.cost_nanos));
    if (a.ttft_ms != null) parts.push("TTFT " + Math.round(a.ttft_ms) + " ms");
    if (a.tps != null) parts.push(a.tps.toFixed(1) + " tok/s");
    if (a.status === "stopped") parts.push("stopped");
    if (a.status === "interrupted") parts.push("interrupted");
    return parts.join(" · ");
  }

  const dirty = new Set();
  function redrawSoon(turnId, colId) {
    dirty.add(turnId + "|" + colId);
    if (dirty.size === 1) requestAnimationFrame(() => {
      for (const item of dirty) {
        const [t, c] = item.split("|");
        const node = answerNode(t, c);
        const answer = findAnswer(t, c);
        if (node && answer) fillAnswer(node, answer);
      }
      dirty.clear();
    });
  }

  function findAnswer(turnId, colId) {
    const turn = conv.turns.find((t) => t.id === turnId);
    return turn ? turn.answers[colId] : null;
  }

  function renderCost() {
    let total = 0;
    for (const t of conv.turns) for (const a of Object.values(t.answers)) total += (a.cost_nanos || 0) + (a.replaced_nanos || 0);
    el.cost.textContent = usd(total);
  }

  function copyText(text, button) {
    navigator.clipboard.writeText(text || "").then(() => {
      const label = button.textContent;
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = label; }, 1200);
    }, () => showError("The browser refused to copy."));
  }

  // --- sending ---------------------------------------------------------------------------------------------

  function userMessage(user, modelId) {
    const info = MODELS.get(modelId) || {};
    const files = user.attachments || [];
    if (!files.length) return { role: "user", content: user.text };
    const parts = [{ type: "text", text: user.text || "(see the attached files)" }];
    for (const f of files) {
      if (f.type.startsWith("image/")) {
        if (info.images) parts.push({ type: "image_url", image_url: { url: f.data } });
      } else {
        parts.push({ type: "file", file: { filename: f.name, file_data: f.data } });
      }
    }
    return { role: "user", content: parts };
  }

  function messagesFor(c, turnIndex, colId, modelId) {
    const messages = [];
    if ((c.system || "").trim()) messages.push({ role: "system", content: c.system.trim() });
    for (let i = 0; i < turnIndex; i++) {
      const t = c.turns[i];
      messages.push(userMessage(t.user, modelId));
      const a = t.answers[colId];
      if (a && a.content) messages.push({ role: "assistant", content: a.content });
    }
    messages.push(userMessage(c.turns[turnIndex].user, modelId));
    return messages;
  }

  function startColumns(c, turn, settings) {
    if (!socketReady()) {
      showError("Not connected to the chat server; reconnecting. Try again in a moment.");
      return false;
    }
    const index = c.turns.indexOf(turn);
    const columns = [];
    const replaced = {};
    for (const s of settings) {
      const streamId = randomId("s");
      const old = turn.answers[s.id];
      replaced[s.id] = old;
      turn.answers[s.id] = {
        colId: s.id, model: s.model, settings: { temperature: s.temperature, max_tokens: s.max_tokens, reasoning: s.reasoning },
        content: "", reasoning: "", provider: "", status: "streaming", streamId,
        // what earlier answers in this place cost (a regenerated answer was paid for too)
        replaced_nanos: old ? (old.replaced_nanos || 0) + (old.cost_nanos || 0) : 0,
      };
      const column = { id: streamId, model: s.model, messages: messagesFor(c, index, s.id, s.model) };
      if (s.temperature != null) column.temperature = s.temperature;
      if (s.max_tokens != null) column.max_tokens = s.max_tokens;
      if (s.reasoning) column.reasoning = true;
      columns.push(column);
      streams.set(streamId, { convId: c.id, turnId: turn.id, colId: s.id, sentAt: performance.now(), firstAt: null });
    }
    live.set(c.id, c);
    const frame = JSON.stringify({ type: "send", columns });
    if (new Blob([frame]).size > LIMITS.max_frame_bytes) {
      for (const column of columns) streams.delete(column.id);
      for (const s of settings) {
        if (replaced[s.id]) turn.answers[s.id] = replaced[s.id];
        else delete turn.answers[s.id];
      }
      showError("This message is too large with its attachments (the limit is " + Math.floor(LIMITS.max_frame_bytes / 1048576) + " MB). Nothing was sent.");
      return false;
    }
    socket.send(frame);
    return true;
  }

  async function sendPrompt() {
    hideError();
    const text = el.prompt.value.trim();
    if (!conv.models.length) { showError("Pick at least one model first."); el.search.focus(); return; }
    if (!text && !pending.length) { el.prompt.focus(); return; }
    conv.system = el.system.value;
    const turn = { id: randomId("t"), user: { text, attachments: pending }, answers: {} };
    conv.turns.push(turn);
    if (conv.title === "New chat") conv.title = (text || pending[0].name).slice(0, 60);
    if (!startColumns(conv, turn, conv.models)) { conv.turns.pop(); return; }
    el.prompt.value = "";
    pending = [];
    renderAttachments();
    renderAll();
    el.transcript.lastElementChild.scrollIntoView({ block: "start", behavior: "smooth" });
    await save();
  }

  async function regenerate(turnId, colId) {
    const turn = conv.turns.find((t) => t.id === turnId);
    const old = turn && turn.answers[colId];
    if (!old || old.status === "streaming") return;
    const settings = { id: colId, model: old.model, ...(old.settings || {}) };
    if (!startColumns(conv, turn, [settings])) return;
    renderAll();
    await save();
  }

  async function branchFrom(index, text) {
    text = text.trim();
    if (!text) return;
    const source = conv;
    const branch = JSON.parse(JSON.stringify(source));
    branch.id = randomId("c");
    branch.title = source.title + " (branch)";
    branch.created = Date.now();
    branch.turns = branch.turns.slice(0, index);
    for (const t of branch.turns) for (const a of Object.values(t.answers)) if (a.status === "streaming") a.status = "interrupted";
    const attachments = source.turns[index].user.attachments || [];
    const turn = { id: randomId("t"), user: { text, attachments }, answers: {} };
    branch.turns.push(turn);
    conv = branch;
    if (!startColumns(conv, turn, conv.models)) { conv = source; return; }
    renderAll();
    await save();
  }

  function stop(streamId) {
    if (socketReady()) socket.send(JSON.stringify({ type: "stop", column: streamId }));
  }

  function stopAnswer(turnId, colId) {
    const a = findAnswer(turnId, colId);
    if (a && a.streamId) stop(a.streamId);
  }

  function updateRunning() {
    const running = [...streams.values()].some((s) => s.convId === conv.id);
    el.stopAll.hidden = !running;
  }

  // --- the socket ------------------------------------------------------------------------------------------

  function socketReady() {
    return socket && socket.readyState === WebSocket.OPEN;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + root.dataset.socketPath);
    received = 0;
    setStatus("Connecting…");
    socket.addEventListener("open", () => { reconnectDelay = 500; });
    socket.addEventListener("message", (event) => {
      received += 1;
      let frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      handle(frame);
      if (received % ACK_EVERY === 0 || frame.type === "done") socket.send(JSON.stringify({ type: "ack", frames: received }));
    });
    socket.addEventListener("close", (event) => {
      for (const [streamId, s] of streams) finishStream(streamId, (a) => { if (a.status === "streaming") a.status = "interrupted"; });
      if (event.code === 4401 || event.code === 4403) {
        fatal = true;
        setStatus(event.code === 4401 ? "Signed out." : "This page's origin is not allowed to use the chat server.");
        return;
      }
      if (fatal) return;
      setStatus("Disconnected; reconnecting…");
      setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, 10000);
    });
  }

  function withStream(streamId, update) {
    const s = streams.get(streamId);
    if (!s) return null;
    const target = live.get(s.convId);
    if (!target) return null;
    const turn = target.turns.find((t) => t.id === s.turnId);
    const answer = turn && turn.answers[s.colId];
    if (!answer || answer.streamId !== streamId) return null;
    update(answer, s);
    if (target === conv) redrawSoon(s.turnId, s.colId);
    return target;
  }

  function finishStream(streamId, update) {
    const s = streams.get(streamId);
    const target = withStream(streamId, update);
    streams.delete(streamId);
    updateRunning();
    if (s && ![...streams.values()].some((other) => other.convId === s.convId)) live.delete(s.convId);
    if (target) {
      if (target === conv) renderCost();
      save(target).catch(showError);
    }
  }

  function handle(frame) {
    if (frame.type === "ready") {
      setStatus("");
      return;
    }
    if (frame.type === "chunks") {
      const s = streams.get(frame.column);
      if (!s) return;
      withStream(frame.column, (answer) => applyChunks(answer, s, frame.data)); // on screen or not
      if (s.convId === conv.id && conv.saved) saveSoon();
      return;
    }
    if (frame.type === "done") {
      finishStream(frame.column, (a, s) => {
        a.status = frame.stopped ? "stopped" : a.status === "error" ? "error" : "done";
        a.provider = frame.provider || a.provider;
        a.model = frame.model || a.model;
        a.usage = frame.usage;
        a.cost_nanos = frame.cost_nanos;
        a.generation_id = frame.generation_id;
        balanceSpend(frame.cost_nanos);
        const now = performance.now();
        if (s.firstAt != null) {
          a.ttft_ms = s.firstAt - s.sentAt;
          const seconds = (now - s.firstAt) / 1000;
          if (seconds > 0 && frame.usage.completion_tokens) a.tps = frame.usage.completion_tokens / seconds;
        }
      });
      return;
    }
    if (frame.type === "error") {
      const message = frame.error && frame.error.message ? frame.error.message : "The request failed.";
      if (frame.column && streams.has(frame.column)) {
        finishStream(frame.column, (a) => { a.status = "error"; a.error = message; a.errorCode = frame.error.code; a.cost_nanos = 0; });
      } else {
        showError(message, frame.error && frame.error.code === 401);
      }
    }
  }

  function applyChunks(a, s, chunks) {
    for (const chunk of chunks) {
      if (chunk.provider && !a.provider) a.provider = chunk.provider;
      if (chunk.error) {
        a.error = chunk.error.message || "The provider failed mid-answer.";
        a.status = "error";
      }
      const choice = chunk.choices && chunk.choices[0];
      const delta = choice && choice.delta;
      if (!delta) continue;
      const text = delta.content || "";
      const thought = delta.reasoning || "";
      if ((text || thought) && s.firstAt == null) s.firstAt = performance.now();
      a.content += text;
      a.reasoning += thought;
    }
  }

  // --- attachments ------------------------------------------------------------------------------------------

  function addFiles(files) {
    for (const file of files) {
      if (!file.type.startsWith("image/") && file.type !== "application/pdf") {
        showError(file.name + ": only images and PDFs can be attached.");
        continue;
      }
      if (file.size > LIMITS.max_frame_bytes / 2) {
        showError(file.name + " is too large (the limit is " + Math.floor(LIMITS.max_frame_bytes / 2 / 1048576) + " MB per file).");
        continue;
      }
      const reader = new FileReader();
      reader.addEventListener("load", () => {
        pending.push({ name: file.name || "pasted image", type: file.type, data: reader.result });
        renderAttachments();
      });
      reader.readAsDataURL(file);
    }
  }

  function renderAttachments() {
    el.attachments.replaceChildren();
    pending.forEach((f, i) => {
      const chip = clone("tpl-file");
      $(".file-name", chip).textContent = (f.type.startsWith("image/") ? "🖼 " : "📄 ") + f.name;
      $(".file-remove", chip).addEventListener("click", () => { pending.splice(i, 1); renderAttachments(); });
      el.attachments.append(chip);
    });
    const needsImages = pending.some((f) => f.type.startsWith("image/"));
    const blind = conv.models.filter((m) => !(MODELS.get(m.model) || {}).images);
    if (needsImages && blind.length) {
      const note = document.createElement("span");
      note.className = "muted small";
      note.textContent = "Images go only to the models that can read them.";
      el.attachments.append(note);
    }
  }

  // --- messages ---------------------------------------------------------------------------------------------

  function showError(message, signIn) {
    el.error.hidden = false;
    el.error.replaceChildren(String(message && message.message ? message.message : message));
    if (signIn) {
      const link = document.createElement("a");
      link.href = "/accounts/login/?next=/chat";
      link.textContent = "Sign in";
      el.error.append(" ", link);
    }
  }

  function hideError() { el.error.hidden = true; }
  function setStatus(text) { el.status.textContent = text; }

  // --- wiring -------------------------------------------------------------------------------------------------

  el.composer.addEventListener("submit", (e) => { e.preventDefault(); sendPrompt().catch(showError); });
  el.prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); sendPrompt().catch(showError); }
  });
  el.stopAll.addEventListener("click", () => { if (socketReady()) socket.send(JSON.stringify({ type: "stop" })); });
  el.system.addEventListener("change", () => { conv.system = el.system.value; if (conv.saved) saveSoon(); });
  el.search.addEventListener("input", renderOptions);
  el.search.addEventListener("focus", renderOptions);
  el.search.addEventListener("blur", () => { el.options.hidden = true; el.search.setAttribute("aria-expanded", "false"); });
  el.search.addEventListener("keydown", (e) => {
    const n = el.options.children.length;
    if (e.key === "ArrowDown" && n) { e.preventDefault(); optionIndex = (optionIndex + 1) % n; highlightOption(); }
    else if (e.key === "ArrowUp" && n) { e.preventDefault(); optionIndex = (optionIndex - 1 + n) % n; highlightOption(); }
    else if (e.key === "Enter") { e.preventDefault(); const li = el.options.children[optionIndex]; if (li) addModel(li.dataset.id); }
    else if (e.key === "Escape") { el.options.hidden = true; }
  });
  el.attach.addEventListener("change", () => { addFiles(el.attach.files); el.attach.value = ""; });
  el.prompt.addEventListener("paste", (e) => {
    const files = [...(e.clipboardData ? e.clipboardData.files : [])];
    if (files.length) { e.preventDefault(); addFiles(files); }
  });
  root.addEventListener("dragover", (e) => { e.preventDefault(); root.classList.add("dropping"); });
  root.addEventListener("dragleave", (e) => { if (e.target === root) root.classList.remove("dropping"); });
  root.addEventListener("drop", (e) => { e.preventDefault(); root.classList.remove("dropping"); addFiles(e.dataTransfer.files); });
  el.transcript.addEventListener("click", (e) => {
    const button = e.target.closest(".code-copy");
    if (button) copyText(button.parentElement.querySelector("code") ? button.parentElement.querySelector("code").textContent : "", button);
  });
  $("#new-chat").addEventListener("click", () => {
    const models = conv.models;
    conv = newConversation();
    conv.models = models.map((m) => ({ ...m, id: randomId("m") }));
    renderAll();
    el.sidebar.classList.remove("open");
    el.prompt.focus();
  });
  $("#export").addEventListener("click", () => exportAll().catch(showError));
  $("#import").addEventListener("change", (e) => { const f = e.target.files[0]; e.target.value = ""; if (f) importFile(f).catch(showError); });
  el.convSearch.addEventListener("input", renderList);
  $("#sidebar-open").addEventListener("click", () => el.sidebar.classList.add("open"));
  $("#sidebar-close").addEventListener("click", () => el.sidebar.classList.remove("open"));

  (async function start() {
    await refreshList();
    if (conversations.length) await openConversation(conversations[0].id);
    else renderAll();
    connect();
  })().catch(showError);
})();
