// modelmart console: the little the pages need beyond HTML. Copy a new key's secret,
// refresh the catalog's health without reloading, and the playground's streamed chat
// (fetch + SSE parsing), which goes through the gateway like any client.
"use strict";

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (err) {  // no clipboard API (plain http on another host): select and copy
    const area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    const done = document.execCommand("copy");
    area.remove();
    return done;
  }
}

function setupCopy() {
  for (const button of document.querySelectorAll("button.copy[data-copy]")) {
    button.addEventListener("click", async () => {
      const ok = await copyText(document.getElementById(button.dataset.copy).textContent.trim());
      button.textContent = ok ? "Copied" : "Copy failed";
    });
  }
  for (const button of document.querySelectorAll("button.use-key[data-copy]")) {
    button.addEventListener("click", () => {
      // this tab only, until it closes; the playground reads it
      sessionStorage.setItem("mm-playground-key",
        document.getElementById(button.dataset.copy).textContent.trim());
      location.href = "/console/playground";
    });
  }
}

function setupHealth() {
  const rows = document.querySelectorAll("tr[data-deployment]");
  if (!rows.length) return;
  const stamp = document.getElementById("health-stamp");
  const paint = (health) => {
    for (const row of rows) {
      const h = health[row.dataset.deployment];
      if (!h) continue;
      for (const cell of row.querySelectorAll("[data-h]")) {
        const value = h[cell.dataset.h];
        cell.textContent = value === null || value === undefined ? "–" : String(value);
        if (cell.dataset.h === "state") cell.className = "state " + value;
      }
    }
    if (stamp) stamp.textContent = "· updated " + new Date().toLocaleTimeString();
  };
  const refresh = async () => {
    try {
      const resp = await fetch("/console/api/health", {headers: {accept: "application/json"}});
      if (resp.ok) paint(await resp.json());
    } catch (err) { /* the next tick tries again */ }
  };
  for (const cell of document.querySelectorAll("[data-h=state]")) cell.className = "state " + cell.textContent;
  refresh();
  setInterval(refresh, 5000);
}

// ---- playground ---------------------------------------------------------------------------

function parseEvents(buffer, onData) {
  // SSE: events end with a blank line; a data line may be split across reads
  buffer = buffer.replace(/\r\n/g, "\n");
  let end;
  while ((end = buffer.indexOf("\n\n")) >= 0) {
    const event = buffer.slice(0, end);
    buffer = buffer.slice(end + 2);
    const data = event.split("\n").filter((l) => l.startsWith("data:"))
      .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
    if (data && data !== "[DONE]") onData(JSON.parse(data));
  }
  return buffer;
}

async function costOf(requestId, panel) {
  // the ledger is written in batches: ask a few times
  for (let i = 0; i < 30 && requestId; i++) {
    const resp = await fetch("/console/api/requests/" + encodeURIComponent(requestId));
    if (resp.ok) {
      const row = await resp.json();
      panel.querySelector(".pg-cost").textContent = "$" + row.price_usd;
      panel.querySelector(".pg-cost").dataset.pico = row.price_pico;
      return;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function streamAnswer(panel, model, key, prompt, maxTokens) {
  const q = (sel) => panel.querySelector(sel);
  panel.hidden = false;
  q(".pg-title").textContent = model;
  q(".pg-text").textContent = "";
  for (const sel of [".pg-ttft", ".pg-latency", ".pg-tokens", ".pg-cost"]) q(sel).textContent = "…";
  q(".pg-error").hidden = true;
  const started = performance.now();
  let first = null;
  let usage = null;
  try {
    const resp = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: {"content-type": "application/json", authorization: "Bearer " + key},
      body: JSON.stringify({model, stream: true, stream_options: {include_usage: true},
        max_tokens: maxTokens, messages: [{role: "user", content: prompt}]}),
    });
    const requestId = resp.headers.get("x-request-id");
    panel.dataset.requestId = requestId || "";
    if (!resp.ok) {
      const body = await resp.json().catch(() => ({}));
      throw new Error(`${resp.status}: ${(body.error && body.error.message) || resp.statusText}`);
    }
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer = parseEvents(buffer + decoder.decode(value, {stream: true}), (chunk) => {
        if (chunk.error) throw new Error(chunk.error.message || "the stream failed");
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) {
          if (first === null) {
            first = performance.now();
            q(".pg-ttft").textContent = Math.round(first - started) + " ms";
          }
          q(".pg-text").textContent += delta.content;
        }
        if (chunk.usage) usage = chunk.usage;
      });
    }
    q(".pg-latency").textContent = Math.round(performance.now() - started) + " ms";
    if (first === null) q(".pg-ttft").textContent = "–";
    q(".pg-tokens").textContent = usage ? `${usage.prompt_tokens} / ${usage.completion_tokens}` : "–";
    panel.dataset.done = "1";
    await costOf(requestId, panel);
  } catch (err) {
    q(".pg-error").textContent = String(err.message || err);
    q(".pg-error").hidden = false;
    q(".pg-latency").textContent = Math.round(performance.now() - started) + " ms";
    panel.dataset.done = "1";
  }
}

function setupPlayground() {
  const form = document.getElementById("playground");
  if (!form) return;
  const keyInput = document.getElementById("pg-key");
  keyInput.value = sessionStorage.getItem("mm-playground-key") || "";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = keyInput.value.trim();
    sessionStorage.setItem("mm-playground-key", key);
    const prompt = document.getElementById("pg-prompt").value;
    const maxTokens = parseInt(document.getElementById("pg-max").value, 10) || 256;
    const models = [document.getElementById("pg-model-a").value,
      document.getElementById("pg-model-b").value];
    const button = document.getElementById("pg-send");
    button.disabled = true;
    const panels = ["a", "b"].map((s) => document.getElementById("pg-answer-" + s));
    panels.forEach((p) => { delete p.dataset.done; });
    panels[1].hidden = !models[1];
    await Promise.all(models.map((m, i) => m ? streamAnswer(panels[i], m, key, prompt, maxTokens) : null));
    button.disabled = false;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupCopy();
  setupHealth();
  setupPlayground();
});
