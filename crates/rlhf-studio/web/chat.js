// The chat page: streams the model's answer from the OpenAI-compatible API (server-sent events)
// and puts every piece of text in place with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { model: null, chatTemplate: true, turns: [], controller: null };

function setStatus(text) { $("status").textContent = text; }

async function loadModel() {
  const res = await fetch("/v1/models", { credentials: "same-origin" });
  const body = await res.json();
  if (!res.ok) { setStatus(body.error ? body.error.message : res.statusText); return; }
  const model = body.data[0];
  state.model = model.id;
  state.chatTemplate = model.chat_template;
  $("model").textContent = model.id;
  $("single-turn").hidden = model.chat_template;
  $("system-row").hidden = !model.chat_template;
  $("base-url").textContent = location.origin + "/v1";
  $("max-tokens").max = model.max_model_len;
}

function addMessage(role, text) {
  const li = document.createElement("li");
  li.className = "message " + role;
  const who = document.createElement("span");
  who.className = "role";
  who.textContent = role;
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  li.append(who, body);
  $("messages").append(li);
  li.scrollIntoView({ block: "end" });
  return body;
}

// One token as a span: its text, its probability as a class, the alternatives in the tooltip.
function tokenSpan(entry) {
  const span = document.createElement("span");
  const p = Math.exp(entry.logprob);
  span.className = "tok" + (p < 0.1 ? " p-low" : p < 0.5 ? " p-mid" : "");
  span.textContent = entry.token;
  const alternatives = (entry.top_logprobs || [])
    .map((t) => JSON.stringify(t.token) + " " + Math.exp(t.logprob).toFixed(3)).join("\n");
  span.title = "p = " + p.toFixed(3) + " (log-prob " + entry.logprob.toFixed(3) + ")" + (alternatives ? "\n" + alternatives : "");
  return span;
}

function conversation(userText) {
  const messages = [];
  const system = $("system").value.trim();
  if (!state.chatTemplate) return [{ role: "user", content: userText }];
  if (system) messages.push({ role: "system", content: system });
  return messages.concat(state.turns, [{ role: "user", content: userText }]);
}

async function send() {
  const text = $("input").value;
  if (!text.trim() || state.controller) return;
  $("input").value = "";
  const messages = conversation(text);
  addMessage("user", text);
  const target = addMessage("assistant", "");
  const showLogprobs = $("show-logprobs").checked;
  const request = {
    model: state.model,
    messages,
    stream: true,
    temperature: Number($("temperature").value),
    top_p: Number($("top-p").value),
    max_tokens: Number($("max-tokens").value),
  };
  if (showLogprobs) { request.logprobs = true; request.top_logprobs = 5; }
  state.controller = new AbortController();
  $("send").disabled = true;
  $("stop").disabled = false;
  setStatus("generating…");
  let answer = "";
  let finish = null;
  try {
    const res = await fetch("/v1/chat/completions", {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(request),
      signal: state.controller.signal,
    });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      throw new Error(body.error ? body.error.message : res.statusText);
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("");
        if (!data || data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        for (const choice of chunk.choices) {
          const delta = choice.delta.content || "";
          answer += delta;
          if (choice.logprobs && choice.logprobs.content) {
            for (const entry of choice.logprobs.content) target.append(tokenSpan(entry));
          } else if (delta) {
            target.append(document.createTextNode(delta));
          }
          if (choice.finish_reason) finish = choice.finish_reason;
        }
        target.parentElement.scrollIntoView({ block: "end" });
      }
    }
    setStatus(finish === "length" ? "stopped at max tokens" : "");
  } catch (err) {
    setStatus(err.name === "AbortError" ? "stopped" : err.message);
  } finally {
    if (state.chatTemplate) state.turns.push({ role: "user", content: text }, { role: "assistant", content: answer });
    state.controller = null;
    $("send").disabled = false;
    $("stop").disabled = true;
  }
}

$("send").addEventListener("click", send);
$("stop").addEventListener("click", () => state.controller && state.controller.abort());
$("clear").addEventListener("click", () => { state.turns = []; $("messages").textContent = ""; setStatus(""); });
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); }
});
loadModel().catch((err) => setStatus(err.message));
